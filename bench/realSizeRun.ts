/**
 * `npm run bench -- --real-size`: bench/realSize.ts's engine and raw children in turn on an SD
 * 1.5-size folder, and the figures BENCHMARKS.md records for it (issue 29).
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { PROJECT_ROOT } from '../src/config.js';
import { estimateBatchBytes } from '../src/inference/memory.js';
import { readModelFolder } from '../src/inference/modelFolder.js';
import { median } from './child.js';

export const REAL_SIZE_MARKER = 'REALSIZE';
/** The job both children run: five UNet calls of two rows per output (PNDM adds one call). */
export const REAL_SIZE_JOB = { size: 512, steps: 4, strength: 1, guidanceScale: 7.5, scheduler: 'PNDM' } as const;
const STAGES = ['textEncoder', 'vaeEncoder', 'unet', 'vaeDecoder'] as const;
type Stage = (typeof STAGES)[number];

type EngineJob = {
  wallMs: number;
  timings: { totalMs: number; sessionRunMs: number; decodeMs: number; encodeMs: number; byComponent: Record<Stage, { runs: number; ms: number }> };
  batches: number;
  stepIntervalsMs: number[];
};
type EngineResult = { loadMs: number; jobs: EngineJob[]; peakRssMiB: number };
type RawResult = { passes: Record<Stage, number>[]; peakRssMiB: number };

async function child<T>(args: string[]): Promise<T> {
  const script = join(PROJECT_ROOT, 'bench', 'realSize.ts');
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', script, ...args], { cwd: PROJECT_ROOT, maxBuffer: 1 << 24 });
  const line = stdout.split('\n').find((l) => l.startsWith(`${REAL_SIZE_MARKER} `));
  if (!line) throw new Error(`bench/realSize.ts ${args.join(' ')} printed no result:\n${stdout}`);
  return JSON.parse(line.slice(REAL_SIZE_MARKER.length + 1)) as T;
}

/** The folder, exported first when REAL_SIZE_PYTHON names a Python that can (torch, diffusers, optimum-onnx). */
function realSizeFolder(): string {
  const folder = process.env.REAL_SIZE_MODEL ?? join(PROJECT_ROOT, '.cache', 'real-size', 'models', 'sd15-real-size');
  if (existsSync(join(folder, 'model_index.json'))) return folder;
  const python = process.env.REAL_SIZE_PYTHON;
  if (!python) {
    throw new Error(
      `no real-size model at ${folder}: set REAL_SIZE_MODEL to an SD 1.5-layout folder, or REAL_SIZE_PYTHON to a Python with torch, transformers, diffusers and optimum-onnx to export one there (scripts/export/sd15_real_size.py; ~10 GB of memory, 4 GB of disk)`,
    );
  }
  const out = dirname(dirname(folder));
  console.log(`exporting the real-size model into ${out} with ${python} (several minutes)`);
  const r = spawnSync(python, [join(PROJECT_ROOT, 'scripts', 'export', 'sd15_real_size.py'), '--out', out], { stdio: 'inherit', cwd: PROJECT_ROOT });
  if (r.status !== 0 || !existsSync(join(folder, 'model_index.json'))) throw new Error(`the export did not write ${folder}`);
  return folder;
}

export async function realSizeBench({ reps, counts }: { reps: number; counts: number[] }) {
  const folder = realSizeFolder();
  const spec = readModelFolder(folder, 'sd15-real-size');
  const s = REAL_SIZE_JOB.size;
  const f = (x: number, d = 3): string => x.toFixed(d);
  const results = [];
  for (const n of counts) {
    const planBytes = estimateBatchBytes(spec.memory, { width: s, height: s, vaeScaleFactor: spec.vaeScaleFactor, branches: 2 }, n);
    const planMiB = Math.ceil(planBytes / 2 ** 20);
    // A budget that lets the n outputs share one call (the plan's figure, plus the stage thread's reserve).
    const budgetMiB = planMiB + 128;
    if (budgetMiB * 2 ** 20 > totalmem()) {
      console.log(`real size n=${n}: the plan (${planMiB} MiB in one call) is over this machine's ${Math.round(totalmem() / 2 ** 20)} MiB: not run`);
      results.push({ n, plan_mib: planMiB, fits: false });
      continue;
    }
    console.log(`real size n=${n}: ${reps} repetitions of engine and raw sessions, alternated (budget ${budgetMiB} MiB)`);
    const engines: EngineResult[] = [];
    const raws: RawResult[] = [];
    for (let r = 0; r < reps; r++) {
      const runEngine = async () => engines.push(await child<EngineResult>(['engine', folder, '--n', `${n}`, '--memory-budget', `${budgetMiB}`]));
      // The raw side replays the engine's UNet calls: rows per call and calls per job as the engine ran them.
      const runRaw = async () => {
        const unet = engines[0]!.jobs[1]!.timings.byComponent.unet;
        raws.push(await child<RawResult>(['raw', folder, '--n', `${n}`, '--unet-rows', `${2 * n}`, '--unet-calls', `${unet.runs}`]));
      };
      if (r % 2 === 0 || engines.length === 0) {
        await runEngine();
        await runRaw();
      } else {
        await runRaw();
        await runEngine();
      }
    }
    const warm = engines.map((e) => e.jobs[1]!);
    const cold = engines.map((e) => e.jobs[0]!);
    const rawWarm = raws.map((r) => r.passes[1]!);
    const stage = Object.fromEntries(
      STAGES.map((st) => {
        const engineMs = median(warm.map((j) => j.timings.byComponent[st]?.ms ?? 0));
        const rawMs = median(rawWarm.map((p) => p[st]));
        return [st, { engine_ms: Math.round(engineMs), raw_ms: Math.round(rawMs), ratio: engineMs / rawMs }];
      }),
    ) as Record<Stage, { engine_ms: number; raw_ms: number; ratio: number }>;
    const rawTotal = median(rawWarm.map((p) => STAGES.reduce((sum, st) => sum + p[st], 0)));
    const row = {
      n,
      fits: true,
      reps,
      stages: stage,
      // The warm job's wall time against the same runs on warm raw sessions, and its time outside session.run.
      overhead_vs_raw: median(warm.map((j) => j.wallMs)) / rawTotal - 1,
      outside_session_run: median(warm.map((j) => (j.timings.totalMs - j.timings.sessionRunMs) / j.timings.totalMs)),
      image_io_ms: Math.round(median(warm.map((j) => j.timings.decodeMs + j.timings.encodeMs))),
      first_job_vs_second: median(cold.map((c, i) => c.wallMs / warm[i]!.wallMs)),
      batches: warm[0]!.batches,
      load_s: median(engines.map((e) => e.loadMs)) / 1000,
      peak_rss_mib: Math.max(...engines.map((e) => e.peakRssMiB)),
      raw_peak_rss_mib: Math.max(...raws.map((r) => r.peakRssMiB)),
      plan_mib: planMiB,
    };
    results.push(row);
    console.table(
      Object.fromEntries([
        ...STAGES.map((st) => [`n=${n} ${st}`, { 'engine ms': stage[st].engine_ms, 'raw ms': stage[st].raw_ms, ratio: f(stage[st].ratio) }]),
        [`n=${n} job`, { 'engine ms': Math.round(median(warm.map((j) => j.wallMs))), 'raw ms': Math.round(rawTotal), ratio: f(1 + row.overhead_vs_raw) }],
      ]),
    );
    console.log(
      `n=${n}: outside session.run ${f(row.outside_session_run, 4)}, image I/O ${row.image_io_ms} ms, first job / second ${f(row.first_job_vs_second)}, ${row.batches} call(s), load ${f(row.load_s, 1)} s, peak RSS ${row.peak_rss_mib} MiB (raw ${row.raw_peak_rss_mib}) against a plan of ${planMiB} MiB`,
    );
  }
  return { model: folder, job: REAL_SIZE_JOB, results };
}
