/**
 * Prompt tokenizer for CLIP text encoders.
 *
 * The tokenizer itself is `@huggingface/tokenizers` (a JavaScript reading of a Hugging Face
 * `tokenizer.json`). A folder without a tokenizer.json but with a slow CLIP tokenizer's
 * `vocab.json` + `merges.txt` is read as the tokenizer.json that transformers builds for those files
 * (clipTokenizerFiles.ts).
 *
 * This wrapper adds what transformers does for a text encoder's input
 * (`tokenizer(prompt, padding="max_length", max_length=model_max_length, truncation=True)`):
 * the tokens are cut to leave room for bos/eos, and the ids are padded with the pad token to
 * exactly `model_max_length` (77 for CLIP).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { CLIP_BOS, CLIP_EOS, clipTokenizerJson, parseMergesTxt } from './clipTokenizerFiles.js';

export interface PromptTokenizer {
  readonly maxLength: number;
  readonly padId: number;
  readonly bosId: number;
  readonly eosId: number;
  /**
   * Token ids, always exactly `length` (default `maxLength`) long: bos, tokens (truncated), eos,
   * padding. T5 (a request's `maxSequenceLength`) passes its own length.
   */
  encode(text: string, length?: number): Int32Array;
  /** Model tokens (no bos/eos, no truncation), for debugging. */
  tokenize(text: string): string[];
}

type Json = Record<string, unknown>;

const DEFAULT_MAX_LENGTH = 77;
const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'pad_token'] as const;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A token in tokenizer_config.json / special_tokens_map.json: a string, or an AddedToken object. */
function tokenContent(entry: unknown, where: string): string | null {
  if (entry === undefined || entry === null) return null;
  if (typeof entry === 'string') return entry;
  if (isObject(entry) && typeof entry['content'] === 'string') return entry['content'];
  throw new Error(`${where}: expected a token string or an object with "content"`);
}

/**
 * The special tokens a transformers tokenizer ends up with: tokenizer_config.json's, each replaced
 * by special_tokens_map.json's when that file names it (transformers' legacy loading order).
 */
function specialTokens(config: Json, map: Json | undefined): Partial<Record<(typeof SPECIAL_KEYS)[number], string>> {
  const out: Partial<Record<(typeof SPECIAL_KEYS)[number], string>> = {};
  for (const key of SPECIAL_KEYS) {
    const token = tokenContent(map?.[key], `special_tokens_map.json: ${key}`) ?? tokenContent(config[key], `tokenizer_config.json: ${key}`);
    if (token !== null) out[key] = token;
  }
  return out;
}

function maxLengthOf(config: Json): number {
  const value = config['model_max_length'];
  if (value === undefined || value === null) return DEFAULT_MAX_LENGTH;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 3) {
    throw new Error(`tokenizer_config.json: model_max_length must be a number ≥ 3, got ${JSON.stringify(value)}`);
  }
  // transformers writes a huge sentinel (int(1e30)) when no limit is known: keep CLIP's 77 then.
  return Number.isInteger(value) && value <= 1_000_000 ? value : DEFAULT_MAX_LENGTH;
}

class ClipPromptTokenizer implements PromptTokenizer {
  readonly bosId: number;
  readonly eosId: number;

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly lowercases: boolean,
    readonly maxLength: number,
    readonly padId: number,
    /** What the post-processor puts before and after the tokens (CLIP: bos, eos). */
    private readonly prefix: readonly number[],
    private readonly suffix: readonly number[],
  ) {
    this.bosId = prefix[0] ?? -1;
    this.eosId = suffix[suffix.length - 1] ?? -1;
  }

  encode(text: string, length = this.maxLength): Int32Array {
    if (!Number.isInteger(length) || length <= this.prefix.length + this.suffix.length)
      throw new Error(`tokenizer: length ${length} leaves no room for tokens`);
    const tokens = this.tokenizer.encode(this.prepare(text), { add_special_tokens: false }).ids;
    const kept = Math.min(tokens.length, length - this.prefix.length - this.suffix.length);
    const out = new Int32Array(length).fill(this.padId);
    out.set(this.prefix, 0);
    out.set(tokens.slice(0, kept), this.prefix.length);
    out.set(this.suffix, this.prefix.length + kept);
    return out;
  }

  tokenize(text: string): string[] {
    return this.tokenizer.tokenize(this.prepare(text));
  }

  /**
   * The library lowercases with String.prototype.toLowerCase, which turns a word-final capital
   * sigma into "ς"; the tokenizers crate lowercases character by character ("Σ" → "σ" everywhere).
   * Σ is the only character JavaScript lowercases by context, so mapping it first gives the
   * crate's result.
   */
  private prepare(text: string): string {
    return this.lowercases ? text.replaceAll('\u03A3', '\u03C3') : text;
  }
}

/** Whether a tokenizer.json normalizer lowercases (a Lowercase step, or BertNormalizer's lowercase). */
function lowercases(normalizer: unknown): boolean {
  if (!isObject(normalizer)) return false;
  if (normalizer['type'] === 'Lowercase') return true;
  if (normalizer['type'] === 'BertNormalizer') return normalizer['lowercase'] !== false;
  return Array.isArray(normalizer['normalizers']) && normalizer['normalizers'].some(lowercases);
}

/**
 * A prompt tokenizer from parsed tokenizer.json contents, with tokenizer_config.json and
 * special_tokens_map.json contents when the folder has them.
 */
export function createTokenizer(tokenizerJson: unknown, tokenizerConfig?: unknown, specialTokensMap?: unknown): PromptTokenizer {
  if (!isObject(tokenizerJson) || !isObject(tokenizerJson['model'])) throw new Error('tokenizer.json: expected an object with a "model"');
  if (tokenizerConfig !== undefined && !isObject(tokenizerConfig)) throw new Error('tokenizer_config.json: expected an object');
  if (specialTokensMap !== undefined && !isObject(specialTokensMap)) throw new Error('special_tokens_map.json: expected an object');
  const config = tokenizerConfig ?? {};
  // The library wants every block present; a tokenizer.json may leave out the ones it doesn't use.
  const json: Json = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...tokenizerJson };
  const tokenizer = new Tokenizer(json, config);

  const probe = '\u0000';
  const withSpecials: string[] = tokenizer.post_processor ? tokenizer.post_processor([probe], null, true).tokens : [probe];
  const idOf = (token: string, where: string): number => {
    const id = tokenizer.token_to_id(token);
    if (id === undefined) throw new Error(`${where}: token ${JSON.stringify(token)} is not in the vocabulary`);
    return id;
  };
  const at = withSpecials.indexOf(probe);
  if (at < 0) throw new Error('tokenizer.json: post_processor drops the tokens it is given');
  const prefix = withSpecials.slice(0, at).map((t) => idOf(t, 'tokenizer.json: post_processor'));
  const suffix = withSpecials.slice(at + 1).map((t) => idOf(t, 'tokenizer.json: post_processor'));

  const specials = specialTokens(config, specialTokensMap);
  const padding = json['padding'];
  let padId: number;
  if (specials.pad_token !== undefined) {
    padId = idOf(
      specials.pad_token,
      specialTokensMap && 'pad_token' in specialTokensMap ? 'special_tokens_map.json: pad_token' : 'tokenizer_config.json: pad_token',
    );
  } else if (isObject(padding) && typeof padding['pad_id'] === 'number') {
    padId = padding['pad_id'];
  } else if (suffix.length > 0) {
    padId = suffix[suffix.length - 1]!;
  } else {
    throw new Error('tokenizer: no pad token (tokenizer_config.json and special_tokens_map.json name none, and no eos to pad with)');
  }
  const maxLength = maxLengthOf(config);
  if (maxLength <= prefix.length + suffix.length) throw new Error(`tokenizer_config.json: model_max_length ${maxLength} leaves no room for tokens`);
  return new ClipPromptTokenizer(tokenizer, lowercases(json.normalizer), maxLength, padId, prefix, suffix);
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`Cannot read tokenizer file ${path}: ${(e as Error).message}`);
  }
}

function readJson(path: string): unknown {
  const text = readText(path);
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new Error(`Malformed JSON in tokenizer file ${path}: ${(e as Error).message}`);
  }
}

function readOptionalJson(path: string): unknown {
  return existsSync(path) ? readJson(path) : undefined;
}

/**
 * The tokenizer.json for a slow CLIP tokenizer's vocab.json + merges.txt, with the special tokens
 * the slow tokenizer would have (tokenizer_config.json, overridden by special_tokens_map.json).
 */
function clipJsonFromSlowFiles(dir: string, config: unknown, map: unknown): object {
  const vocabPath = join(dir, 'vocab.json');
  const vocab = readJson(vocabPath);
  if (!isObject(vocab) || !Object.values(vocab).every((v) => Number.isInteger(v))) {
    throw new Error(`Invalid tokenizer file ${vocabPath}: expected an object of token → id`);
  }
  const specials = specialTokens(isObject(config) ? config : {}, isObject(map) ? map : undefined);
  return clipTokenizerJson(vocab as Record<string, number>, parseMergesTxt(readText(join(dir, 'merges.txt'))), {
    bos: specials.bos_token ?? CLIP_BOS,
    eos: specials.eos_token ?? CLIP_EOS,
    unk: specials.unk_token ?? CLIP_EOS,
  });
}

/**
 * Loads the tokenizer in `dir`: `tokenizer.json`, or else a slow CLIP tokenizer's `vocab.json` +
 * `merges.txt` (what diffusers pipelines and their optimum exports ship); with
 * `tokenizer_config.json` and `special_tokens_map.json` when present.
 */
export function loadTokenizer(dir: string): PromptTokenizer {
  const jsonPath = join(dir, 'tokenizer.json');
  const config = readOptionalJson(join(dir, 'tokenizer_config.json'));
  const map = readOptionalJson(join(dir, 'special_tokens_map.json'));
  let json: unknown;
  try {
    if (existsSync(jsonPath)) {
      json = readJson(jsonPath);
    } else if (existsSync(join(dir, 'vocab.json')) && existsSync(join(dir, 'merges.txt'))) {
      json = clipJsonFromSlowFiles(dir, config, map);
    } else {
      throw new Error(`Cannot read tokenizer file ${jsonPath}: it does not exist, and neither do vocab.json + merges.txt beside it`);
    }
    return createTokenizer(json, config, map);
  } catch (e) {
    const message = (e as Error).message;
    throw new Error(message.includes(dir) ? message : `Invalid tokenizer in ${dir}: ${message}`);
  }
}
