/**
 * Builds small, genuine CLIP-format tokenizer files for generated test models.
 *
 * The vocab is laid out exactly like CLIP's:
 *   ids 0..255     the byte-level symbols ("!" = 0 … in bytes_to_unicode order)
 *   ids 256..511   the same symbols + "</w>"            ("a</w>" = 320, as in CLIP)
 *   ids 512..      one entry per merge, in merge order
 *   then           "<|startoftext|>", "<|endoftext|>"
 * and the normalizer / pre_tokenizer / post_processor / decoder / model blocks are those of
 * transformers' fast CLIP tokenizer (clipTokenizerFiles.ts), as shipped with SD1.5 / InstructPix2Pix.
 */
import { createTokenizer } from '../src/inference/tokenizer.js';
import { CLIP_BOS as BOS, CLIP_EOS as EOS, clipTokenizerJson } from '../src/inference/clipTokenizerFiles.js';

const SUFFIX = '</w>';

const isPrintable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);

/**
 * GPT-2's byte → symbol table (bytes_to_unicode): printable bytes stand for themselves, the others
 * (controls, space, 0x7F–0xA0, 0xAD) take U+0100 upwards in byte order.
 */
const BYTE_SYMBOL: readonly string[] = (() => {
  let next = 0x100;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(isPrintable(b) ? b : next++));
})();

/** The 256 byte-level symbols in CLIP's vocab order: printable bytes first ("!" = id 0), then the others. */
const BYTE_LEVEL_ALPHABET: readonly string[] = [...BYTE_SYMBOL.filter((_, b) => isPrintable(b)), ...BYTE_SYMBOL.filter((_, b) => !isPrintable(b))];

/** A string's UTF-8 bytes as byte-level symbols (one code point per byte). */
function byteLevelEncode(text: string): string {
  return Array.from(new TextEncoder().encode(text), (b) => BYTE_SYMBOL[b]!).join('');
}

/** Left-to-right merges that turn `word` into the single token `word</w>`. */
function wordMerges(word: string): Array<[string, string]> {
  const symbols = Array.from(byteLevelEncode(word));
  symbols[symbols.length - 1] += SUFFIX;
  const merges: Array<[string, string]> = [];
  let left = symbols[0]!;
  for (let i = 1; i < symbols.length; i++) {
    merges.push([left, symbols[i]!]);
    left += symbols[i]!;
  }
  return merges;
}

/**
 * A CLIP-format tokenizer.json in which every given word (lowercase letters) is a
 * single token `word</w>`. Deterministic: the same word list yields byte-identical JSON.
 */
export function buildBpeTokenizerJson(words: string[]): object {
  const unique: string[] = [];
  for (const w of words) {
    if (typeof w !== 'string' || !/^\p{L}+$/u.test(w) || w !== w.normalize('NFC').toLowerCase()) {
      throw new Error(`buildBpeTokenizerJson: ${JSON.stringify(w)} is not a lowercase word of letters (CLIP's pre-tokenizer would split or change it)`);
    }
    if (!unique.includes(w)) unique.push(w);
  }

  const vocab: Record<string, number> = {};
  let nextId = 0;
  const add = (token: string): void => {
    if (Object.hasOwn(vocab, token)) {
      throw new Error(`buildBpeTokenizerJson: duplicate vocab entry ${JSON.stringify(token)}`);
    }
    vocab[token] = nextId++;
  };
  for (const s of BYTE_LEVEL_ALPHABET) add(s);
  for (const s of BYTE_LEVEL_ALPHABET) add(s + SUFFIX);

  const merges: string[] = [];
  const seen = new Set<string>();
  for (const w of unique) {
    for (const [a, b] of wordMerges(w)) {
      const key = `${a} ${b}`;
      if (seen.has(key)) continue;
      seen.add(key);
      merges.push(key);
      add(a + b);
    }
  }
  add(BOS);
  add(EOS);
  const json = clipTokenizerJson(vocab, merges);

  // Merges from different words compete by rank; make sure each word still ends up whole.
  const tokenizer = createTokenizer(json, buildTokenizerConfigJson());
  for (const w of unique) {
    const tokens = tokenizer.tokenize(w);
    if (tokens.length !== 1 || tokens[0] !== w + SUFFIX) {
      throw new Error(
        `buildBpeTokenizerJson: ${JSON.stringify(w)} encodes to ${JSON.stringify(tokens)} instead of one token (merges of other words interfere)`,
      );
    }
  }
  return json;
}

/** tokenizer_config.json as transformers writes it for CLIPTokenizer (SD1.5 style). */
export function buildTokenizerConfigJson(): object {
  return {
    add_prefix_space: false,
    bos_token: BOS,
    clean_up_tokenization_spaces: true,
    do_lower_case: true,
    eos_token: EOS,
    errors: 'replace',
    model_max_length: 77,
    pad_token: EOS,
    tokenizer_class: 'CLIPTokenizer',
    unk_token: EOS,
  };
}
