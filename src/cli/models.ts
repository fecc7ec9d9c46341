/**
 * The model doctor:
 *   npm run models -- check <folder> [--json] [--skip-sessions]
 *   npm run models -- list [modelsDir] [--json]
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
import type { ModelSpec } from '../inference/modelFolder.js';
import { openModelSessions } from '../inference/sessions.js';
import { formatModelSummary, summarizeModel } from '../inference/modelSummary.js';
import type { ModelSummary } from '../inference/modelSummary.js';
import { defaultModelsDir } from '../config.js';

const USAGE = `usage: npm run models -- <command> [options]

  check <folder>       what the server makes of one model folder; exit 1 with the problems
                       when it is broken
    --skip-sessions    do not open the ONNX sessions (no weights loaded)
  list [modelsDir]     every folder under modelsDir (default: MODELS_DIR or ./models) with
                       its family and status; exit 1 when a model folder is broken
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
}

/** The error's message, with the folder in front unless it names it already. */
function namingFolder(dir: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.includes(dir) ? message : `model folder ${dir}: ${message}`;
}

async function check(folder: string, openSessions: boolean): Promise<CheckResult> {
  const dir = resolve(folder);
  const result: CheckResult = { ok: false, folder: dir, problems: [], summary: null, sessionsOpened: false };
  let spec: ModelSpec;
  try {
    spec = readModelFolder(dir, basename(dir));
    result.summary = summarizeModel(spec);
  } catch (err) {
    // ModelFolderError names the folder; anything else (an unreadable file, say) gets it added.
    result.problems.push(namingFolder(dir, err));
    return result;
  }
  if (openSessions) {
    try {
      const sessions = await openModelSessions(spec, { provider: 'cpu', intraOpThreads: 1 });
      await sessions.release();
      result.sessionsOpened = true;
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

function list(modelsDir: string): ListEntry[] {
  const dir = resolve(modelsDir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`models directory ${dir} does not exist`);
  const entries: ListEntry[] = [];
  for (const name of readdirSync(dir).sort()) {
    const folder = join(dir, name);
    if (!existsSync(folder) || !statSync(folder).isDirectory()) continue; // files, dangling links
    const entry: ListEntry = { name, dir: folder, status: 'not a model', family: null, exporter: null, warnings: 0, problem: null };
    if (!existsSync(join(folder, 'model_index.json'))) {
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
  const lines = [`models in ${resolve(modelsDir)}:`];
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
      if (rest.length !== 1) throw new UsageError(`check takes one model folder (got ${rest.length})`);
      const result = await check(rest[0]!, !values['skip-sessions']);
      if (values.json) console.log(JSON.stringify(result, null, 2));
      else {
        if (result.summary) console.log(formatModelSummary(result.summary));
        if (result.summary && result.ok) {
          const count = Object.keys(result.summary.components).length;
          console.log(result.sessionsOpened ? `  sessions: all ${count} open on cpu` : '  sessions: not opened (--skip-sessions)');
        }
        for (const p of result.problems) console.error(`problem: ${p}`);
        console.log(result.ok ? 'ok' : `broken: ${result.folder} (${result.problems.length} problem${result.problems.length === 1 ? '' : 's'})`);
      }
      return result.ok ? 0 : 1;
    }
    if (command === 'list') {
      if (values['skip-sessions']) throw new UsageError('--skip-sessions is for check (list never opens sessions)');
      if (rest.length > 1) throw new UsageError(`list takes at most one models directory (got ${rest.length})`);
      const modelsDir = rest[0] ?? (process.env.MODELS_DIR || defaultModelsDir());
      const entries = list(modelsDir);
      if (values.json) console.log(JSON.stringify({ modelsDir: resolve(modelsDir), models: entries }, null, 2));
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
