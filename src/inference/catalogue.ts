/**
 * The model catalogue: which model folders exist under MODELS_DIR and what each one is (its spec,
 * read from the folder's JSON and declared ONNX ports without opening a session), plus each model's
 * load state and provider as the executor reports them. API processes in front of Redis workers and
 * the CLI's argument checks need only this; running edits is an executor's work (executor.ts).
 */
import { totalmem } from 'node:os';
import { join } from 'node:path';
import type { ModelSpec } from './modelFolder.js';
import { listModelFolders, readModelFolder, ModelFolderError } from './modelFolder.js';
import type { ModelState } from './modelHost.js';
import { InferenceError } from './errors.js';

export interface CatalogueConfig {
  /** Folder whose sub-folders are model folders. */
  modelsDir: string;
  defaultModel?: string;
  /** Only these model ids (default: all under modelsDir). */
  modelIds?: string[];
  /** Models opened at start (checked to exist here). */
  preloadModels?: string[];
  /** Memory a batch may use; default half of this machine's RAM. */
  memoryBudgetBytes?: number;
  /** Memory the executor holds besides models and jobs (its stage thread), taken from the budget. */
  reservedBytes?: number;
  /** Decoded-pixel bound per input (decompression-bomb guard). */
  maxInputPixels?: number;
}

export const DEFAULT_MAX_INPUT_PIXELS = 40_000_000;

export function defaultMemoryBudget(): number {
  return Math.floor(totalmem() * 0.5);
}

export class ModelCatalogue {
  readonly memoryBudgetBytes: number;
  readonly maxInputPixels: number;
  private readonly states = new Map<string, ModelState>();
  private readonly providersById = new Map<string, string>();

  private constructor(
    private readonly specs: Map<string, ModelSpec>,
    readonly defaultModelId: string,
    config: CatalogueConfig,
  ) {
    this.memoryBudgetBytes = (config.memoryBudgetBytes ?? defaultMemoryBudget()) - (config.reservedBytes ?? 0);
    this.maxInputPixels = config.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  }

  /** Reads every model folder; ModelFolderError names what is wrong. */
  static read(config: CatalogueConfig): ModelCatalogue {
    const ids = config.modelIds ?? listModelFolders(config.modelsDir);
    if (ids.length === 0) throw new ModelFolderError(`no model folders (with model_index.json) under ${config.modelsDir}`);
    const specs = new Map(ids.map((id) => [id, readModelFolder(join(config.modelsDir, id), id)] as const));
    const defaultModel = config.defaultModel ?? (specs.has('tiny-edit') ? 'tiny-edit' : ids[0]!);
    if (!specs.has(defaultModel)) throw new ModelFolderError(`default model "${defaultModel}" is not under ${config.modelsDir} (found: ${ids.join(', ')})`);
    for (const id of config.preloadModels ?? []) {
      if (!specs.has(id)) throw new ModelFolderError(`PRELOAD_MODELS names "${id}", which is not under ${config.modelsDir} (found: ${ids.join(', ')})`);
    }
    return new ModelCatalogue(specs, defaultModel, config);
  }

  models(): ModelSpec[] {
    return [...this.specs.values()];
  }

  /** The model for an id, or the default; NOT_FOUND names the known ids (ids are never paths). */
  model(id?: string | null): ModelSpec {
    const spec = this.specs.get(id ?? this.defaultModelId);
    if (!spec) throw new InferenceError('NOT_FOUND', `unknown model "${id}"; available: ${[...this.specs.keys()].join(', ')}`);
    return spec;
  }

  /** `loaded`, `loading`, or `available` (a folder that loads on first use). */
  modelState(id: string): ModelState {
    return this.states.get(id) ?? 'available';
  }

  /** Execution provider of each loaded model. */
  providers(): Record<string, string> {
    return Object.fromEntries(this.providersById);
  }

  /** Records what an executor reports about a model. */
  setState(modelId: string, state: ModelState, provider: string | null): void {
    this.states.set(modelId, state);
    if (provider) this.providersById.set(modelId, provider);
    else this.providersById.delete(modelId);
  }
}
