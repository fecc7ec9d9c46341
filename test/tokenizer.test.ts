import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { BYTE_LEVEL_ALPHABET, createTokenizer, loadTokenizer } from "../src/inference/tokenizer.js";
import { buildBpeTokenizerJson, buildTokenizerConfigJson } from "../models/tokenizerBuilder.js";

/*
 * Reference ids from CLIP's real vocab (openai/clip-vit-*, used by SD1.5 / InstructPix2Pix),
 * as asserted by several independent CLIP tokenizer ports:
 *   "a photo of a cat" → [49406, 320, 1125, 539, 320, 2368, 49407]
 *   "Hello, world!"    → [49406, 3306, 267, 1002, 256, 49407]
 * Single-character word tokens sit at 256 + (position of the byte symbol), so any vocab laid
 * out like CLIP's (bytes, bytes+"</w>", merges…, bos, eos) shares them:
 *   "!</w>" = 256, ",</w>" = 267, ".</w>" = 269, "a</w>" = 320.
 * We cannot ship CLIP's 49408-entry vocab, so the algorithm is tested on small vocabs below.
 */

// --- An independent, from-the-definition byte→symbol table (GPT-2 bytes_to_unicode) ---
function clipAlphabet(): string[] {
  const bs: number[] = [];
  for (let b = "!".charCodeAt(0); b <= "~".charCodeAt(0); b++) bs.push(b);
  for (let b = "¡".charCodeAt(0); b <= "¬".charCodeAt(0); b++) bs.push(b);
  for (let b = "®".charCodeAt(0); b <= "ÿ".charCodeAt(0); b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  return cs.map((c) => String.fromCodePoint(c));
}

const CLIP_SPLIT = "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

const CLIP_NORMALIZER = {
  type: "Sequence",
  normalizers: [{ type: "NFC" }, { type: "Replace", pattern: { Regex: "\\s+" }, content: " " }, { type: "Lowercase" }],
};
const CLIP_PRE_TOKENIZER = {
  type: "Sequence",
  pretokenizers: [
    { type: "Split", pattern: { Regex: CLIP_SPLIT }, behavior: "Removed", invert: true },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
  ],
};

// Merges in rank order. Ids: 512 + index.
const MERGES: Array<[string, string]> = [
  ["s", "e"], // 512 se
  ["se", "p"], // 513 sep
  ["sep", "i"], // 514 sepi
  ["sepi", "a</w>"], // 515 sepia</w>
  ["i", "t</w>"], // 516 it</w>
  ["'", "s</w>"], // 517 's</w>
  ["c", "a"], // 518 ca
  ["ca", "t</w>"], // 519 cat</w>
  ["p", "h"], // 520 ph
  ["ph", "o"], // 521 pho
  ["pho", "t"], // 522 phot
  ["phot", "o</w>"], // 523 photo</w>
  ["o", "f</w>"], // 524 of</w>
  ["h", "e</w>"], // 525 he</w>   (ranked before "t h", so "the" → t + he</w>)
  ["t", "h"], // 526 th
];
const BOS_ID = 512 + MERGES.length; // 527
const EOS_ID = BOS_ID + 1; // 528

// ids of single byte symbols in this (CLIP-shaped) vocab
const ALPHA = clipAlphabet();
const sym = (s: string): number => ALPHA.indexOf(s);
const end = (s: string): number => 256 + ALPHA.indexOf(s);

function tinyJson(opts: { arrayMerges?: boolean; template?: boolean; padding?: unknown } = {}): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  ALPHA.forEach((s, i) => (vocab[s] = i));
  ALPHA.forEach((s, i) => (vocab[s + "</w>"] = 256 + i));
  MERGES.forEach(([a, b], i) => (vocab[a + b] = 512 + i));
  vocab["<|startoftext|>"] = BOS_ID;
  vocab["<|endoftext|>"] = EOS_ID;
  const post = opts.template
    ? {
        type: "TemplateProcessing",
        single: [
          { SpecialToken: { id: "<|startoftext|>", type_id: 0 } },
          { Sequence: { id: "A", type_id: 0 } },
          { SpecialToken: { id: "<|endoftext|>", type_id: 0 } },
        ],
        pair: [],
        special_tokens: {
          "<|startoftext|>": { id: "<|startoftext|>", ids: [BOS_ID], tokens: ["<|startoftext|>"] },
          "<|endoftext|>": { id: "<|endoftext|>", ids: [EOS_ID], tokens: ["<|endoftext|>"] },
        },
      }
    : { type: "RobertaProcessing", sep: ["<|endoftext|>", EOS_ID], cls: ["<|startoftext|>", BOS_ID], trim_offsets: false, add_prefix_space: false };
  return {
    version: "1.0",
    truncation: null,
    padding: opts.padding ?? null,
    added_tokens: [
      { id: BOS_ID, content: "<|startoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
      { id: EOS_ID, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: CLIP_NORMALIZER,
    pre_tokenizer: CLIP_PRE_TOKENIZER,
    post_processor: post,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<|endoftext|>",
      continuing_subword_prefix: null,
      end_of_word_suffix: "</w>",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: opts.arrayMerges ? MERGES.map(([a, b]) => [a, b]) : MERGES.map(([a, b]) => `${a} ${b}`),
    },
  };
}

const SD15_CONFIG = { model_max_length: 77, pad_token: "<|endoftext|>", bos_token: "<|startoftext|>", eos_token: "<|endoftext|>" };

/** bos + ids + eos, padded with `pad` to `len`. */
function expected(ids: number[], pad = EOS_ID, len = 77): number[] {
  const out = [BOS_ID, ...ids, EOS_ID];
  while (out.length < len) out.push(pad);
  return out;
}

describe("byte-level alphabet", () => {
  test("matches GPT-2/CLIP bytes_to_unicode in CLIP vocab order", () => {
    assert.deepEqual([...BYTE_LEVEL_ALPHABET], ALPHA);
    assert.equal(BYTE_LEVEL_ALPHABET[0], "!"); // CLIP id 0 (SD2 pads with it)
    assert.equal(256 + BYTE_LEVEL_ALPHABET.indexOf("a"), 320); // "a</w>" in real CLIP
    assert.equal(256 + BYTE_LEVEL_ALPHABET.indexOf("!"), 256);
    assert.equal(256 + BYTE_LEVEL_ALPHABET.indexOf(","), 267);
    assert.equal(256 + BYTE_LEVEL_ALPHABET.indexOf("."), 269);
    assert.equal(BYTE_LEVEL_ALPHABET.indexOf("Ġ"), 188 + 32); // space (0x20) → U+0120
  });
});

describe("BPE on a hand-built CLIP-shaped vocab", () => {
  const tok = createTokenizer(tinyJson(), SD15_CONFIG);

  test("metadata", () => {
    assert.equal(tok.maxLength, 77);
    assert.equal(tok.bosId, BOS_ID);
    assert.equal(tok.eosId, EOS_ID);
    assert.equal(tok.padId, EOS_ID);
  });

  test("multiple words", () => {
    assert.deepEqual(tok.tokenize("a photo of a cat"), ["a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"]);
    const ids = tok.encode("a photo of a cat");
    assert.ok(ids instanceof Int32Array);
    assert.equal(ids.length, 77);
    assert.deepEqual([...ids], expected([320, 523, 524, 320, 519]));
  });

  test("uppercase and whitespace are normalized", () => {
    assert.deepEqual([...tok.encode("  A   PHOTO\tof\n\n a CaT  ")], [...tok.encode("a photo of a cat")]);
  });

  test("empty prompt is bos, eos, padding", () => {
    assert.deepEqual([...tok.encode("")], expected([]));
    assert.deepEqual([...tok.encode("   ")], expected([]));
  });

  test("punctuation becomes its own word", () => {
    assert.deepEqual(tok.tokenize("sepia."), ["sepia</w>", ".</w>"]);
    assert.deepEqual([...tok.encode("sepia.")].slice(0, 4), [BOS_ID, 515, 269, EOS_ID]);
    // a run of punctuation is one pre-token: ".", ".", ".</w>"
    assert.deepEqual(tok.tokenize("sepia..."), ["sepia</w>", ".", ".", ".</w>"]);
    assert.deepEqual([...tok.encode("sepia...")].slice(0, 6), [BOS_ID, 515, sym("."), sym("."), 269, EOS_ID]);
    // "Hello, world!" punctuation ids coincide with real CLIP (267, 256)
    const hw = [...tok.encode("Hello, world!")];
    assert.deepEqual(tok.tokenize("Hello, world!"), ["h", "e", "l", "l", "o</w>", ",</w>", "w", "o", "r", "l", "d</w>", "!</w>"]);
    assert.equal(hw[6], 267);
    assert.equal(hw[12], 256);
  });

  test("apostrophes split off contractions", () => {
    assert.deepEqual(tok.tokenize("it's"), ["it</w>", "'s</w>"]);
    assert.deepEqual([...tok.encode("it's")].slice(0, 4), [BOS_ID, 516, 517, EOS_ID]);
    // "don't" → "don" + "'t"; no merges apply
    assert.deepEqual(tok.tokenize("don't"), ["d", "o", "n</w>", "'", "t</w>"]);
    assert.deepEqual([...tok.encode("don't")].slice(0, 7), [BOS_ID, sym("d"), sym("o"), end("n"), sym("'"), end("t"), EOS_ID]);
  });

  test("numbers are split into single digits", () => {
    assert.deepEqual(tok.tokenize("42 cats"), ["4</w>", "2</w>", "ca", "t", "s</w>"]);
    // digits and letters are separate pre-tokens
    assert.deepEqual(tok.tokenize("4k"), ["4</w>", "k</w>"]);
    assert.deepEqual([...tok.encode("42")].slice(0, 4), [BOS_ID, 275, 273, EOS_ID]);
  });

  test("merge priority follows rank, not position", () => {
    // "h e</w>" outranks "t h": the → t + he</w>
    assert.deepEqual(tok.tokenize("the"), ["t", "he</w>"]);
    assert.deepEqual(tok.tokenize("then"), ["th", "e", "n</w>"]);
  });

  test("non-ASCII goes through byte-level symbols", () => {
    // é = C3 A9 → "Ã" "©</w>"
    assert.deepEqual(tok.tokenize("é"), ["Ã", "©</w>"]);
    assert.deepEqual([...tok.encode("é")].slice(0, 4), [BOS_ID, 127, 358, EOS_ID]);
    // NFC: e + combining acute == é
    assert.deepEqual([...tok.encode("e\u0301")], [...tok.encode("é")]);
    // "É" lowercases to é
    assert.deepEqual([...tok.encode("É")], [...tok.encode("é")]);
    // 😀 = F0 9F 98 80 → "ð" "Ł" "ĺ" "Ģ</w>"
    assert.deepEqual(tok.tokenize("😀"), ["ð", "Ł", "ĺ", "Ģ</w>"]);
    assert.deepEqual([...tok.encode("sepia😀")].slice(0, 7), [BOS_ID, 515, 172, 253, 246, 478, EOS_ID]);
  });

  test("special tokens written in the prompt are recognized", () => {
    assert.deepEqual([...tok.encode("cat<|endoftext|>cat")].slice(0, 5), [BOS_ID, 519, EOS_ID, 519, EOS_ID]);
    assert.deepEqual(tok.tokenize("<|startoftext|>it"), ["<|startoftext|>", "it</w>"]);
  });

  test("truncation keeps bos + first max-2 tokens + eos", () => {
    const long = Array.from({ length: 100 }, () => "cat").join(" ");
    const ids = [...tok.encode(long)];
    assert.equal(ids.length, 77);
    assert.equal(ids[0], BOS_ID);
    assert.deepEqual(ids.slice(1, 76), new Array(75).fill(519));
    assert.equal(ids[76], EOS_ID);

    const short = createTokenizer(tinyJson(), { ...SD15_CONFIG, model_max_length: 6 });
    assert.equal(short.maxLength, 6);
    // a photo of a cat sepia → 6 tokens; only 4 fit
    assert.deepEqual([...short.encode("a photo of a cat sepia")], [BOS_ID, 320, 523, 524, 320, EOS_ID]);
    // exactly-fitting prompt has no padding, shorter one is padded
    assert.deepEqual([...short.encode("a photo of a")], [BOS_ID, 320, 523, 524, 320, EOS_ID]);
    assert.deepEqual([...short.encode("cat")], [BOS_ID, 519, EOS_ID, EOS_ID, EOS_ID, EOS_ID]);
    // a word cut mid-way keeps its first pieces
    assert.deepEqual([...short.encode("a a a don't")], [BOS_ID, 320, 320, 320, sym("d"), EOS_ID]);
  });

  test("pad id: tokenizer_config pad_token, else padding.pad_id, else eos", () => {
    const sd2 = createTokenizer(tinyJson(), { ...SD15_CONFIG, pad_token: "!" });
    assert.equal(sd2.padId, 0);
    assert.deepEqual([...sd2.encode("it")], expected([516], 0));

    // AddedToken object form, as older transformers wrote it
    const objForm = createTokenizer(tinyJson(), { pad_token: { __type: "AddedToken", content: "!", normalized: true } });
    assert.equal(objForm.padId, 0);

    const fromPadding = createTokenizer(tinyJson({ padding: { pad_id: 5, pad_token: "&" } }));
    assert.equal(fromPadding.padId, 5);
    assert.deepEqual([...fromPadding.encode("it")], expected([516], 5));

    const fallback = createTokenizer(tinyJson());
    assert.equal(fallback.padId, EOS_ID);
    assert.equal(fallback.maxLength, 77);

    assert.throws(() => createTokenizer(tinyJson(), { pad_token: "<pad>" }), /pad_token.*"<pad>"/);
  });

  test("huge transformers sentinel model_max_length falls back to 77", () => {
    assert.equal(createTokenizer(tinyJson(), { model_max_length: 1e30 }).maxLength, 77);
  });

  test("merges as [a, b] arrays and TemplateProcessing give the same ids", () => {
    const prompts = ["a photo of a cat", "it's sepia.", "the 42 é 😀", ""];
    for (const variant of [tinyJson({ arrayMerges: true }), tinyJson({ template: true })]) {
      const other = createTokenizer(variant, SD15_CONFIG);
      assert.equal(other.bosId, BOS_ID);
      assert.equal(other.eosId, EOS_ID);
      for (const p of prompts) assert.deepEqual([...other.encode(p)], [...tok.encode(p)], p);
    }
  });

  test("repeated encodes are stable (word cache)", () => {
    const a = [...tok.encode("sepia sepia it's")];
    const b = [...tok.encode("sepia sepia it's")];
    assert.deepEqual(a, b);
  });

  test("malformed input gives clear errors", () => {
    assert.throws(() => createTokenizer(null), /tokenizer\.json/);
    assert.throws(() => createTokenizer({}), /missing "model"/);
    const badMerge = tinyJson();
    (badMerge["model"] as { merges: unknown[] }).merges = ["s e", "x y z"];
    assert.throws(() => createTokenizer(badMerge), /merges\[1\]/);
    const unknownType = tinyJson();
    (unknownType["model"] as { type: string }).type = "Unigram";
    assert.throws(() => createTokenizer(unknownType), /unsupported model type "Unigram"/);
    const badNorm = tinyJson();
    badNorm["normalizer"] = { type: "Precompiled" };
    assert.throws(() => createTokenizer(badNorm), /normalizer.*Precompiled/);
  });
});

describe("generic pre-tokenizer features", () => {
  // Char-level BPE (no merges) with an end-of-word suffix makes piece boundaries visible.
  function charTokenizer(preTokenizer: unknown): ReturnType<typeof createTokenizer> {
    const vocab: Record<string, number> = {};
    let id = 0;
    for (let c = 0x20; c < 0x7f; c++) {
      vocab[String.fromCharCode(c)] = id++;
      vocab[String.fromCharCode(c) + "</w>"] = id++;
    }
    vocab["<eos>"] = id;
    return createTokenizer({ pre_tokenizer: preTokenizer, model: { type: "BPE", vocab, merges: [], end_of_word_suffix: "</w>" } }, { eos_token: "<eos>" });
  }
  const split = (behavior: string) => charTokenizer({ type: "Split", pattern: { String: "!" }, behavior, invert: false });

  test("Split behaviors (semantics of the tokenizers library)", () => {
    assert.deepEqual(split("Removed").tokenize("ab!!c"), ["a", "b</w>", "c</w>"]);
    assert.deepEqual(split("Isolated").tokenize("ab!!c"), ["a", "b</w>", "!</w>", "!</w>", "c</w>"]);
    // a delimiter merges into a neighbour only when that neighbour is not a delimiter itself
    assert.deepEqual(split("MergedWithPrevious").tokenize("ab!!c"), ["a", "b", "!</w>", "!</w>", "c</w>"]);
    assert.deepEqual(split("MergedWithNext").tokenize("ab!!c"), ["a", "b</w>", "!</w>", "!", "c</w>"]);
    assert.deepEqual(split("Contiguous").tokenize("ab!!c"), ["a", "b</w>", "!", "!</w>", "c</w>"]);
  });

  test("Oniguruma-style regexes: (?i:...), \\s, possessive quantifiers", () => {
    const llama = charTokenizer({
      type: "Split",
      pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
      behavior: "Isolated",
      invert: false,
    });
    assert.deepEqual(llama.tokenize("IT'S 1234"), ["I", "T</w>", "'", "S</w>", " </w>", "1", "2", "3</w>", "4</w>"]);
  });
});

describe("WordLevel model", () => {
  test("looks up whole pre-tokens, unknowns map to unk", () => {
    const json = {
      added_tokens: [],
      normalizer: { type: "Lowercase" },
      pre_tokenizer: { type: "WhitespaceSplit" },
      post_processor: { type: "BertProcessing", sep: ["[SEP]", 3], cls: ["[CLS]", 2] },
      model: { type: "WordLevel", vocab: { "[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, make: 4, it: 5, sepia: 6 }, unk_token: "[UNK]" },
    };
    const tok = createTokenizer(json, { model_max_length: 8, pad_token: "[PAD]" });
    assert.deepEqual([...tok.encode("Make it  SEPIA now")], [2, 4, 5, 6, 1, 3, 0, 0]);
    assert.deepEqual(tok.tokenize("make it"), ["make", "it"]);
  });
});

describe("loadTokenizer", () => {
  test("reads tokenizer.json and tokenizer_config.json from a directory", () => {
    const dir = mkdtempSync(join(tmpdir(), "tok-"));
    try {
      writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tinyJson()));
      // without a config: pad = eos, 77
      const t1 = loadTokenizer(dir);
      assert.equal(t1.padId, EOS_ID);
      writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ model_max_length: 10, pad_token: "!" }));
      const t2 = loadTokenizer(dir);
      assert.equal(t2.maxLength, 10);
      assert.deepEqual([...t2.encode("sepia")], [BOS_ID, 515, EOS_ID, 0, 0, 0, 0, 0, 0, 0]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("errors name the offending file", () => {
    const dir = mkdtempSync(join(tmpdir(), "tok-"));
    try {
      assert.throws(() => loadTokenizer(dir), (e: Error) => e.message.includes(join(dir, "tokenizer.json")));
      writeFileSync(join(dir, "tokenizer.json"), "{ not json");
      assert.throws(() => loadTokenizer(dir), (e: Error) => /Malformed JSON/.test(e.message) && e.message.includes(join(dir, "tokenizer.json")));
      const bad = tinyJson();
      (bad["model"] as Record<string, unknown>)["vocab"] = [];
      writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(bad));
      assert.throws(() => loadTokenizer(dir), (e: Error) => e.message.includes(join(dir, "tokenizer.json")) && /model\.vocab/.test(e.message));
      writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tinyJson()));
      writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ pad_token: "<nope>" }));
      assert.throws(() => loadTokenizer(dir), (e: Error) => e.message.includes(join(dir, "tokenizer_config.json")));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("slow CLIP tokenizer files (vocab.json + merges.txt, as diffusers pipelines ship)", () => {
  const WORDS = ["grayscale", "sepia", "invert", "photo", "cat"];
  const json = buildBpeTokenizerJson(WORDS) as { model: { vocab: Record<string, number>; merges: string[] } };
  const PROMPTS = [
    "make it sepia", "  Make   IT\tSepia!! ", "a cat's photo, 2 cats; 3.5 <|endoftext|> grayscale", "café naïve 東京 🙂",
    "", "invert ".repeat(60),
  ];

  function slowFiles(extra: Record<string, unknown> = {}): string {
    const dir = mkdtempSync(join(tmpdir(), "tok-slow-"));
    writeFileSync(join(dir, "vocab.json"), JSON.stringify(json.model.vocab));
    writeFileSync(join(dir, "merges.txt"), `#version: 0.2\n${json.model.merges.join("\n")}\n`);
    for (const [name, content] of Object.entries(extra)) writeFileSync(join(dir, name), JSON.stringify(content));
    return dir;
  }

  test("give the same ids as the equivalent tokenizer.json", () => {
    const dir = slowFiles({ "tokenizer_config.json": buildTokenizerConfigJson() });
    try {
      const fast = createTokenizer(json, buildTokenizerConfigJson());
      const slow = loadTokenizer(dir);
      for (const p of PROMPTS) assert.deepEqual([...slow.encode(p)], [...fast.encode(p)], JSON.stringify(p));
      assert.deepEqual([slow.bosId, slow.eosId, slow.padId, slow.maxLength], [fast.bosId, fast.eosId, fast.padId, fast.maxLength]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("take special tokens from special_tokens_map.json when the config has none", () => {
    const dir = slowFiles({ "special_tokens_map.json": { bos_token: { content: "<|startoftext|>" }, eos_token: "<|endoftext|>", pad_token: "<|endoftext|>", unk_token: "<|endoftext|>" } });
    try {
      const tok = loadTokenizer(dir);
      assert.equal(tok.bosId, json.model.vocab["<|startoftext|>"]);
      assert.equal(tok.eosId, json.model.vocab["<|endoftext|>"]);
      assert.deepEqual(tok.tokenize("sepia cat"), ["sepia</w>", "cat</w>"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("name the problem when a special token is missing from vocab.json", () => {
    const dir = slowFiles({ "tokenizer_config.json": { bos_token: "<s>" } });
    try {
      assert.throws(() => loadTokenizer(dir), (e: Error) => e.message.includes(dir) && /"<s>"/.test(e.message));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("buildBpeTokenizerJson", () => {
  const WORDS = ["grayscale", "greyscale", "gray", "grey", "monochrome", "invert", "negative", "sepia", "brighter", "darker", "warmer", "cooler"];
  const json = buildBpeTokenizerJson(WORDS) as {
    model: { vocab: Record<string, number>; merges: string[] };
    added_tokens: Array<{ id: number; content: string }>;
  };
  const tok = createTokenizer(json, buildTokenizerConfigJson());

  test("CLIP vocab layout", () => {
    const { vocab, merges } = json.model;
    // (JS objects list integer-like keys such as "0".."9" first, so sort by id rather than
    // relying on property order; ids are what matter to any tokenizer.json reader.)
    const entries = Object.entries(vocab).sort((x, y) => x[1] - y[1]);
    assert.equal(entries.length, 512 + merges.length + 2);
    entries.forEach(([, id], i) => assert.equal(id, i));
    assert.deepEqual(entries.slice(0, 256).map(([t]) => t), ALPHA);
    assert.deepEqual(entries.slice(256, 512).map(([t]) => t), ALPHA.map((s) => s + "</w>"));
    assert.equal(vocab["<|startoftext|>"], 512 + merges.length);
    assert.equal(vocab["<|endoftext|>"], 513 + merges.length);
    assert.equal(new Set(merges).size, merges.length);
    assert.equal(tok.bosId, 512 + merges.length);
    assert.equal(tok.eosId, 513 + merges.length);
    assert.equal(tok.padId, tok.eosId);
    assert.equal(tok.maxLength, 77);
  });

  test("each word is a single token", () => {
    for (const w of WORDS) {
      assert.deepEqual(tok.tokenize(w), [w + "</w>"], w);
      assert.deepEqual([...tok.encode(w)].slice(0, 3), [tok.bosId, json.model.vocab[w + "</w>"], tok.eosId], w);
    }
  });

  test('"make it sepia"', () => {
    const ids = [...tok.encode("make it sepia")];
    const sepia = json.model.vocab["sepia</w>"]!;
    assert.equal(ids.length, 77);
    assert.equal(ids[0], tok.bosId);
    const eosAt = ids.indexOf(tok.eosId);
    assert.ok(eosAt > 3);
    assert.equal(ids[eosAt - 1], sepia);
    const middle = ids.slice(1, eosAt - 1);
    assert.ok(middle.length >= 2); // make, it (in some pieces)
    assert.ok(!middle.includes(sepia));
    assert.ok(middle.every((id) => id < tok.bosId));
    assert.ok(ids.slice(eosAt + 1).every((id) => id === tok.padId));
    assert.deepEqual(tok.tokenize("make it sepia").slice(-1), ["sepia</w>"]);
  });

  test("single characters and punctuation share real CLIP ids", () => {
    assert.deepEqual([...tok.encode("a , ! .")].slice(0, 6), [tok.bosId, 320, 267, 256, 269, tok.eosId]);
  });

  test("deterministic and JSON round-trippable", () => {
    const a = JSON.stringify(buildBpeTokenizerJson(WORDS));
    const b = JSON.stringify(buildBpeTokenizerJson([...WORDS]));
    assert.equal(a, b);
    assert.equal(a, JSON.stringify(json));
    const reparsed = createTokenizer(JSON.parse(a), JSON.parse(JSON.stringify(buildTokenizerConfigJson())));
    assert.deepEqual([...reparsed.encode("make it sepia")], [...tok.encode("make it sepia")]);
  });

  test("tokenizer config shape", () => {
    const cfg = buildTokenizerConfigJson() as Record<string, unknown>;
    assert.equal(cfg["model_max_length"], 77);
    assert.equal(cfg["pad_token"], "<|endoftext|>");
    assert.equal(cfg["bos_token"], "<|startoftext|>");
    assert.equal(cfg["eos_token"], "<|endoftext|>");
    assert.equal(cfg["do_lower_case"], true);
  });

  test("rejects words CLIP would not keep whole", () => {
    assert.throws(() => buildBpeTokenizerJson(["Sepia"]), /lowercase/);
    assert.throws(() => buildBpeTokenizerJson(["4k"]), /lowercase/);
    assert.throws(() => buildBpeTokenizerJson(["two words"]), /lowercase/);
  });

  test("works when the builder directory is loaded from disk", () => {
    const dir = mkdtempSync(join(tmpdir(), "tok-"));
    try {
      writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(json));
      writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(buildTokenizerConfigJson()));
      const loaded = loadTokenizer(dir);
      assert.deepEqual([...loaded.encode("Make it SEPIA!")], [...tok.encode("make it sepia !")]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
