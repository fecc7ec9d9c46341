/**
 * Qwen-Image-Edit's prompts: the chat templates, the Qwen2 tokenizer, `<|image_pad|>` expansion and
 * the 64-token system prefix that the pipelines drop from the text encoder's output.
 *
 * The tokenizer is `@huggingface/tokenizers` reading the processor folder's tokenizer.json, or, where
 * the folder ships only the slow tokenizer's files (vocab.json, merges.txt, tokenizer_config.json),
 * the tokenizer.json transformers' `Qwen2Converter` builds from them: NFC, the Qwen2 split pattern
 * (kept as isolated pieces) then ByteLevel without its own regex, byte-level BPE with no unknown
 * token, no bos/eos added, and the added tokens of `added_tokens_decoder`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

const SYSTEM =
  "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects, background), then explain how the user's text instruction should alter or modify the image. Generate a new image that meets the user's requirements while maintaining consistency with the original input where appropriate.<|im_end|>\n<|im_start|>user\n";
export const VISION_BLOCK = '<|vision_start|><|image_pad|><|vision_end|>';
const TAIL = '<|im_end|>\n<|im_start|>assistant\n';
/** Tokens of the system prefix both pipelines drop (`prompt_template_encode_start_idx`). */
export const PROMPT_DROP = 64;
/** diffusers refuses a larger `max_sequence_length` (`tokenizer_max_length`); prompts are not cut to it. */
export const MAX_SEQUENCE_LENGTH = 1024;
export const IMAGE_PAD = '<|image_pad|>';

/** QwenImageEditPipeline's text: one image, its vision block before the prompt. */
export function editPromptText(prompt: string): string {
  return `${SYSTEM}${VISION_BLOCK}${prompt}${TAIL}`;
}

/** QwenImageEditPlusPipeline's text: "Picture i: " and a vision block per image (1-based), then the prompt. */
export function editPlusPromptText(prompt: string, images: number): string {
  let prefix = '';
  for (let i = 1; i <= images; i++) prefix += `Picture ${i}: ${VISION_BLOCK}`;
  return `${SYSTEM}${prefix}${prompt}${TAIL}`;
}

/** Qwen2's pre-tokenizer pattern as transformers' converter writes it (Oniguruma syntax). */
const QWEN2_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

type Json = Record<string, unknown>;

function readJson(path: string): Json {
  return JSON.parse(readFileSync(path, 'utf8')) as Json;
}

/** The tokenizer.json of a slow Qwen2Tokenizer's files. */
export function qwen2TokenizerJson(vocab: Record<string, number>, merges: readonly string[], config: Json): object {
  const decoder = (config.added_tokens_decoder ?? {}) as Record<string, Json>;
  const added = Object.entries(decoder).map(([id, t]) => ({
    id: Number(id),
    content: String(t.content),
    single_word: t.single_word === true,
    lstrip: t.lstrip === true,
    rstrip: t.rstrip === true,
    normalized: t.normalized === true,
    special: t.special === true,
  }));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'NFC' },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: QWEN2_SPLIT }, behavior: 'Isolated', invert: false }, byteLevel] },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [...merges],
    },
  };
}

export interface QwenTokenizer {
  encode(text: string): number[];
  idOf(token: string): number;
  readonly padId: number;
}

/** Loads the processor folder's tokenizer (tokenizer.json, or vocab.json + merges.txt). */
export function loadQwenTokenizer(dir: string): QwenTokenizer {
  const configPath = join(dir, 'tokenizer_config.json');
  const config = existsSync(configPath) ? readJson(configPath) : {};
  let json: object;
  if (existsSync(join(dir, 'tokenizer.json'))) json = readJson(join(dir, 'tokenizer.json'));
  else {
    const vocab = readJson(join(dir, 'vocab.json')) as Record<string, number>;
    const lines = readFileSync(join(dir, 'merges.txt'), 'utf8').split(/\r?\n/);
    if (lines[0]?.startsWith('#version')) lines.shift();
    json = qwen2TokenizerJson(
      vocab,
      lines.filter((l) => l.trim() !== ''),
      config,
    );
  }
  const tokenizer = new Tokenizer(json as never, config as never);
  const idOf = (token: string): number => {
    const id = tokenizer.token_to_id(token);
    if (typeof id !== 'number') throw new Error(`${dir}: the tokenizer has no token ${token}`);
    return id;
  };
  const pad = typeof config.pad_token === 'string' ? config.pad_token : '<|endoftext|>';
  return {
    encode: (text) => tokenizer.encode(text, { add_special_tokens: false }).ids,
    idOf,
    padId: idOf(pad),
  };
}

/** Replaces each `<|image_pad|>` id with `counts[i]` copies (the i-th image's merged patch count), as the processor does. */
export function expandImagePads(ids: readonly number[], padId: number, counts: readonly number[]): number[] {
  const out: number[] = [];
  let image = 0;
  for (const id of ids) {
    if (id !== padId) {
      out.push(id);
      continue;
    }
    const n = counts[image++];
    if (n === undefined) throw new Error('more <|image_pad|> tokens than images');
    for (let k = 0; k < n; k++) out.push(padId);
  }
  if (image !== counts.length) throw new Error(`${counts.length} images for ${image} <|image_pad|> tokens`);
  return out;
}

/**
 * Qwen2.5-VL's M-RoPE position ids (transformers' `get_rope_index` for images), [3, rows, length]
 * flattened: text tokens count up on all three axes; an image's `<|image_pad|>` run of grid
 * (t, h, w) patches, merged `merge`×`merge`, gets (start + ti, start + hi, start + wi) row-major, and
 * the count resumes at start + max(h, w)/merge. Padding (beyond each row's `lengths`) stays 0.
 */
export function mropePositions(
  rows: readonly (readonly number[])[],
  grids: readonly (readonly (readonly [number, number, number])[])[],
  padId: number,
  length: number,
  merge = 2,
): Int32Array {
  const out = new Int32Array(3 * rows.length * length);
  const plane = rows.length * length;
  rows.forEach((ids, r) => {
    let pos = 0;
    let image = 0;
    let i = 0;
    const put = (at: number, t: number, h: number, w: number): void => {
      out[r * length + at] = t;
      out[plane + r * length + at] = h;
      out[2 * plane + r * length + at] = w;
    };
    while (i < ids.length) {
      if (ids[i] !== padId) {
        put(i, pos, pos, pos);
        pos++;
        i++;
        continue;
      }
      const grid = grids[r]![image++];
      if (!grid) throw new Error('more image pad runs than images');
      const [t, gh, gw] = [grid[0], grid[1] / merge, grid[2] / merge];
      for (let ti = 0; ti < t; ti++) for (let hi = 0; hi < gh; hi++) for (let wi = 0; wi < gw; wi++) put(i++, pos + ti, pos + hi, pos + wi);
      pos += Math.max(gh, gw);
    }
  });
  return out;
}
