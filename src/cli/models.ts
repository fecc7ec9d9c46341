/**
 * The model doctor:
 *   npm run models -- check <folder> [--json] [--skip-sessions]
 *   npm run models -- list [modelsDir | --models-dir <dir>] [--json]
 * `check` prints what the server will make of one model folder (family, ONNX ports, exporter
 * generation, scheduler, tokenizer, VAE, memory at the default size, defaults, limits, warnings)
 * and opens its ONNX sessions to prove the graphs load. `list` reads every folder under the models
 * directory (default: MODELS_DIR, else the repository's models/) and its tokenizer, without
 * loading weights.
 * Exit codes: 0 fine, 1 a broken folder (each problem named), 2 bad arguments.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readModelFolder } from '../inference/modelFolder.js';
import { COMPONENTS } from '../inference/components.js';
import type { ModelSpec } from '../inference/modelFolder.js';
import { describeLoadProgress, openModelSessions } from '../inference/sessions.js';
import { formatModelSummary, summarizeModel } from '../inference/modelSummary.js';
import type { ModelSummary } from '../inference/modelSummary.js';
import { callerDir, defaultModelsDir, optimizedCacheDir } from '../config.js';

const USAGE = `usage: npm run models -- <command> [options]

  check <folder>       what the server makes of one model folder; exit 1 with the problems
                       when it is broken
    --skip-sessions    do not open the ONNX sessions (no weights loaded)
  list [modelsDir]     every model folder under modelsDir (default: MODELS_DIR, else the
                       project's models/) with its family and status; exit 1 when one is broken
    --models-dir <dir> the same as giving modelsDir (as npm run edit takes it)
  --json               machine-readable output on stdout
  -h, --help           this text`;

class UsageError extends Error {}

interface CheckResult {
  ok: boolean;
  folder: string;
  problems: string[];
  summary: ModelSummary | null;
  /** Whether the ONNX sessions were opened (and released). */
  sessionsOpened: boolean;
  /** How many sessions the family opens (one per component), when the folder could be read. */
  sessionCount: number | null;
  /** Each opened session: its file, milliseconds to open, and what the optimized-model cache did (`off` when not used). */
  loads: { file: string; ms: number; cache: string }[];
}

/** The error's message, with the folder in front unless it names it already. */
function namingFolder(dir: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.includes(dir) ? message : `model folder ${dir}: ${message}`;
}

async function check(folder: string, openSessions: boolean, quiet: boolean): Promise<CheckResult> {
  const dir = resolve(callerDir('models'), folder);
  const result: CheckResult = { ok: false, folder: dir, problems: [], summary: null, sessionsOpened: false, sessionCount: null, loads: [] };
  let spec: ModelSpec;
  try {
    spec = readModelFolder(dir, basename(dir));
    result.summary = summarizeModel(spec);
    result.sessionCount = spec.family.components.length;
  } catch (err) {
    // ModelFolderError names the folder; anything else (an unreadable file, say) gets it added.
    result.problems.push(namingFolder(dir, err));
    return result;
  }
  if (openSessions) {
    try {
      // Each component's load as it starts and ends (a multi-gigabyte UNet takes a while), on
      // stderr: stdout is the summary (or JSON).
      const loads: CheckResult['loads'] = [];
      const sessions = await openModelSessions(spec, {
        provider: 'cpu',
        intraOpThreads: 1,
        optimizedCacheDir: optimizedCacheDir(process.env),
        onLoadProgress: (event) => {
          if (!quiet) console.error(describeLoadProgress(event));
          if (event.phase === 'opened') loads.push({ file: event.file, ms: Math.round(event.ms ?? 0), cache: event.cache ?? 'off' });
        },
      });
      await sessions.release();
      result.sessionsOpened = true;
      result.loads = loads;
    } catch (err) {
      result.problems.push(namingFolder(dir, err));
    }
  }
  result.ok = result.problems.length === 0;
  return result;
}

interface ListEntry {
  name: string;
  dir: string;
  status: 'ok' | 'broken' | 'not a model';
  family: string | null;
  exporter: string | null;
  warnings: number;
  problem: string | null;
}

function list(dir: string): ListEntry[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`models directory ${dir} does not exist`);
  const entries: ListEntry[] = [];
  for (const name of readdirSync(dir).sort()) {
    const folder = join(dir, name);
    if (!existsSync(folder) || !statSync(folder).isDirectory()) continue; // files, dangling links
    const entry: ListEntry = { name, dir: folder, status: 'not a model', family: null, exporter: null, warnings: 0, problem: null };
    if (!existsSync(join(folder, 'model_index.json'))) {
      // A folder with a component folder but no model_index.json is a model half there; others (code, say) are not listed.
      if (!Object.values(COMPONENTS).some((c) => existsSync(join(folder, c.dir)))) continue;
      entry.problem = 'no model_index.json (the server skips it)';
    } else {
      try {
        const summary = summarizeModel(readModelFolder(folder, name)); // the tokenizer too
        Object.assign(entry, { status: 'ok', family: summary.family, exporter: summary.export.generation, warnings: summary.warnings.length });
      } catch (err) {
        Object.assign(entry, { status: 'broken', problem: namingFolder(folder, err) });
      }
    }
    entries.push(entry);
  }
  return entries;
}

function formatList(modelsDir: string, entries: ListEntry[]): string {
  const lines = [`models in ${modelsDir}:`];
  if (entries.length === 0) lines.push('  (no folders)');
  const width = Math.max(0, ...entries.map((e) => e.name.length));
  for (const e of entries) {
    let status: string;
    if (e.status === 'ok') status = `ok  ${e.family}, ${e.exporter}${e.warnings ? `, ${e.warnings} warning${e.warnings === 1 ? '' : 's'}` : ''}`;
    else status = `${e.status}: ${e.problem}`;
    lines.push(`  ${e.name.padEnd(width)}  ${status}`);
  }
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        json: { type: 'boolean' },
        'skip-sessions': { type: 'boolean' },
        'models-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  try {
    const [command, ...rest] = positionals;
    if (command === 'check') {
      if (values['models-dir'] !== undefined) throw new UsageError('--models-dir is for list (check takes one model folder)');
      if (rest.length !== 1) throw new UsageError(`check takes one model folder (got ${rest.length})`);
      const result = await check(rest[0]!, !values['skip-sessions'], values.json === true);
      if (values.json) console.log(JSON.stringify(result, null, 2));
      else {
        if (result.summary) console.log(formatModelSummary(result.summary));
        if (result.summary && result.ok) {
          console.log(result.sessionsOpened ? `  sessions: all ${result.sessionCount} open on cpu` : '  sessions: not opened (--skip-sessions)');
        }
        for (const p of result.problems) console.error(`problem: ${p}`);
        console.log(result.ok ? 'ok' : `broken: ${result.folder} (${result.problems.length} problem${result.problems.length === 1 ? '' : 's'})`);
      }
      return result.ok ? 0 : 1;
    }
    if (command === 'list') {
      if (values['skip-sessions']) throw new UsageError('--skip-sessions is for check (list never opens sessions)');
      const given = [...rest, ...(values['models-dir'] === undefined ? [] : [values['models-dir']])];
      if (given.length > 1) throw new UsageError(`list takes one models directory, as an argument or --models-dir (got ${given.length})`);
      const modelsDir = resolve(callerDir('models'), given[0] ?? (process.env.MODELS_DIR || defaultModelsDir()));
      const entries = list(modelsDir);
      if (values.json) console.log(JSON.stringify({ modelsDir, models: entries }, null, 2));
      else console.log(formatList(modelsDir, entries));
      return entries.some((e) => e.status === 'broken') ? 1 : 0;
    }
    throw new UsageError(command === undefined ? 'a command is required (check or list)' : `unknown command "${command}" (expected check or list)`);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
}

process.exitCode = await main(process.argv.slice(2));
