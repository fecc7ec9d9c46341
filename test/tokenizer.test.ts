import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { createTokenizer, loadTokenizer, type PromptTokenizer } from '../src/inference/tokenizer.js';
import { buildBpeTokenizerJson, buildTokenizerConfigJson } from '../models/tokenizerBuilder.js';

/*
 * The prompt tokenizer, specified through what the pipelines use: `loadTokenizer(folder)` and
 * `encode(prompt)` → exactly `maxLength` ids (bos, tokens, eos, padding).
 *
 * CLIP's real vocabulary (49,408 entries) is too big to ship; the tests use vocabularies laid out
 * like CLIP's (models/tokenizerBuilder.ts): ids 0..255 are the byte-level symbols ("!" = 0), 256..511
 * the same + "</w>", so single-character words share real CLIP ids ("a</w>" = 320, ",</w>" = 267,
 * "!</w>" = 256, ".</w>" = 269), then one id per merge, then bos and eos.
 */

const WORDS = ['grayscale', 'sepia', 'invert', 'photo', 'cat', 'make', 'it', 'the'];
const json = buildBpeTokenizerJson(WORDS) as { model: { vocab: Record<string, number>; merges: string[] } };
const VOCAB = json.model.vocab;
const BOS = VOCAB['<|startoftext|>']!;
const EOS = VOCAB['<|endoftext|>']!;
const id = (token: string): number => {
  const v = VOCAB[token];
  assert.notEqual(v, undefined, `no ${token} in the test vocab`);
  return v!;
};

/** bos + ids + eos, padded with `pad` to `length`. */
function padded(ids: number[], pad = EOS, length = 77): number[] {
  const out = [BOS, ...ids, EOS];
  while (out.length < length) out.push(pad);
  return out;
}

/** tokenizer_config.json as SD 1.5's tokenizer folder has it (transformers 4.x, slow CLIPTokenizer). */
const SD15_CONFIG = {
  add_prefix_space: false,
  bos_token: { __type: 'AddedToken', content: '<|startoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
  do_lower_case: true,
  eos_token: { __type: 'AddedToken', content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
  errors: 'replace',
  model_max_length: 77,
  pad_token: '<|endoftext|>',
  tokenizer_class: 'CLIPTokenizer',
  unk_token: { __type: 'AddedToken', content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
};
/** special_tokens_map.json beside it. */
const SD15_MAP = {
  bos_token: { content: '<|startoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
  eos_token: { content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
  pad_token: '<|endoftext|>',
  unk_token: { content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
};

/**
 * A tokenizer.json for the same vocab in the layout of the Hub's CLIP tokenizer.json (written by an
 * older converter: the split pattern also names the special tokens, and ByteLevel has no
 * `use_regex`, so it takes its default, true). Written out here, independently of the builder.
 */
function hubStyleJson(): object {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: BOS, content: '<|startoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
      { id: EOS, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: { Regex: "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" },
          behavior: 'Removed',
          invert: true,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true },
      ],
    },
    post_processor: { type: 'RobertaProcessing', sep: ['<|endoftext|>', EOS], cls: ['<|startoftext|>', BOS], trim_offsets: false, add_prefix_space: false },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<|endoftext|>',
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      vocab: VOCAB,
      merges: json.model.merges,
    },
  };
}

/** A temporary tokenizer folder with these files (objects are written as JSON). */
function withFolder(files: Record<string, unknown>, body: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'tok-'));
  try {
    for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
    body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** vocab.json + merges.txt as a slow CLIPTokenizer saves them. */
const SLOW_FILES = {
  'vocab.json': VOCAB,
  'merges.txt': `#version: 0.2\n${json.model.merges.join('\n')}\n`,
};

const PROMPTS = [
  'make it sepia',
  '  Make   IT\tSepia!! \n',
  'a photo of the cat, 2 cats; 3.5 grayscale',
  "it's the cat's photo, don't invert",
  'café naïve 東京 🙂 ΟΔΟΣ',
  'sepia<|endoftext|>cat <|startoftext|> <|ENDOFTEXT|>',
  '',
  'invert '.repeat(100),
];

describe('a folder with tokenizer.json', () => {
  const sd15 = (body: (tok: PromptTokenizer) => void): void =>
    withFolder({ 'tokenizer.json': hubStyleJson(), 'tokenizer_config.json': SD15_CONFIG, 'special_tokens_map.json': SD15_MAP }, (dir) =>
      body(loadTokenizer(dir)),
    );

  test('encodes a prompt as bos, one id per word, eos, then eos padding to 77 (SD 1.5)', () =>
    sd15((tok) => {
      assert.equal(tok.maxLength, 77);
      const ids = tok.encode('make it sepia');
      assert.ok(ids instanceof Int32Array);
      assert.deepEqual([...ids], padded([id('make</w>'), id('it</w>'), id('sepia</w>')]));
      assert.deepEqual([tok.bosId, tok.eosId, tok.padId], [BOS, EOS, EOS]);
    }));

  test('lowercases and collapses whitespace; the empty prompt is bos, eos, padding', () =>
    sd15((tok) => {
      assert.deepEqual([...tok.encode('  MAKE\tit\n\n SePiA ')], [...tok.encode('make it sepia')]);
      assert.deepEqual([...tok.encode('')], padded([]));
      assert.deepEqual([...tok.encode(' \t ')], padded([]));
    }));

  test("splits punctuation, contractions and digits into words, with CLIP's ids for single characters", () =>
    sd15((tok) => {
      assert.deepEqual([...tok.encode('a , ! .')].slice(0, 6), [BOS, 320, 267, 256, 269, EOS]);
      assert.deepEqual(tok.tokenize('sepia.'), ['sepia</w>', '.</w>']);
      assert.deepEqual(tok.tokenize('sepia...'), ['sepia</w>', '.', '.', '.</w>']);
      assert.deepEqual(tok.tokenize("it's"), ['it</w>', "'", 's</w>']);
      assert.deepEqual(tok.tokenize('42'), ['4</w>', '2</w>']);
    }));

  test('encodes other characters as their UTF-8 bytes', () =>
    sd15((tok) => {
      // é = C3 A9 → "Ã" "©</w>"; e + combining acute is the same after NFC; É lowercases to é
      assert.deepEqual(tok.tokenize('é'), ['Ã', '©</w>']);
      assert.deepEqual([...tok.encode('e\u0301')], [...tok.encode('é')]);
      assert.deepEqual([...tok.encode('É')], [...tok.encode('é')]);
      // 😀 = F0 9F 98 80
      assert.deepEqual(tok.tokenize('😀'), ['ð', 'Ł', 'ĺ', 'Ģ</w>']);
    }));

  test('lowercases a capital sigma to σ wherever it stands, as the tokenizers crate does', () =>
    sd15((tok) => {
      assert.deepEqual([...tok.encode('ΟΔΟΣ ΣΑΣ')], [...tok.encode('οδοσ σασ')]);
    }));

  test('reads special tokens written in a prompt: bos in any case, eos only as written', () =>
    sd15((tok) => {
      // as transformers' CLIP tokenizer.json has them: bos is matched after normalization, eos before
      assert.deepEqual([...tok.encode('cat<|endoftext|>cat')].slice(0, 5), [BOS, id('cat</w>'), EOS, id('cat</w>'), EOS]);
      assert.deepEqual([...tok.encode('<|StartOfText|> cat')].slice(0, 4), [BOS, BOS, id('cat</w>'), EOS]);
      assert.deepEqual(
        tok.tokenize('<|ENDOFTEXT|> cat'),
        ['<|', 'endoftext', '|>', 'cat'].flatMap((w) => tok.tokenize(w)),
      );
    }));
});

describe("a folder with a slow CLIP tokenizer's vocab.json + merges.txt", () => {
  test("gives the same ids as the tokenizer.json for the same vocab (SD 1.5's files)", () =>
    withFolder({ 'tokenizer.json': hubStyleJson(), 'tokenizer_config.json': SD15_CONFIG, 'special_tokens_map.json': SD15_MAP }, (fastDir) =>
      withFolder({ ...SLOW_FILES, 'tokenizer_config.json': SD15_CONFIG, 'special_tokens_map.json': SD15_MAP }, (slowDir) => {
        const fast = loadTokenizer(fastDir);
        const slow = loadTokenizer(slowDir);
        for (const p of PROMPTS) assert.deepEqual([...slow.encode(p)], [...fast.encode(p)], JSON.stringify(p));
        assert.deepEqual([slow.maxLength, slow.bosId, slow.eosId, slow.padId], [77, BOS, EOS, EOS]);
      }),
    ));

  test("needs neither tokenizer_config.json nor special_tokens_map.json (CLIP's tokens, 77)", () =>
    withFolder(SLOW_FILES, (dir) => {
      const tok = loadTokenizer(dir);
      assert.deepEqual([...tok.encode('make it sepia')], padded([id('make</w>'), id('it</w>'), id('sepia</w>')]));
    }));

  test('names the folder and the token when a special token is not in vocab.json', () =>
    withFolder({ ...SLOW_FILES, 'tokenizer_config.json': { bos_token: '<s>' } }, (dir) => {
      assert.throws(
        () => loadTokenizer(dir),
        (e: Error) => e.message.includes(dir) && /"<s>"/.test(e.message),
      );
    }));
});

describe('truncation', () => {
  test('keeps bos, the first 75 tokens and eos', () =>
    withFolder({ 'tokenizer.json': hubStyleJson(), 'tokenizer_config.json': SD15_CONFIG }, (dir) => {
      const tok = loadTokenizer(dir);
      const ids = [...tok.encode('cat '.repeat(100))];
      assert.deepEqual(ids, [BOS, ...new Array<number>(75).fill(id('cat</w>')), EOS]);
      // exactly 75 tokens: no padding; a word cut midway keeps its first pieces
      assert.deepEqual([...tok.encode('cat '.repeat(75))], ids);
      assert.deepEqual([...tok.encode(`${'cat '.repeat(74)} don't`)].slice(74), [id('cat</w>'), id('d'), EOS]);
    }));

  test('follows model_max_length from tokenizer_config.json', () =>
    withFolder({ 'tokenizer.json': hubStyleJson(), 'tokenizer_config.json': { ...SD15_CONFIG, model_max_length: 6 } }, (dir) => {
      const tok = loadTokenizer(dir);
      assert.equal(tok.maxLength, 6);
      assert.deepEqual([...tok.encode('make it sepia cat photo')], [BOS, id('make</w>'), id('it</w>'), id('sepia</w>'), id('cat</w>'), EOS]);
      assert.deepEqual([...tok.encode('cat')], [BOS, id('cat</w>'), EOS, EOS, EOS, EOS]);
    }));

  test("is 77 when model_max_length is transformers' 'no limit' sentinel or missing", () => {
    assert.equal(createTokenizer(hubStyleJson(), { model_max_length: 1e30 }).maxLength, 77);
    assert.equal(createTokenizer(hubStyleJson()).maxLength, 77);
  });
});

describe('padding', () => {
  test("pads with special_tokens_map.json's pad_token over tokenizer_config.json's", () =>
    withFolder(
      { 'tokenizer.json': hubStyleJson(), 'tokenizer_config.json': SD15_CONFIG, 'special_tokens_map.json': { ...SD15_MAP, pad_token: '!' } },
      (dir) => {
        const tok = loadTokenizer(dir);
        assert.equal(tok.padId, 0);
        assert.deepEqual([...tok.encode('sepia')], padded([id('sepia</w>')], 0));
      },
    ));

  test('pads with "!" like SDXL\'s second tokenizer (vocab.json + merges.txt)', () => {
    // SDXL's tokenizer_2 (OpenCLIP ViT-bigG): pad_token "!" in both files, eos still ends the prompt
    const config = { ...SD15_CONFIG, pad_token: '!' };
    const map = { ...SD15_MAP, pad_token: '!' };
    withFolder({ ...SLOW_FILES, 'tokenizer_config.json': config, 'special_tokens_map.json': map }, (dir) => {
      const tok = loadTokenizer(dir);
      assert.equal(tok.padId, 0);
      assert.deepEqual([...tok.encode('make it sepia')], padded([id('make</w>'), id('it</w>'), id('sepia</w>')], 0));
      assert.deepEqual([...tok.encode('')], padded([], 0));
    });
  });

  test('pads with eos when neither file names a pad token', () => {
    assert.equal(createTokenizer(hubStyleJson(), {}).padId, EOS);
  });

  test('refuses a pad token that is not in the vocabulary, naming the file', () =>
    withFolder({ 'tokenizer.json': hubStyleJson(), 'special_tokens_map.json': { pad_token: '<pad>' } }, (dir) => {
      assert.throws(
        () => loadTokenizer(dir),
        (e: Error) => e.message.includes('special_tokens_map.json') && /"<pad>"/.test(e.message),
      );
    }));
});

describe('loadTokenizer errors', () => {
  test('name the missing or malformed file', () =>
    withFolder({}, (dir) => {
      assert.throws(
        () => loadTokenizer(dir),
        (e: Error) => e.message.includes(join(dir, 'tokenizer.json')),
      );
      writeFileSync(join(dir, 'tokenizer.json'), '{ not json');
      assert.throws(
        () => loadTokenizer(dir),
        (e: Error) => /Malformed JSON/.test(e.message) && e.message.includes(join(dir, 'tokenizer.json')),
      );
      writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ version: '1.0' }));
      assert.throws(
        () => loadTokenizer(dir),
        (e: Error) => e.message.includes(dir) && /model/.test(e.message),
      );
      writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(hubStyleJson()));
      writeFileSync(join(dir, 'tokenizer_config.json'), '[]');
      assert.throws(
        () => loadTokenizer(dir),
        (e: Error) => e.message.includes(dir) && /tokenizer_config\.json/.test(e.message),
      );
    }));
});

describe("buildBpeTokenizerJson (the generated models' tokenizer)", () => {
  const EDIT_WORDS = ['grayscale', 'greyscale', 'gray', 'grey', 'monochrome', 'invert', 'negative', 'sepia', 'brighter', 'darker', 'warmer', 'cooler'];
  const built = buildBpeTokenizerJson(EDIT_WORDS) as { model: { vocab: Record<string, number>; merges: string[] } };
  const tok = createTokenizer(built, buildTokenizerConfigJson());

  /** GPT-2's bytes_to_unicode, from its definition, in CLIP's vocab order. */
  function clipAlphabet(): string[] {
    const bs: number[] = [];
    for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
    for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
    for (let b = 0xae; b <= 0xff; b++) bs.push(b);
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

  test("lays out the vocab like CLIP's", () => {
    const { vocab, merges } = built.model;
    const entries = Object.entries(vocab).sort((x, y) => x[1] - y[1]);
    assert.equal(entries.length, 512 + merges.length + 2);
    entries.forEach(([, v], i) => assert.equal(v, i));
    const alphabet = clipAlphabet();
    assert.deepEqual(
      entries.slice(0, 256).map(([t]) => t),
      alphabet,
    );
    assert.deepEqual(
      entries.slice(256, 512).map(([t]) => t),
      alphabet.map((s) => s + '</w>'),
    );
    assert.equal(new Set(merges).size, merges.length);
    assert.deepEqual([tok.bosId, tok.eosId, tok.padId, tok.maxLength], [512 + merges.length, 513 + merges.length, 513 + merges.length, 77]);
  });

  test('makes each word a single token', () => {
    for (const w of EDIT_WORDS) assert.deepEqual([...tok.encode(w)].slice(0, 3), [tok.bosId, built.model.vocab[w + '</w>'], tok.eosId], w);
  });

  test('is deterministic', () => {
    assert.equal(JSON.stringify(buildBpeTokenizerJson([...EDIT_WORDS])), JSON.stringify(built));
  });

  test('rejects words CLIP would not keep whole', () => {
    assert.throws(() => buildBpeTokenizerJson(['Sepia']), /lowercase/);
    assert.throws(() => buildBpeTokenizerJson(['4k']), /lowercase/);
    assert.throws(() => buildBpeTokenizerJson(['two words']), /lowercase/);
  });
});
