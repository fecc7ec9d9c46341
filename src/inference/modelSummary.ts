/**
 * What an operator should know about one loaded model folder, as data (`--json`, the server's
 * 'model loaded' log line) and as text (`npm run models -- check <folder>`). One function builds
 * it for both, so the doctor and the server never disagree.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { ModelDefaults, ModelLimits, ModelSpec } from './modelFolder.js';
import { ModelFolderError } from './modelFolder.js';
import type { PortSignature } from './onnxSignature.js';
import type { ExportInfo } from './exportGeneration.js';
import type { EditSchedulerName, SchedulerName } from './schedulers/types.js';
import { SCHEDULER_NAMES } from './schedulers/types.js';
import { parseSchedulerConfig, schedulerForClassName } from './schedulers/index.js';
import { loadTokenizer } from './tokenizer.js';
import { componentFile } from './components.js';
import type { Component } from './components.js';
import { estimateBatchBytes, perItemBytes } from './memory.js';
import { parseSize } from './request.js';

export type ComponentName = Component;

export interface PortSummary {
  name: string;
  type: string;
  rank: number;
  shape: (number | string)[];
  /** "float32 scalar", or "float32 [batch_size, 8, height, width]". */
  text: string;
}

export interface ComponentSummary {
  file: string;
  opset: number | null;
  inputs: PortSummary[];
  outputs: PortSummary[];
}

export interface SchedulerSummary {
  /** scheduler/scheduler_config.json `_class_name`, or null when it has none. */
  folderClass: string | null;
  /** Our scheduler for that class (`schedulerForClassName`); a flow family's own scheduler. */
  classMapsTo: EditSchedulerName;
  /** The scheduler an edit runs when the request names none. */
  runs: EditSchedulerName;
  /** Why `runs` is what it is. */
  note: string;
  /** The family samples with `runs` only (flow models: FLOW_MATCH_EULER), whatever the folder's class. */
  fixed: boolean;
  /** Schedulers a request may pick: those this scheduler_config.json suits. */
  available: SchedulerName[];
  /** The others, each with the reason a request for it is refused. */
  unavailable: { name: SchedulerName; reason: string }[];
}

export interface TokenizerSummary {
  /** The tokenizer's folder in the model folder, e.g. tokenizer_2. */
  folder: string;
  files: 'tokenizer.json' | 'vocab.json + merges.txt';
  /** Distinct ids of the vocabulary and added tokens. */
  vocabSize: number;
  maxLength: number;
  padId: number;
  /** The pad token's text, when the files name the id. */
  padToken: string | null;
}

export interface MemorySummary {
  /** The default output size the estimate is for (`auto` is estimated at 512x512). */
  width: number;
  height: number;
  /** defaults.size as the folder states it. */
  defaultSize: string;
  /** UNet rows per output with the default guidance (the family's guidanceBranches). */
  guidanceBranches: number;
  weightBytes: number;
  perItemBytes: number;
  /** weightBytes + perItemBytes: one output at the default size. */
  oneItemBytes: number;
}

export interface ModelSummary {
  id: string;
  dir: string;
  description: string;
  family: string;
  pipelineClass: string;
  export: Omit<ExportInfo, 'warnings'>;
  precision: ExportInfo['precision'];
  components: Partial<Record<ComponentName, ComponentSummary>>;
  scheduler: SchedulerSummary;
  /** The first tokenizer (CLIP's); `tokenizers` has every one, in text-encoder order. */
  tokenizer: TokenizerSummary;
  tokenizers: TokenizerSummary[];
  /** The denoiser the family runs: 'unet' or 'transformer'. */
  denoiser: 'unet' | 'transformer';
  /** How the family names its denoiser in prose: UNet, transformer. */
  denoiserName: string;
  vae: { scaleFactor: number; scalingFactor: number; latentChannels: number };
  denoiserInChannels: number;
  memory: MemorySummary | { error: string };
  defaults: ModelDefaults;
  limits: ModelLimits;
  warnings: string[];
}

function port(p: PortSignature): PortSummary {
  const rank = p.shape.length;
  return { name: p.name, type: p.type, rank, shape: p.shape, text: rank === 0 ? `${p.type} scalar` : `${p.type} [${p.shape.join(', ')}]` };
}

/**
 * The folder's scheduler class, what it maps to (`schedulerForClassName`: the same class, or the
 * closest one with a warning, which readModelFolder puts in the model's warnings), what runs when a
 * request names none (edit-server.json defaults.scheduler, else the folder's class), and which
 * schedulers a request can pick with this scheduler_config.json.
 */
function schedulerSummary(spec: ModelSpec): SchedulerSummary {
  const cls = spec.schedulerJson._class_name;
  const folderClass = typeof cls === 'string' && cls !== '' ? cls : null;
  const own = schedulerForClassName(folderClass ?? '', spec.schedulerJson);
  const runs = spec.defaults.scheduler;
  const fixed = spec.family.scheduler !== undefined && spec.family.scheduler !== null;
  let note: string;
  if (fixed) note = `the only scheduler of ${spec.family.describe}`;
  else if (runs !== own.name) note = `edit-server.json defaults.scheduler; the folder's class maps to ${own.name}`;
  else if (own.warning) note = `the closest to the folder's class, which is not implemented`;
  else note = "the folder's class";
  const available: SchedulerName[] = [];
  const unavailable: { name: SchedulerName; reason: string }[] = [];
  // A flow family samples with its one scheduler; UNet families may take any of SCHEDULER_NAMES.
  for (const name of spec.family.scheduler ? [] : SCHEDULER_NAMES) {
    try {
      parseSchedulerConfig(spec.schedulerJson, name);
      available.push(name);
    } catch (err) {
      unavailable.push({ name, reason: (err as Error).message });
    }
  }
  return { folderClass, classMapsTo: own.name, runs, note, fixed, available, unavailable };
}

function readJsonObject(path: string): Record<string, unknown> | null {
  if (!existsSync(path)) return null;
  const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

function tokenizerSummary(spec: ModelSpec, dir: string): TokenizerSummary {
  const folder = basename(dir);
  let tokenizer;
  try {
    tokenizer = loadTokenizer(dir);
  } catch (err) {
    throw new ModelFolderError(`model folder ${spec.dir}: ${folder}: ${(err as Error).message}`);
  }
  // loadTokenizer read these already; the vocabulary itself is not part of PromptTokenizer.
  const fast = existsSync(join(dir, 'tokenizer.json'));
  const ids = new Map<number, string>();
  if (fast) {
    const json = readJsonObject(join(dir, 'tokenizer.json'));
    const model = json?.model as { vocab?: unknown } | undefined;
    // Unigram (T5): [[piece, score], …] by id; BPE (CLIP): { piece: id }.
    if (model && Array.isArray(model.vocab)) {
      (model.vocab as unknown[]).forEach((entry, id) => Array.isArray(entry) && typeof entry[0] === 'string' && ids.set(id, entry[0]));
    } else if (model && typeof model.vocab === 'object' && model.vocab !== null) {
      for (const [token, id] of Object.entries(model.vocab as Record<string, unknown>)) if (typeof id === 'number') ids.set(id, token);
    }
    if (Array.isArray(json?.added_tokens)) {
      for (const t of json.added_tokens as { id?: unknown; content?: unknown }[])
        if (typeof t.id === 'number' && typeof t.content === 'string') ids.set(t.id, t.content);
    }
  } else {
    const vocab = readJsonObject(join(dir, 'vocab.json')) ?? {};
    for (const [token, id] of Object.entries(vocab)) if (typeof id === 'number') ids.set(id, token);
  }
  return {
    folder,
    files: fast ? 'tokenizer.json' : 'vocab.json + merges.txt',
    vocabSize: ids.size,
    maxLength: tokenizer.maxLength,
    padId: tokenizer.padId,
    padToken: ids.get(tokenizer.padId) ?? null,
  };
}

function memorySummary(spec: ModelSpec): MemorySummary | { error: string } {
  const d = spec.defaults;
  let size;
  try {
    size = parseSize(d.size, spec);
  } catch (err) {
    return { error: `defaults.size "${d.size}": ${(err as Error).message}` };
  }
  const { width, height } = size === 'auto' ? { width: 512, height: 512 } : size;
  const guidanceBranches = spec.family.guidanceBranches({
    steps: d.steps,
    strength: d.strength ?? 1,
    guidanceScale: d.guidanceScale,
    imageGuidanceScale: d.imageGuidanceScale ?? 1,
  });
  const geometry = { width, height, vaeScaleFactor: spec.vaeScaleFactor, branches: guidanceBranches };
  return {
    width,
    height,
    defaultSize: d.size,
    guidanceBranches,
    weightBytes: spec.memory.weightBytes,
    perItemBytes: perItemBytes(spec.memory, geometry),
    oneItemBytes: estimateBatchBytes(spec.memory, geometry, 1),
  };
}

/** The summary of a read model folder; loads its tokenizer (a broken one throws ModelFolderError). */
export function summarizeModel(spec: ModelSpec): ModelSummary {
  const components = Object.fromEntries(
    spec.family.components.map((c) => {
      const sig = spec.signatures[c]!;
      return [c, { file: componentFile(c), opset: sig.opset, inputs: sig.inputs.map(port), outputs: sig.outputs.map(port) }];
    }),
  ) as Partial<Record<ComponentName, ComponentSummary>>;
  const { warnings: _exportWarnings, ...exportInfo } = spec.export;
  const tokenizers = spec.paths.tokenizerDirs.map((dir) => tokenizerSummary(spec, dir));
  return {
    id: spec.id,
    dir: spec.dir,
    description: spec.description,
    family: spec.kind,
    pipelineClass: spec.pipelineClass,
    export: exportInfo,
    precision: spec.export.precision,
    components,
    scheduler: schedulerSummary(spec),
    tokenizer: tokenizers[0]!,
    tokenizers,
    denoiser: spec.family.denoiser.component,
    denoiserName: spec.family.denoiser.name,
    vae: { scaleFactor: spec.vaeScaleFactor, scalingFactor: spec.scalingFactor, latentChannels: spec.latentChannels },
    denoiserInChannels: spec.denoiserInChannels,
    memory: memorySummary(spec),
    defaults: spec.defaults,
    limits: spec.limits,
    warnings: [...spec.warnings],
  };
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** The summary as the doctor prints it. */
export function formatModelSummary(s: ModelSummary): string {
  const lines: string[] = [];
  lines.push(`model ${s.id} (${s.dir})`);
  lines.push(`  description: ${s.description}`);
  lines.push(`  family: ${s.family} (model_index.json _class_name ${s.pipelineClass})`);
  lines.push(`  exporter: ${s.export.generation}`);
  lines.push(`  precision: ${s.precision}`);
  lines.push(`  ${s.denoiser} timestep: ${s.export.timestep}; vae_encoder output: ${s.export.vaeEncoderOutput}`);
  lines.push('  components:');
  for (const c of Object.values(s.components)) {
    lines.push(`    ${c.file}${c.opset === null ? '' : ` (opset ${c.opset})`}`);
    for (const p of c.inputs) lines.push(`      in  ${p.name}: ${p.text} (rank ${p.rank})`);
    for (const p of c.outputs) lines.push(`      out ${p.name}: ${p.text} (rank ${p.rank})`);
  }
  const sch = s.scheduler;
  lines.push(`  scheduler: folder class ${sch.folderClass ?? '(none)'}${sch.fixed ? '' : ` → ${sch.classMapsTo}`}; runs ${sch.runs} (${sch.note})`);
  lines.push(`    a request may pick: ${sch.fixed ? `${sch.runs} only` : sch.available.join(', ') || 'none'}`);
  for (const u of sch.unavailable) lines.push(`    not with this config: ${u.name} (${u.reason})`);
  for (const t of s.tokenizers) {
    lines.push(
      `  ${t.folder}: ${t.files}, vocab size ${t.vocabSize}, max length ${t.maxLength}, pad token ${t.padToken === null ? '' : `${JSON.stringify(t.padToken)} `}(id ${t.padId})`,
    );
  }
  lines.push(
    `  vae: scale factor ${s.vae.scaleFactor}, scaling factor ${s.vae.scalingFactor}, ${s.vae.latentChannels} latent channels; ${s.denoiser} in channels ${s.denoiserInChannels}`,
  );
  if ('error' in s.memory) lines.push(`  memory: no estimate (${s.memory.error})`);
  else {
    const m = s.memory;
    const at = m.defaultSize.trim().toLowerCase() === 'auto' ? `auto, estimated at ${m.width}x${m.height}` : `${m.width}x${m.height}`;
    lines.push(
      `  memory at the default size (${at}, ${m.guidanceBranches} ${s.denoiserName} row${m.guidanceBranches === 1 ? '' : 's'} per output): ${mib(m.oneItemBytes)} for one output (weights ${mib(m.weightBytes)} + ${mib(m.perItemBytes)} per output)`,
    );
  }
  const d = s.defaults;
  const defaults = [`steps ${d.steps}`, `guidanceScale ${d.guidanceScale}`];
  if (d.imageGuidanceScale !== null) defaults.push(`imageGuidanceScale ${d.imageGuidanceScale}`);
  if (d.strength !== null) defaults.push(`strength ${d.strength}`);
  defaults.push(`scheduler ${d.scheduler}`, `size ${d.size}`);
  lines.push(`  defaults: ${defaults.join(', ')}`);
  const l = s.limits;
  lines.push(`  limits: maxImagesPerJob ${l.maxImagesPerJob}, maxN ${l.maxN}, maxSteps ${l.maxSteps}, maxPixels ${l.maxPixels}`);
  if (s.warnings.length === 0) lines.push('  warnings: none');
  else {
    lines.push(`  warnings (${s.warnings.length}):`);
    for (const w of s.warnings) lines.push(`    - ${w}`);
  }
  return lines.join('\n');
}
