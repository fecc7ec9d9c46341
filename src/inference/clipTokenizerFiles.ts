/**
 * CLIP's tokenizer as a `tokenizer.json` structure, built from the files a slow `CLIPTokenizer`
 * saves (`vocab.json` + `merges.txt`). diffusers pipelines (and optimum exports of them) ship only
 * those files; transformers turns them into the fast tokenizer with its CLIP converter
 * (`CLIPConverter` in `convert_slow_tokenizer.py`), whose blocks this reproduces:
 *
 * - normalizer: NFC, every whitespace run → one space, lowercase;
 * - pre-tokenizer: CLIP's word pattern (keeping the matches), then ByteLevel without a prefix space
 *   (its GPT-2 split on: `use_regex` keeps its default, true);
 * - model: BPE with `</w>` ending each word, no subword prefix, unknown pieces → the unk token;
 * - post-processor: bos … eos (RobertaProcessing with CLIP's tokens).
 */

export const CLIP_BOS = '<|startoftext|>';
export const CLIP_EOS = '<|endoftext|>';
const SUFFIX = '</w>';
/** CLIP's word pattern (Oniguruma syntax, as stored in tokenizer.json), as the converter writes it. */
const CLIP_SPLIT_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

export interface ClipSpecialTokens {
  bos: string;
  eos: string;
  unk: string;
}

/** `merges.txt`: one "a b" pair per line after an optional `#version` header; blank lines ignored. */
export function parseMergesTxt(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (lines[0]?.startsWith('#version')) lines.shift();
  return lines.filter((line) => line.trim() !== '');
}

/** The tokenizer.json that transformers' fast CLIP tokenizer has for this vocab and these merges. */
export function clipTokenizerJson(
  vocab: Record<string, number>,
  merges: readonly string[],
  specials: ClipSpecialTokens = { bos: CLIP_BOS, eos: CLIP_EOS, unk: CLIP_EOS },
): object {
  const idOf = (token: string): number => {
    const id = vocab[token];
    if (typeof id !== 'number') throw new Error(`vocab.json has no entry for the special token ${JSON.stringify(token)}`);
    return id;
  };
  const bosId = idOf(specials.bos);
  const eosId = idOf(specials.eos);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: bosId, content: specials.bos, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
      { id: eosId, content: specials.eos, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_SPLIT_PATTERN }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: { type: 'RobertaProcessing', sep: [specials.eos, eosId], cls: [specials.bos, bosId], trim_offsets: false, add_prefix_space: false },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: specials.unk,
      continuing_subword_prefix: '',
      end_of_word_suffix: SUFFIX,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: [...merges],
    },
  };
}
