/**
 * ONNX Runtime's optimized-model cache (ORT_OPTIMIZED_CACHE). Opening a session optimizes the
 * graph (constant folding, fusions, the CPU provider's NCHWc layout) every time; with a cache
 * directory, the first open also writes the optimized graph there (session option
 * `optimizedModelFilePath`, weights in an external data file next to it), and later opens load
 * that file with graph optimizations off.
 *
 * An entry is a folder `<cacheDir>/<component>-<path hash>-<key>/` holding `model.onnx`,
 * `model.onnx.data` and `manifest.json`. The key covers what the optimized graph depends on:
 * the model's files (path, size, modification time, and a SHA-256 of the first and last MiB of
 * each file in its folder, so a same-size copy over it is noticed without reading gigabytes), the
 * onnxruntime version, the provider, the optimization level and execution mode, and this CPU
 * (architecture and model: the NCHWc block size follows the vector width). Thread counts, spinning
 * and the memory arena do not change the graph and are not in it.
 *
 * Writes are atomic: ORT writes into `.tmp-…` and the folder is renamed into place once the
 * manifest (each file's size) is written; a second process that wins the race keeps its own. An
 * entry whose files do not have the manifest's sizes, or that ONNX Runtime cannot load, is removed
 * and written again from the model. A new entry for a model file removes that file's older entries
 * (one entry per model file and settings). A cache that cannot be written (read-only, disk full)
 * costs one warning and the model opens as without one.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { arch, cpus } from 'node:os';
import { basename, dirname, join } from 'node:path';
import ort from 'onnxruntime-node';
import type { EngineLog } from './log.js';

/** Written next to the optimized graph: the weights as ONNX external data. */
const DATA_FILE = 'model.onnx.data';
const MANIFEST = 'manifest.json';
/** Bytes hashed at each end of every model file for the key. */
const SAMPLE_BYTES = 1 << 20;
/** `.tmp-…` folders older than this are left-overs of a killed process. */
const STALE_TMP_MS = 60 * 60 * 1000;

export type CacheOutcome = 'hit' | 'written' | 'off' | 'unwritable' | 'rewritten';

export interface CachedSession {
  session: ort.InferenceSession;
  /** hit: loaded from the cache; written: opened from the model, entry written; rewritten: a bad entry replaced; unwritable: the cache failed, opened without. */
  cache: CacheOutcome;
}

function sampleHash(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const buffer = Buffer.alloc(Math.min(SAMPLE_BYTES, size));
    readSync(fd, buffer, 0, buffer.length, 0);
    hash.update(buffer);
    if (size > SAMPLE_BYTES) {
      const tail = Buffer.alloc(Math.min(SAMPLE_BYTES, size - SAMPLE_BYTES));
      readSync(fd, tail, 0, tail.length, size - tail.length);
      hash.update(tail);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** What the optimized graph of `modelPath` depends on, as a key and a readable label. */
export function cacheKey(modelPath: string, options: ort.InferenceSession.SessionOptions): { key: string; pathHash: string; label: string } {
  const real = realpathSync(modelPath);
  const dir = dirname(real);
  // The graph and its external data (optimum's model.onnx_data, or any name the graph refers to):
  // every file of the component's folder but the JSON configs.
  const files = readdirSync(dir)
    .filter((f) => !f.endsWith('.json') && statSync(join(dir, f)).isFile())
    .sort()
    .map((f) => {
      const st = statSync(join(dir, f));
      return { f, size: st.size, mtimeMs: st.mtimeMs, sample: sampleHash(join(dir, f)) };
    });
  const settings = {
    ort: ort.env.versions,
    providers: options.executionProviders,
    level: options.graphOptimizationLevel,
    mode: options.executionMode,
    cpu: [arch(), cpus()[0]?.model ?? ''],
    format: 1,
  };
  const key = createHash('sha256').update(JSON.stringify({ real, files, settings })).digest('hex').slice(0, 20);
  const pathHash = createHash('sha256').update(real).digest('hex').slice(0, 8);
  return { key, pathHash, label: basename(dir) };
}

interface Manifest {
  source: string;
  files: Record<string, number>;
  ort: string;
  createdAt: string;
}

/** The entry's graph when every file has the manifest's size; null otherwise. */
function intactEntry(entry: string): string | null {
  try {
    const manifest = JSON.parse(readFileSync(join(entry, MANIFEST), 'utf8')) as Manifest;
    for (const [name, size] of Object.entries(manifest.files)) if (statSync(join(entry, name)).size !== size) return null;
    return existsSync(join(entry, 'model.onnx')) ? join(entry, 'model.onnx') : null;
  } catch {
    return null;
  }
}

function removeQuietly(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // a folder another process is removing too
  }
}

/** Removes this model file's entries under other keys, and `.tmp-` folders of killed writers. */
function prune(cacheDir: string, label: string, pathHash: string, keep: string): void {
  const now = Date.now();
  for (const name of readdirSync(cacheDir)) {
    const path = join(cacheDir, name);
    if (name.startsWith(`${label}-${pathHash}-`) && name !== keep) removeQuietly(path);
    else if (name.startsWith('.tmp-')) {
      try {
        if (now - statSync(path).mtimeMs > STALE_TMP_MS) removeQuietly(path);
      } catch {
        // gone meanwhile
      }
    }
  }
}

/**
 * A session of `modelPath` through the cache in `cacheDir` (null: no cache). `options` are the
 * session options the model would be opened with; a cached graph is opened with the same ones but
 * graph optimizations off (they are applied already).
 */
export async function createCachedSession(
  modelPath: string,
  options: ort.InferenceSession.SessionOptions,
  cacheDir: string | null,
  log?: EngineLog,
): Promise<CachedSession> {
  if (!cacheDir) return { session: await ort.InferenceSession.create(modelPath, options), cache: 'off' };
  let id: ReturnType<typeof cacheKey>;
  try {
    mkdirSync(cacheDir, { recursive: true });
    id = cacheKey(modelPath, options);
  } catch (err) {
    log?.(`optimized-model cache ${cacheDir} unusable (${(err as Error).message}); opening ${modelPath} without it`, 'warn');
    return { session: await ort.InferenceSession.create(modelPath, options), cache: 'unwritable' };
  }
  const name = `${id.label}-${id.pathHash}-${id.key}`;
  const entry = join(cacheDir, name);
  let replaced = false;
  if (existsSync(entry)) {
    const graph = intactEntry(entry);
    if (graph) {
      try {
        return { session: await ort.InferenceSession.create(graph, { ...options, graphOptimizationLevel: 'disabled' }), cache: 'hit' };
      } catch (err) {
        log?.(`optimized-model cache entry ${entry} does not load (${(err as Error).message.split('\n')[0]}); writing it again`, 'warn');
      }
    } else log?.(`optimized-model cache entry ${entry} is incomplete; writing it again`, 'warn');
    removeQuietly(entry);
    replaced = true;
  }
  const tmp = join(cacheDir, `.tmp-${name}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  let session: ort.InferenceSession;
  try {
    mkdirSync(tmp);
    session = await ort.InferenceSession.create(modelPath, {
      ...options,
      optimizedModelFilePath: join(tmp, 'model.onnx'),
      // Weights of any size go to the data file (a graph over 2 GB cannot be one protobuf).
      extra: mergeExtra(options.extra, {
        optimized_model_external_initializers_file_name: DATA_FILE,
        optimized_model_external_initializers_min_size_in_bytes: '1024',
      }),
      // ORT warns that an NCHWc graph is for this hardware only: the key holds the CPU.
      logSeverityLevel: Math.max(options.logSeverityLevel ?? 2, 3) as 3,
    });
  } catch (err) {
    removeQuietly(tmp);
    log?.(
      `optimized-model cache ${cacheDir}: writing ${modelPath}'s optimized graph failed (${(err as Error).message.split('\n')[0]}); opening it without the cache`,
      'warn',
    );
    return { session: await ort.InferenceSession.create(modelPath, options), cache: 'unwritable' };
  }
  try {
    const files = Object.fromEntries(readdirSync(tmp).map((f) => [f, statSync(join(tmp, f)).size]));
    const manifest: Manifest = { source: realpathSync(modelPath), files, ort: ort.env.versions.common, createdAt: new Date().toISOString() };
    writeFileSync(join(tmp, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    try {
      renameSync(tmp, entry);
    } catch {
      removeQuietly(tmp); // another process put the same entry in place first
    }
    prune(cacheDir, id.label, id.pathHash, name);
  } catch (err) {
    removeQuietly(tmp);
    log?.(`optimized-model cache ${cacheDir}: could not store ${modelPath}'s entry (${(err as Error).message})`, 'warn');
    return { session, cache: 'unwritable' };
  }
  return { session, cache: replaced ? 'rewritten' : 'written' };
}

type Extra = ort.InferenceSession.SessionOptions['extra'];

function mergeExtra(extra: Extra, session: Record<string, string>): Extra {
  const base = (extra ?? {}) as Record<string, unknown>;
  return { ...base, session: { ...((base.session as Record<string, unknown>) ?? {}), ...session } };
}
