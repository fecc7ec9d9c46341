/**
 * Prompt tokenizer for CLIP text encoders, driven by a Hugging Face `tokenizer.json` (or a slow
 * CLIP tokenizer's vocab.json + merges.txt, read as the same structure: clipTokenizerFiles.ts).
 *
 * Implements the pieces of the `tokenizers` pipeline that CLIP (Stable Diffusion,
 * InstructPix2Pix, SD2) exports use, following the documented semantics:
 *
 *   added-token extraction → normalizer → pre-tokenizer → model (BPE / WordLevel)
 *   → truncation → post-processor (bos/eos) → padding
 *
 * The result of `encode` matches transformers' CLIPTokenizerFast called with
 * `padding="max_length", max_length=model_max_length, truncation=True`.
 *
 * Supported components (unknown ones throw a clear error instead of silently
 * producing different ids):
 *   normalizers:    Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Replace, Strip,
 *                   StripAccents, Prepend, BertNormalizer
 *   pre-tokenizers: Sequence, Split (all behaviors, invert), ByteLevel,
 *                   Whitespace, WhitespaceSplit
 *   models:         BPE (vocab + merges as "a b" or ["a","b"], end_of_word_suffix,
 *                   continuing_subword_prefix, unk_token, fuse_unk, byte_fallback,
 *                   ignore_merges), WordLevel
 *   post-processors: RobertaProcessing, BertProcessing, TemplateProcessing,
 *                   ByteLevel (no-op for ids), Sequence
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CLIP_BOS, CLIP_EOS, clipTokenizerJson, parseMergesTxt } from "./clipTokenizerFiles.js";

export interface PromptTokenizer {
  readonly maxLength: number;
  readonly padId: number;
  readonly bosId: number;
  readonly eosId: number;
  /** Token ids, always exactly `maxLength` long: bos, tokens (truncated), eos, padding. */
  encode(text: string): Int32Array;
  /** Model tokens (no bos/eos, no truncation), for debugging. */
  tokenize(text: string): string[];
}

// ---------------------------------------------------------------------------
// Byte-level alphabet (GPT-2 / CLIP "bytes_to_unicode")
// ---------------------------------------------------------------------------

/**
 * Printable bytes map to the code point of the same value; the remaining bytes
 * (control chars, space, 0x7F-0xA0, 0xAD) map to U+0100 upwards, in byte order.
 * `BYTE_ORDER` lists bytes in the order CLIP's vocab enumerates them
 * (printable ones first, then the remapped ones).
 */
const BYTE_ORDER: readonly number[] = (() => {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const isPrintable = new Set(printable);
  const rest: number[] = [];
  for (let b = 0; b < 256; b++) if (!isPrintable.has(b)) rest.push(b);
  return [...printable, ...rest];
})();

const BYTE_TO_CHAR: readonly string[] = (() => {
  const table = new Array<string>(256);
  let next = 256;
  for (const b of BYTE_ORDER) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : next++);
  }
  return table;
})();

/** The 256 byte-level symbols in CLIP vocab order ("!" first, id 0 in CLIP). */
export const BYTE_LEVEL_ALPHABET: readonly string[] = BYTE_ORDER.map((b) => BYTE_TO_CHAR[b]!);

const utf8 = new TextEncoder();

/** Maps a string's UTF-8 bytes to byte-level symbols (one code point per byte). */
export function byteLevelEncode(text: string): string {
  let out = "";
  for (const b of utf8.encode(text)) out += BYTE_TO_CHAR[b]!;
  return out;
}

// ---------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------

type Obj = Record<string, unknown>;

class FormatError extends Error {}

function fail(where: string, message: string): never {
  throw new FormatError(`${where}: ${message}`);
}

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function asObj(v: unknown, where: string): Obj {
  if (!isObj(v)) fail(where, `expected an object, got ${describe(v)}`);
  return v;
}

function asArray(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) fail(where, `expected an array, got ${describe(v)}`);
  return v;
}

function asString(v: unknown, where: string): string {
  if (typeof v !== "string") fail(where, `expected a string, got ${describe(v)}`);
  return v;
}

function asId(v: unknown, where: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0x7fffffff) {
    fail(where, `expected a non-negative integer token id, got ${describe(v)}`);
  }
  return v;
}

function optString(v: unknown, where: string): string | null {
  if (v === undefined || v === null) return null;
  return asString(v, where);
}

function optBool(v: unknown, where: string, dflt: boolean): boolean {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "boolean") fail(where, `expected a boolean, got ${describe(v)}`);
  return v;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)}`;
  return typeof v;
}

/** tokenizer_config.json tokens are either plain strings or AddedToken objects ({content}). */
function configToken(v: unknown, where: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === "string") return v;
  if (isObj(v)) return asString(v["content"], `${where}.content`);
  fail(where, `expected a string or an object with "content", got ${describe(v)}`);
}

// ---------------------------------------------------------------------------
// Regex translation (Oniguruma syntax used by `tokenizers` → JS RegExp, "u" flag)
// ---------------------------------------------------------------------------

const JS_SYNTAX_CHARS = new Set("^$\\.*+?()[]{}|/".split(""));
// Onig's Unicode \s is the White_Space property; JS's \s also includes U+FEFF and misses U+0085.
const WS = "\\p{White_Space}";
const NOT_WS = "\\P{White_Space}";
const WORD_CLASS = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";

function translateEscape(pattern: string, i: number, inClass: boolean, where: string): [string, number] {
  const c = pattern[i + 1];
  if (c === undefined) fail(where, `regex ${JSON.stringify(pattern)} ends with a lone backslash`);
  switch (c) {
    case "s":
      return [WS, i + 2];
    case "S":
      return [NOT_WS, i + 2];
    case "d":
      return ["\\p{Nd}", i + 2];
    case "D":
      return ["\\P{Nd}", i + 2];
    case "w":
      return [inClass ? WORD_CLASS : `[${WORD_CLASS}]`, i + 2];
    case "W":
      if (inClass) fail(where, `regex ${JSON.stringify(pattern)}: \\W inside a character class is not supported`);
      return [`[^${WORD_CLASS}]`, i + 2];
    case "p":
    case "P": {
      const m = /^\{\^?[A-Za-z_=]+\}/.exec(pattern.slice(i + 2));
      if (!m) fail(where, `regex ${JSON.stringify(pattern)}: malformed \\${c}{...}`);
      let body = m[0];
      let kind = c;
      if (body.startsWith("{^")) {
        kind = c === "p" ? "P" : "p";
        body = "{" + body.slice(2);
      }
      return [`\\${kind}${body}`, i + 2 + m[0].length];
    }
    case "x": {
      if (pattern[i + 2] === "{") {
        const end = pattern.indexOf("}", i + 3);
        if (end < 0) fail(where, `regex ${JSON.stringify(pattern)}: malformed \\x{...}`);
        return [`\\u{${pattern.slice(i + 3, end)}}`, end + 1];
      }
      return [pattern.slice(i, i + 4), i + 4];
    }
    case "u":
      return [pattern.slice(i, i + 6), i + 6];
    case "n":
    case "r":
    case "t":
    case "f":
    case "v":
    case "0":
    case "b":
    case "B":
      return [`\\${c}`, i + 2];
    default:
      if (/[A-Za-z0-9]/.test(c)) {
        fail(where, `regex ${JSON.stringify(pattern)}: unsupported escape \\${c}`);
      }
      // Escaped punctuation: keep the escape only where the "u" flag allows it.
      if (JS_SYNTAX_CHARS.has(c) || (inClass && c === "-")) return [`\\${c}`, i + 2];
      return [c, i + 2];
  }
}

function caseVariants(ch: string): string {
  const lo = ch.toLowerCase();
  const up = ch.toUpperCase();
  if (lo === up || lo.length !== 1 || up.length !== 1) return ch;
  return lo + up;
}

/**
 * Translates an Oniguruma pattern (as written in tokenizer.json) to a JS RegExp.
 * Handles \s/\S/\d/\w with Unicode meanings, \p{^X}, \x{...}, identity escapes,
 * possessive quantifiers and atomic groups (approximated as greedy / non-capturing),
 * and scoped case-insensitivity `(?i:...)` / a leading `(?i)`.
 */
function toJsRegExp(pattern: string, where: string): RegExp {
  let src = pattern;
  let flags = "gu";
  if (src.startsWith("(?i)")) {
    flags += "i";
    src = src.slice(4);
  }
  let out = "";
  const groupCi: boolean[] = [];
  let ci = false;
  let i = 0;
  while (i < src.length) {
    const ch = src[i]!;
    if (ch === "\\") {
      const [t, next] = translateEscape(src, i, false, where);
      out += ci && t.length === 1 ? `[${caseVariants(t)}]` : t;
      i = next;
    } else if (ch === "[") {
      // Character class: copy it, translating escapes and expanding case if needed.
      let j = i + 1;
      let body = "";
      if (src[j] === "^") {
        body += "^";
        j++;
      }
      let first = true;
      while (j < src.length && (src[j] !== "]" || first)) {
        first = false;
        if (src[j] === "\\") {
          const [t, next] = translateEscape(src, j, true, where);
          body += t;
          j = next;
        } else if (src[j] === "[") {
          fail(where, `regex ${JSON.stringify(pattern)}: nested character classes are not supported`);
        } else {
          const c = src[j]!;
          // a-z style range with case-insensitivity: add the other case's range too
          if (ci && src[j + 1] === "-" && src[j + 2] !== undefined && src[j + 2] !== "]" && src[j + 2] !== "\\") {
            const d = src[j + 2]!;
            body += `${c}-${d}`;
            const c2 = caseVariants(c).replace(c, "");
            const d2 = caseVariants(d).replace(d, "");
            if (c2 && d2) body += `${c2}-${d2}`;
            j += 3;
            continue;
          }
          body += ci ? caseVariants(c) : c === "/" ? "\\/" : c;
          j++;
        }
      }
      if (src[j] !== "]") fail(where, `regex ${JSON.stringify(pattern)}: unterminated character class`);
      out += `[${body}]`;
      i = j + 1;
    } else if (ch === "(") {
      if (src.startsWith("(?i:", i)) {
        groupCi.push(ci);
        ci = true;
        out += "(?:";
        i += 4;
      } else if (src.startsWith("(?-i:", i)) {
        groupCi.push(ci);
        ci = false;
        out += "(?:";
        i += 5;
      } else if (src.startsWith("(?>", i)) {
        groupCi.push(ci);
        out += "(?:";
        i += 3;
      } else if (src.startsWith("(?#", i)) {
        const end = src.indexOf(")", i);
        if (end < 0) fail(where, `regex ${JSON.stringify(pattern)}: unterminated comment`);
        i = end + 1;
      } else {
        groupCi.push(ci);
        out += "(";
        i += 1;
      }
    } else if (ch === ")") {
      if (groupCi.length === 0) fail(where, `regex ${JSON.stringify(pattern)}: unbalanced ")"`);
      ci = groupCi.pop()!;
      out += ")";
      i += 1;
    } else if ((ch === "+" || ch === "*" || ch === "?" || ch === "}") && src[i + 1] === "+") {
      // possessive quantifier → greedy (JS has no possessive quantifiers)
      out += ch;
      i += 2;
    } else if (ch === "/") {
      out += "\\/";
      i += 1;
    } else {
      out += ci && /[A-Za-z]/.test(ch) ? `[${caseVariants(ch)}]` : ch;
      i += 1;
    }
  }
  if (groupCi.length !== 0) fail(where, `regex ${JSON.stringify(pattern)}: unbalanced "("`);
  try {
    return new RegExp(out, flags);
  } catch (e) {
    fail(where, `regex ${JSON.stringify(pattern)} is not supported (${(e as Error).message})`);
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&");
}

/** A tokenizer.json pattern: {"Regex": "..."} or {"String": "..."}. */
function patternToRegExp(v: unknown, where: string): RegExp {
  const p = asObj(v, where);
  if (typeof p["Regex"] === "string") return toJsRegExp(p["Regex"], `${where}.Regex`);
  if (typeof p["String"] === "string") return new RegExp(escapeRegExp(p["String"]), "gu");
  fail(where, `expected {"Regex": string} or {"String": string}`);
}

/** Non-empty matches of a global regex as [start, end) ranges. */
function matchRanges(re: RegExp, text: string): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  re.lastIndex = 0;
  for (;;) {
    const m = re.exec(text);
    if (!m) break;
    if (m[0].length === 0) {
      // skip empty matches, advancing by one code point
      const cp = text.codePointAt(re.lastIndex);
      re.lastIndex += cp !== undefined && cp > 0xffff ? 2 : 1;
      if (re.lastIndex > text.length) break;
      continue;
    }
    ranges.push([m.index, m.index + m[0].length]);
  }
  return ranges;
}

// ---------------------------------------------------------------------------
// Normalizers
// ---------------------------------------------------------------------------

type Normalizer = (s: string) => string;

const COMBINING_MARK = /\p{Mn}/gu;

function isCjk(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

/** Lowercases code point by code point (no context-sensitive final-sigma rule), like `tokenizers`. */
function lowercaseChars(s: string): string {
  let out = "";
  for (const ch of s) out += ch.toLowerCase();
  return out;
}

function buildNormalizer(spec: unknown, where: string): Normalizer | null {
  if (spec === null || spec === undefined) return null;
  const o = asObj(spec, where);
  const type = asString(o["type"], `${where}.type`);
  switch (type) {
    case "Sequence": {
      const parts = asArray(o["normalizers"], `${where}.normalizers`).map((n, i) =>
        buildNormalizer(n, `${where}.normalizers[${i}]`),
      );
      const fns = parts.filter((p): p is Normalizer => p !== null);
      return (s) => fns.reduce((acc, f) => f(acc), s);
    }
    case "NFC":
    case "NFD":
    case "NFKC":
    case "NFKD":
      return (s) => s.normalize(type);
    case "Lowercase":
      return lowercaseChars;
    case "Replace": {
      const re = patternToRegExp(o["pattern"], `${where}.pattern`);
      const content = asString(o["content"], `${where}.content`);
      return (s) => s.replace(re, () => content);
    }
    case "Strip": {
      const left = optBool(o["strip_left"], `${where}.strip_left`, true);
      const right = optBool(o["strip_right"], `${where}.strip_right`, true);
      return (s) => {
        let r = s;
        if (left) r = r.replace(/^\p{White_Space}+/u, "");
        if (right) r = r.replace(/\p{White_Space}+$/u, "");
        return r;
      };
    }
    case "StripAccents":
      return (s) => s.replace(COMBINING_MARK, "");
    case "Prepend": {
      const prefix = asString(o["prepend"], `${where}.prepend`);
      return (s) => (s.length > 0 ? prefix + s : s);
    }
    case "BertNormalizer": {
      const cleanText = optBool(o["clean_text"], `${where}.clean_text`, true);
      const chinese = optBool(o["handle_chinese_chars"], `${where}.handle_chinese_chars`, true);
      const lowercase = optBool(o["lowercase"], `${where}.lowercase`, true);
      const stripAccents =
        o["strip_accents"] === null || o["strip_accents"] === undefined
          ? lowercase
          : optBool(o["strip_accents"], `${where}.strip_accents`, lowercase);
      return (s) => {
        let r = s;
        if (cleanText) {
          let t = "";
          for (const ch of r) {
            const cp = ch.codePointAt(0)!;
            if (cp === 0 || cp === 0xfffd) continue;
            if (ch === "\t" || ch === "\n" || ch === "\r") t += " ";
            else if (/\p{Cc}|\p{Cf}/u.test(ch)) continue;
            else if (/\p{White_Space}/u.test(ch)) t += " ";
            else t += ch;
          }
          r = t;
        }
        if (chinese) {
          let t = "";
          for (const ch of r) t += isCjk(ch.codePointAt(0)!) ? ` ${ch} ` : ch;
          r = t;
        }
        if (stripAccents) r = r.normalize("NFD").replace(COMBINING_MARK, "");
        if (lowercase) r = lowercaseChars(r);
        return r;
      };
    }
    default:
      fail(`${where}.type`, `unsupported normalizer type ${JSON.stringify(type)}`);
  }
}

// ---------------------------------------------------------------------------
// Pre-tokenizers (operate on a list of pieces)
// ---------------------------------------------------------------------------

type PreTokenizer = (pieces: string[]) => string[];

const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

type SplitBehavior = "Removed" | "Isolated" | "MergedWithPrevious" | "MergedWithNext" | "Contiguous";

function splitPiece(text: string, re: RegExp, behavior: SplitBehavior, invert: boolean): string[] {
  // Cover the text with (segment, isMatch) parts.
  const parts: Array<{ s: string; m: boolean }> = [];
  let pos = 0;
  for (const [a, b] of matchRanges(re, text)) {
    if (a > pos) parts.push({ s: text.slice(pos, a), m: invert });
    parts.push({ s: text.slice(a, b), m: !invert });
    pos = b;
  }
  if (pos < text.length) parts.push({ s: text.slice(pos), m: invert });

  const out: string[] = [];
  switch (behavior) {
    case "Removed":
      for (const p of parts) if (!p.m) out.push(p.s);
      break;
    case "Isolated":
      for (const p of parts) out.push(p.s);
      break;
    case "MergedWithPrevious": {
      // a delimiter joins the piece before it, unless that piece is itself a delimiter
      let prevMatch = false;
      for (const p of parts) {
        if (p.m && !prevMatch && out.length > 0) out[out.length - 1] += p.s;
        else out.push(p.s);
        prevMatch = p.m;
      }
      break;
    }
    case "MergedWithNext": {
      // a delimiter joins the piece after it, unless that piece is itself a delimiter
      let nextMatch = false;
      const rev: string[] = [];
      for (let k = parts.length - 1; k >= 0; k--) {
        const p = parts[k]!;
        if (p.m && !nextMatch && rev.length > 0) rev[rev.length - 1] = p.s + rev[rev.length - 1];
        else rev.push(p.s);
        nextMatch = p.m;
      }
      out.push(...rev.reverse());
      break;
    }
    case "Contiguous": {
      let prevMatch = false;
      for (const p of parts) {
        if (p.m && prevMatch && out.length > 0) out[out.length - 1] += p.s;
        else out.push(p.s);
        prevMatch = p.m;
      }
      break;
    }
  }
  return out.filter((s) => s.length > 0);
}

function buildPreTokenizer(spec: unknown, where: string): PreTokenizer | null {
  if (spec === null || spec === undefined) return null;
  const o = asObj(spec, where);
  const type = asString(o["type"], `${where}.type`);
  switch (type) {
    case "Sequence": {
      const fns = asArray(o["pretokenizers"], `${where}.pretokenizers`)
        .map((p, i) => buildPreTokenizer(p, `${where}.pretokenizers[${i}]`))
        .filter((p): p is PreTokenizer => p !== null);
      return (pieces) => fns.reduce((acc, f) => f(acc), pieces);
    }
    case "Split": {
      const re = patternToRegExp(o["pattern"], `${where}.pattern`);
      const behavior = asString(o["behavior"], `${where}.behavior`);
      const allowed: SplitBehavior[] = ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"];
      if (!allowed.includes(behavior as SplitBehavior)) {
        fail(`${where}.behavior`, `unsupported split behavior ${JSON.stringify(behavior)}`);
      }
      const invert = optBool(o["invert"], `${where}.invert`, false);
      return (pieces) => pieces.flatMap((p) => splitPiece(p, re, behavior as SplitBehavior, invert));
    }
    case "ByteLevel": {
      const addPrefixSpace = optBool(o["add_prefix_space"], `${where}.add_prefix_space`, true);
      const useRegex = optBool(o["use_regex"], `${where}.use_regex`, true);
      return (pieces) =>
        pieces.flatMap((p) => {
          const s = addPrefixSpace && !p.startsWith(" ") ? " " + p : p;
          const split = useRegex ? splitPiece(s, GPT2_SPLIT, "Isolated", false) : [s];
          return split.map(byteLevelEncode);
        });
    }
    case "Whitespace":
      return (pieces) =>
        pieces.flatMap((p) => splitPiece(p, /[\p{L}\p{M}\p{Nd}\p{Pc}]+|[^\p{L}\p{M}\p{Nd}\p{Pc}\p{White_Space}]+/gu, "Removed", true));
    case "WhitespaceSplit":
      return (pieces) => pieces.flatMap((p) => splitPiece(p, /\p{White_Space}+/gu, "Removed", false));
    default:
      fail(`${where}.type`, `unsupported pre_tokenizer type ${JSON.stringify(type)}`);
  }
}

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

interface Piece {
  ids: number[];
  tokens: string[];
}

interface Model {
  /** token string → id (model vocabulary only) */
  readonly vocab: Map<string, number>;
  encodeWord(word: string): Piece;
}

function parseVocab(v: unknown, where: string): Map<string, number> {
  const o = asObj(v, where);
  const vocab = new Map<string, number>();
  for (const [tok, id] of Object.entries(o)) vocab.set(tok, asId(id, `${where}[${JSON.stringify(tok)}]`));
  return vocab;
}

function invertVocab(vocab: Map<string, number>): Map<number, string> {
  const inv = new Map<number, string>();
  for (const [t, id] of vocab) if (!inv.has(id)) inv.set(id, t);
  return inv;
}

interface MergeRule {
  rank: number;
  id: number;
}

class BpeModel implements Model {
  readonly vocab: Map<string, number>;
  private readonly idToToken: Map<number, string>;
  private readonly merges = new Map<string, MergeRule>();
  private readonly suffix: string;
  private readonly prefix: string;
  private readonly unkId: number | null;
  private readonly fuseUnk: boolean;
  private readonly byteFallback: boolean;
  private readonly ignoreMerges: boolean;
  private readonly cache = new Map<string, Piece>();
  private static readonly CACHE_LIMIT = 20000;

  constructor(o: Obj, where: string) {
    this.vocab = parseVocab(o["vocab"], `${where}.vocab`);
    this.idToToken = invertVocab(this.vocab);
    this.suffix = optString(o["end_of_word_suffix"], `${where}.end_of_word_suffix`) ?? "";
    this.prefix = optString(o["continuing_subword_prefix"], `${where}.continuing_subword_prefix`) ?? "";
    this.fuseUnk = optBool(o["fuse_unk"], `${where}.fuse_unk`, false);
    this.byteFallback = optBool(o["byte_fallback"], `${where}.byte_fallback`, false);
    this.ignoreMerges = optBool(o["ignore_merges"], `${where}.ignore_merges`, false);
    const unk = optString(o["unk_token"], `${where}.unk_token`);
    if (unk !== null) {
      const id = this.vocab.get(unk);
      if (id === undefined) fail(`${where}.unk_token`, `${JSON.stringify(unk)} is not in the vocab`);
      this.unkId = id;
    } else {
      this.unkId = null;
    }

    const merges = asArray(o["merges"] ?? [], `${where}.merges`);
    merges.forEach((m, rank) => {
      const mw = `${where}.merges[${rank}]`;
      let a: string;
      let b: string;
      if (typeof m === "string") {
        const parts = m.split(" ");
        if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
          fail(mw, `expected "left right", got ${JSON.stringify(m)}`);
        }
        [a, b] = parts as [string, string];
      } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") {
        [a, b] = m as [string, string];
      } else {
        fail(mw, `expected "left right" or ["left", "right"], got ${describe(m)}`);
      }
      const idA = this.vocab.get(a);
      const idB = this.vocab.get(b);
      if (idA === undefined) fail(mw, `token ${JSON.stringify(a)} is not in the vocab`);
      if (idB === undefined) fail(mw, `token ${JSON.stringify(b)} is not in the vocab`);
      const merged = a + (this.prefix && b.startsWith(this.prefix) ? b.slice(this.prefix.length) : b);
      const id = this.vocab.get(merged);
      if (id === undefined) fail(mw, `merged token ${JSON.stringify(merged)} is not in the vocab`);
      const key = `${idA} ${idB}`;
      if (!this.merges.has(key)) this.merges.set(key, { rank, id });
    });
  }

  encodeWord(word: string): Piece {
    const cached = this.cache.get(word);
    if (cached) return cached;
    const piece = this.compute(word);
    if (this.cache.size >= BpeModel.CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, piece);
    return piece;
  }

  private compute(word: string): Piece {
    if (this.ignoreMerges) {
      const id = this.vocab.get(word);
      if (id !== undefined) return { ids: [id], tokens: [word] };
    }
    const chars = Array.from(word);
    const ids: number[] = [];
    let lastWasUnk = false;
    chars.forEach((ch, i) => {
      let sym = ch;
      if (i > 0 && this.prefix) sym = this.prefix + sym;
      if (i === chars.length - 1 && this.suffix) sym = sym + this.suffix;
      const id = this.vocab.get(sym);
      if (id !== undefined) {
        ids.push(id);
        lastWasUnk = false;
        return;
      }
      if (this.byteFallback) {
        const byteIds = Array.from(utf8.encode(ch), (b) =>
          this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`),
        );
        if (byteIds.every((x) => x !== undefined)) {
          ids.push(...(byteIds as number[]));
          lastWasUnk = false;
          return;
        }
      }
      if (this.unkId !== null) {
        if (!(this.fuseUnk && lastWasUnk)) ids.push(this.unkId);
        lastWasUnk = true;
      }
      // without an unk token the symbol is dropped, as `tokenizers` does
    });

    // Repeatedly apply the lowest-ranked merge (leftmost on ties).
    while (ids.length > 1) {
      let best = -1;
      let bestRule: MergeRule | undefined;
      for (let i = 0; i + 1 < ids.length; i++) {
        const rule = this.merges.get(`${ids[i]} ${ids[i + 1]}`);
        if (rule && (bestRule === undefined || rule.rank < bestRule.rank)) {
          best = i;
          bestRule = rule;
        }
      }
      if (bestRule === undefined) break;
      ids.splice(best, 2, bestRule.id);
    }
    return { ids, tokens: ids.map((id) => this.idToToken.get(id) ?? "") };
  }
}

class WordLevelModel implements Model {
  readonly vocab: Map<string, number>;
  private readonly unkId: number | null;
  private readonly unkToken: string | null;

  constructor(o: Obj, where: string) {
    this.vocab = parseVocab(o["vocab"], `${where}.vocab`);
    this.unkToken = optString(o["unk_token"], `${where}.unk_token`);
    if (this.unkToken !== null) {
      const id = this.vocab.get(this.unkToken);
      if (id === undefined) fail(`${where}.unk_token`, `${JSON.stringify(this.unkToken)} is not in the vocab`);
      this.unkId = id;
    } else {
      this.unkId = null;
    }
  }

  encodeWord(word: string): Piece {
    const id = this.vocab.get(word);
    if (id !== undefined) return { ids: [id], tokens: [word] };
    if (this.unkId === null) throw new Error(`WordLevel tokenizer: ${JSON.stringify(word)} is not in the vocab and there is no unk_token`);
    return { ids: [this.unkId], tokens: [this.unkToken!] };
  }
}

function buildModel(spec: unknown, where: string): Model {
  const o = asObj(spec, where);
  let type = o["type"];
  if (type === undefined && o["merges"] !== undefined) type = "BPE";
  const t = asString(type, `${where}.type`);
  switch (t) {
    case "BPE":
      return new BpeModel(o, where);
    case "WordLevel":
      return new WordLevelModel(o, where);
    default:
      fail(`${where}.type`, `unsupported model type ${JSON.stringify(t)} (supported: BPE, WordLevel)`);
  }
}

// ---------------------------------------------------------------------------
// Added tokens
// ---------------------------------------------------------------------------

interface AddedToken {
  id: number;
  content: string;
  normalized: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
}

type Segment = { text: string; id?: never } | { id: number; token: string; text?: never };

class AddedTokenMatcher {
  private readonly re: RegExp | null;
  private readonly byContent = new Map<string, AddedToken>();

  constructor(tokens: Array<AddedToken & { match: string }>) {
    for (const t of tokens) if (t.match && !this.byContent.has(t.match)) this.byContent.set(t.match, t);
    const contents = [...this.byContent.keys()].sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
    this.re = contents.length ? new RegExp(contents.map(escapeRegExp).join("|"), "gu") : null;
  }

  split(text: string): Segment[] {
    if (!this.re || text.length === 0) return text.length ? [{ text }] : [];
    const out: Segment[] = [];
    let pos = 0;
    this.re.lastIndex = 0;
    for (;;) {
      const m = this.re.exec(text);
      if (!m) break;
      const tok = this.byContent.get(m[0])!;
      let start = m.index;
      let end = start + m[0].length;
      if (tok.singleWord) {
        const before = text.slice(0, start);
        const after = text.slice(end);
        if (/[\p{L}\p{N}_]$/u.test(before) || /^[\p{L}\p{N}_]/u.test(after)) {
          this.re.lastIndex = m.index + 1;
          continue;
        }
      }
      if (tok.lstrip) while (start > pos && /\p{White_Space}/u.test(text[start - 1]!)) start--;
      if (tok.rstrip) while (end < text.length && /\p{White_Space}/u.test(text[end]!)) end++;
      if (start > pos) out.push({ text: text.slice(pos, start) });
      out.push({ id: tok.id, token: tok.content });
      pos = end;
      this.re.lastIndex = end;
    }
    if (pos < text.length) out.push({ text: text.slice(pos) });
    return out;
  }
}

// ---------------------------------------------------------------------------
// Post-processor
// ---------------------------------------------------------------------------

interface Specials {
  prefix: number[];
  suffix: number[];
}

function pairId(v: unknown, where: string): number {
  const arr = asArray(v, where);
  if (arr.length !== 2) fail(where, `expected [token, id]`);
  asString(arr[0], `${where}[0]`);
  return asId(arr[1], `${where}[1]`);
}

function buildPostProcessor(spec: unknown, where: string): Specials {
  if (spec === null || spec === undefined) return { prefix: [], suffix: [] };
  const o = asObj(spec, where);
  const type = asString(o["type"], `${where}.type`);
  switch (type) {
    case "RobertaProcessing":
    case "BertProcessing":
      return { prefix: [pairId(o["cls"], `${where}.cls`)], suffix: [pairId(o["sep"], `${where}.sep`)] };
    case "ByteLevel":
      return { prefix: [], suffix: [] };
    case "TemplateProcessing": {
      const specialTokens = asObj(o["special_tokens"] ?? {}, `${where}.special_tokens`);
      const single = asArray(o["single"], `${where}.single`);
      const prefix: number[] = [];
      const suffix: number[] = [];
      let seenSequence = false;
      single.forEach((item, i) => {
        const iw = `${where}.single[${i}]`;
        const it = asObj(item, iw);
        if (it["Sequence"] !== undefined) {
          if (seenSequence) fail(iw, "more than one Sequence in the single template");
          seenSequence = true;
        } else if (it["SpecialToken"] !== undefined) {
          const name = asString(asObj(it["SpecialToken"], `${iw}.SpecialToken`)["id"], `${iw}.SpecialToken.id`);
          const st = asObj(specialTokens[name], `${where}.special_tokens[${JSON.stringify(name)}]`);
          const ids = asArray(st["ids"], `${where}.special_tokens[${JSON.stringify(name)}].ids`).map((x, k) =>
            asId(x, `${where}.special_tokens[${JSON.stringify(name)}].ids[${k}]`),
          );
          (seenSequence ? suffix : prefix).push(...ids);
        } else {
          fail(iw, `expected {"Sequence": ...} or {"SpecialToken": ...}`);
        }
      });
      if (!seenSequence) fail(`${where}.single`, "template has no Sequence");
      return { prefix, suffix };
    }
    case "Sequence": {
      const parts = asArray(o["processors"], `${where}.processors`).map((p, i) =>
        buildPostProcessor(p, `${where}.processors[${i}]`),
      );
      const prefix: number[] = [];
      const suffix: number[] = [];
      for (const p of parts) {
        prefix.unshift(...p.prefix);
        suffix.push(...p.suffix);
      }
      return { prefix, suffix };
    }
    default:
      fail(`${where}.type`, `unsupported post_processor type ${JSON.stringify(type)}`);
  }
}

// ---------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------

const DEFAULT_MAX_LENGTH = 77;

class HfPromptTokenizer implements PromptTokenizer {
  readonly maxLength: number;
  readonly padId: number;
  readonly bosId: number;
  readonly eosId: number;
  private readonly padLeft: boolean;

  constructor(
    private readonly normalizer: Normalizer | null,
    private readonly preTokenizer: PreTokenizer | null,
    private readonly model: Model,
    private readonly rawAdded: AddedTokenMatcher,
    private readonly normalizedAdded: AddedTokenMatcher,
    private readonly specials: Specials,
    opts: { maxLength: number; padId: number; bosId: number; eosId: number; padLeft: boolean },
  ) {
    this.maxLength = opts.maxLength;
    this.padId = opts.padId;
    this.bosId = opts.bosId;
    this.eosId = opts.eosId;
    this.padLeft = opts.padLeft;
    if (this.maxLength < specials.prefix.length + specials.suffix.length) {
      throw new Error(`model_max_length ${this.maxLength} leaves no room for the special tokens`);
    }
  }

  private pieces(text: string): Piece[] {
    const out: Piece[] = [];
    for (const seg of this.rawAdded.split(text)) {
      if (seg.id !== undefined) {
        out.push({ ids: [seg.id], tokens: [seg.token] });
        continue;
      }
      const normalized = this.normalizer ? this.normalizer(seg.text) : seg.text;
      for (const seg2 of this.normalizedAdded.split(normalized)) {
        if (seg2.id !== undefined) {
          out.push({ ids: [seg2.id], tokens: [seg2.token] });
          continue;
        }
        const words = this.preTokenizer ? this.preTokenizer([seg2.text]) : [seg2.text];
        for (const w of words) if (w.length > 0) out.push(this.model.encodeWord(w));
      }
    }
    return out;
  }

  tokenize(text: string): string[] {
    return this.pieces(text).flatMap((p) => p.tokens);
  }

  encode(text: string): Int32Array {
    const { prefix, suffix } = this.specials;
    const room = this.maxLength - prefix.length - suffix.length;
    const body: number[] = [];
    outer: for (const p of this.pieces(text)) {
      for (const id of p.ids) {
        if (body.length >= room) break outer;
        body.push(id);
      }
    }
    const ids = [...prefix, ...body, ...suffix];
    const out = new Int32Array(this.maxLength).fill(this.padId);
    out.set(ids, this.padLeft ? this.maxLength - ids.length : 0);
    return out;
  }
}

function parseAddedTokens(v: unknown, where: string): AddedToken[] {
  if (v === undefined || v === null) return [];
  return asArray(v, where).map((t, i) => {
    const tw = `${where}[${i}]`;
    const o = asObj(t, tw);
    return {
      id: asId(o["id"], `${tw}.id`),
      content: asString(o["content"], `${tw}.content`),
      normalized: optBool(o["normalized"], `${tw}.normalized`, !optBool(o["special"], `${tw}.special`, false)),
      lstrip: optBool(o["lstrip"], `${tw}.lstrip`, false),
      rstrip: optBool(o["rstrip"], `${tw}.rstrip`, false),
      singleWord: optBool(o["single_word"], `${tw}.single_word`, false),
    };
  });
}

function buildTokenizer(tokenizerJson: unknown, tokenizerConfig: unknown, jsonName: string, configName: string): PromptTokenizer {
  const root = asObj(tokenizerJson, jsonName);
  if (root["model"] === undefined) fail(jsonName, `missing "model"`);
  const normalizer = buildNormalizer(root["normalizer"], `${jsonName}: normalizer`);
  const preTokenizer = buildPreTokenizer(root["pre_tokenizer"], `${jsonName}: pre_tokenizer`);
  const model = buildModel(root["model"], `${jsonName}: model`);
  const added = parseAddedTokens(root["added_tokens"], `${jsonName}: added_tokens`);
  const specials = buildPostProcessor(root["post_processor"], `${jsonName}: post_processor`);

  const tokenToId = new Map(model.vocab);
  for (const t of added) tokenToId.set(t.content, t.id);

  const rawAdded = new AddedTokenMatcher(added.filter((t) => !t.normalized).map((t) => ({ ...t, match: t.content })));
  const normalizedAdded = new AddedTokenMatcher(
    added.filter((t) => t.normalized).map((t) => ({ ...t, match: normalizer ? normalizer(t.content) : t.content })),
  );

  const cfg = tokenizerConfig === undefined || tokenizerConfig === null ? {} : asObj(tokenizerConfig, configName);
  const lookup = (token: string, where: string): number => {
    const id = tokenToId.get(token);
    if (id === undefined) fail(where, `token ${JSON.stringify(token)} is not in the vocabulary of ${jsonName}`);
    return id;
  };

  let maxLength = DEFAULT_MAX_LENGTH;
  const mml = cfg["model_max_length"];
  if (mml !== undefined && mml !== null) {
    if (typeof mml !== "number" || !Number.isFinite(mml) || mml <= 0) {
      fail(`${configName}: model_max_length`, `expected a positive number, got ${describe(mml)}`);
    }
    // transformers writes a huge sentinel (int(1e30)) when no limit is known: keep the CLIP default then.
    if (Number.isInteger(mml) && mml <= 1_000_000) maxLength = mml;
  }

  const cfgBos = configToken(cfg["bos_token"], `${configName}: bos_token`);
  const cfgEos = configToken(cfg["eos_token"], `${configName}: eos_token`);
  const bosId =
    specials.prefix.length > 0
      ? specials.prefix[0]!
      : cfgBos !== null
        ? lookup(cfgBos, `${configName}: bos_token`)
        : (tokenToId.get("<|startoftext|>") ?? -1);
  const eosId =
    specials.suffix.length > 0
      ? specials.suffix[specials.suffix.length - 1]!
      : cfgEos !== null
        ? lookup(cfgEos, `${configName}: eos_token`)
        : (tokenToId.get("<|endoftext|>") ?? -1);

  let padId: number;
  const cfgPad = configToken(cfg["pad_token"], `${configName}: pad_token`);
  const padding = root["padding"];
  if (cfgPad !== null) {
    padId = lookup(cfgPad, `${configName}: pad_token`);
  } else if (isObj(padding) && padding["pad_id"] !== undefined && padding["pad_id"] !== null) {
    padId = asId(padding["pad_id"], `${jsonName}: padding.pad_id`);
  } else if (eosId >= 0) {
    padId = eosId;
  } else {
    fail(jsonName, "cannot determine a pad token (no pad_token, padding.pad_id or eos token)");
  }

  const side = cfg["padding_side"];
  const padLeft = side === "left";

  return new HfPromptTokenizer(normalizer, preTokenizer, model, rawAdded, normalizedAdded, specials, {
    maxLength,
    padId,
    bosId,
    eosId,
    padLeft,
  });
}

/** Builds a tokenizer from parsed tokenizer.json (and optionally tokenizer_config.json) contents. */
export function createTokenizer(tokenizerJson: unknown, tokenizerConfig?: unknown): PromptTokenizer {
  return buildTokenizer(tokenizerJson, tokenizerConfig, "tokenizer.json", "tokenizer_config.json");
}

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`Cannot read tokenizer file ${path}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new Error(`Malformed JSON in tokenizer file ${path}: ${(e as Error).message}`);
  }
}

/**
 * Loads `dir/tokenizer.json` plus `dir/tokenizer_config.json` when present. Without a
 * tokenizer.json, a slow CLIP tokenizer's `vocab.json` + `merges.txt` (what diffusers pipelines and
 * their optimum exports ship) are read as the equivalent fast tokenizer.
 */
export function loadTokenizer(dir: string): PromptTokenizer {
  const jsonPath = join(dir, "tokenizer.json");
  const configPath = join(dir, "tokenizer_config.json");
  const config = existsSync(configPath) ? readJson(configPath) : undefined;
  let json: unknown;
  let source = jsonPath;
  if (existsSync(jsonPath)) {
    json = readJson(jsonPath);
  } else if (existsSync(join(dir, "vocab.json")) && existsSync(join(dir, "merges.txt"))) {
    source = join(dir, "vocab.json");
    json = clipJsonFromSlowFiles(dir, config);
  } else {
    throw new Error(`Cannot read tokenizer file ${jsonPath}: it does not exist, and neither do vocab.json + merges.txt beside it`);
  }
  try {
    return buildTokenizer(json, config, source, configPath);
  } catch (e) {
    if (e instanceof FormatError) throw new Error(`Invalid tokenizer file ${e.message}`);
    throw e;
  }
}

function clipJsonFromSlowFiles(dir: string, config: unknown): object {
  const vocab = readJson(join(dir, "vocab.json"));
  if (!isObj(vocab) || !Object.values(vocab).every((v) => typeof v === "number")) {
    throw new Error(`Invalid tokenizer file ${join(dir, "vocab.json")}: expected an object of token → id`);
  }
  const mergesPath = join(dir, "merges.txt");
  let mergesText: string;
  try {
    mergesText = readFileSync(mergesPath, "utf8");
  } catch (e) {
    throw new Error(`Cannot read tokenizer file ${mergesPath}: ${(e as Error).message}`);
  }
  // Special tokens as the slow tokenizer names them: tokenizer_config.json, then
  // special_tokens_map.json, then CLIP's own.
  const mapPath = join(dir, "special_tokens_map.json");
  const map = existsSync(mapPath) ? readJson(mapPath) : undefined;
  const token = (key: string, fallback: string): string =>
    (isObj(config) ? configToken(config[key], `tokenizer_config.json.${key}`) : null) ??
    (isObj(map) ? configToken(map[key], `special_tokens_map.json.${key}`) : null) ??
    fallback;
  try {
    return clipTokenizerJson(vocab as Record<string, number>, parseMergesTxt(mergesText), {
      bos: token("bos_token", CLIP_BOS),
      eos: token("eos_token", CLIP_EOS),
      unk: token("unk_token", CLIP_EOS),
    });
  } catch (e) {
    throw new Error(`Invalid tokenizer files in ${dir}: ${(e as Error).message}`);
  }
}
