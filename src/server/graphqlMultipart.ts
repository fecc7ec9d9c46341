/**
 * GraphQL multipart requests (the GraphQL multipart request spec, as Apollo's upload link sends
 * them) on the one multipart reader (multipart.ts), in place of Yoga's own parser, which writes
 * each file wherever `map` points: `variables.i.99999999` made a sparse array of 10⁸ slots that
 * variable coercion then walked for 20 s. Here `operations` and `map` are checked as soon as they
 * arrive, before any file is read, in time and memory bounded by their own size:
 *  - `operations` comes first, then `map`, then the files;
 *  - a path names an existing `null` slot of `operations` (`variables.<name>[.<index>…]`), each
 *    index a canonical decimal below its array's length and below the per-request file limit;
 *  - each slot is named once, each mapped file part arrives once, and every file part is mapped.
 * Every refusal is BAD_USER_INPUT (400) or PAYLOAD_TOO_LARGE (413).
 */
import { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { HTTP_STATUS } from '../errors.js';
import { MultipartError, type MultipartLimits, readMultipart } from './multipart.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Container = Json[] | { [key: string]: Json };

function refuse(message: string, param: string | null = null): MultipartError {
  return new MultipartError('BAD_USER_INPUT', `malformed GraphQL multipart request: ${message}`, param);
}

function parseJsonField(name: string, text: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch {
    throw refuse(`"${name}" is not valid JSON`, name);
  }
}

const INDEX = /^(0|[1-9][0-9]{0,9})$/;

/** The container and key of the `null` slot `path` names in `operations`, or a refusal. */
function slotOf(operations: Container, path: string, maxIndex: number): { container: Container; key: string | number } {
  const segments = path.split('.');
  if (segments[0] !== 'variables' || segments.length < 2) throw refuse(`path "${path}" must start with "variables." and name a variable`, 'map');
  let current: Json = operations;
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    const at = segments.slice(0, i).join('.') || 'operations';
    let key: string | number;
    if (Array.isArray(current)) {
      if (!INDEX.test(segment)) throw refuse(`path "${path}": "${segment}" is not an index of the list ${at}`, 'map');
      const index = Number(segment);
      if (index >= maxIndex) throw refuse(`path "${path}": index ${index} is past the limit of ${maxIndex} files per request`, 'map');
      if (index >= current.length) throw refuse(`path "${path}": index ${index} is past the end of ${at} (${current.length} items)`, 'map');
      key = index;
    } else if (current !== null && typeof current === 'object') {
      if (!Object.hasOwn(current, segment)) throw refuse(`path "${path}": ${at} has no "${segment}"`, 'map');
      key = segment;
    } else {
      throw refuse(`path "${path}": ${at} is not an object or list`, 'map');
    }
    const next: Json = (current as Record<string | number, Json>)[key]!;
    if (i === segments.length - 1) {
      if (next !== null) throw refuse(`path "${path}" must name a null placeholder for the file`, 'map');
      return { container: current, key };
    }
    current = next;
  }
  throw refuse(`path "${path}" is empty`, 'map');
}

interface FileSlots {
  /** File part name → the slots it fills. */
  slots: Map<string, { container: Container; key: string | number }[]>;
}

/** `map` checked against `operations` (see the file's head comment). */
function checkMap(operations: Container, map: Json, limits: MultipartLimits): FileSlots {
  if (map === null || typeof map !== 'object' || Array.isArray(map)) throw refuse('"map" must be a JSON object of file part names to lists of paths', 'map');
  const entries = Object.entries(map);
  if (entries.length > limits.files) throw refuse(`"map" names ${entries.length} files: the limit is ${limits.files}`, 'map');
  const slots = new Map<string, { container: Container; key: string | number }[]>();
  const seen = new Set<string>();
  let paths = 0;
  for (const [name, list] of entries) {
    if (!Array.isArray(list) || list.length === 0) throw refuse(`"map" entry "${name}" must be a non-empty list of paths`, 'map');
    paths += list.length;
    if (paths > limits.files) throw refuse(`"map" has more than ${limits.files} paths`, 'map');
    const targets = [];
    for (const path of list) {
      if (typeof path !== 'string') throw refuse(`"map" entry "${name}" must list paths as strings`, 'map');
      if (seen.has(path)) throw refuse(`path "${path}" is mapped twice`, 'map');
      seen.add(path);
      targets.push(slotOf(operations, path, limits.files));
    }
    slots.set(name, targets);
  }
  return { slots };
}

/** Reads a GraphQL multipart request into its operations, files in place. */
export async function parseGraphQLMultipart(body: unknown, contentType: string, limits: MultipartLimits): Promise<Container> {
  let operations: Container | null = null;
  let mapped: FileSlots | null = null;
  const received = new Set<string>();
  const form = await readMultipart(body, contentType, limits, {
    field(name, value) {
      if (name === 'operations') {
        if (operations) throw refuse('"operations" is sent twice', 'operations');
        const parsed = parseJsonField(name, value);
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
          throw refuse('"operations" must be a JSON object (batched operations are not supported)', 'operations');
        operations = parsed;
      } else if (name === 'map') {
        if (!operations) throw refuse('"operations" must come before "map"', 'map');
        if (mapped) throw refuse('"map" is sent twice', 'map');
        mapped = checkMap(operations, parseJsonField(name, value), limits);
      } else throw refuse(`unknown field "${name}": a GraphQL multipart request has "operations", "map" and the files`, name);
    },
    file(name) {
      if (!mapped) throw refuse(`file part "${name}" comes before "operations" and "map"`, name);
      if (!mapped.slots.has(name)) throw refuse(`file part "${name}" is not named in "map"`, name);
      if (received.has(name)) throw refuse(`file part "${name}" is sent twice`, name);
      received.add(name);
    },
  });
  if (!operations) throw refuse('the "operations" field is missing', 'operations');
  for (const [name, targets] of (mapped as FileSlots | null)?.slots ?? []) {
    const file = form.get(name);
    if (!(file instanceof File)) throw refuse(`"map" names file part "${name}", which was not sent as a file`, name);
    for (const { container, key } of targets) (container as Record<string | number, unknown>)[key] = file;
  }
  return operations;
}

/** Yoga's multipart parsing (`multipart: false` in yoga.ts) replaced by parseGraphQLMultipart. */
export function useGraphQLMultipart(limits: MultipartLimits): Plugin {
  return {
    onRequestParse({ request, setRequestParser }) {
      if (request.method !== 'POST') return;
      const type = request.headers.get('content-type') ?? '';
      if (!/^\s*multipart\/form-data/i.test(type)) return;
      setRequestParser(async (req) => {
        try {
          return (await parseGraphQLMultipart(req.body, type, limits)) as never;
        } catch (err) {
          if (err instanceof MultipartError) {
            throw new GraphQLError(err.message, { extensions: { code: err.code, http: { status: HTTP_STATUS[err.code] } } });
          }
          throw err;
        }
      });
    },
  };
}
