/**
 * The model catalogue: which model folders exist under MODELS_DIR and what each one is (its spec,
 * read from the folder's JSON and declared ONNX ports without opening a session), plus each model's
 * load state and provider as the executor reports them. API processes in front of Redis workers and
 * the CLI's argument checks need only this; running edits is an executor's work (executor.ts).
 *
 * A folder that cannot be read does not stop the others: it is listed with state 'error' and its
 * reason, its jobs get MODEL_UNAVAILABLE, and it is read again on its next use or on `reload()`.
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
  /** Memory a batch may use; default `defaultMemoryBudget()`. */
  memoryBudgetBytes?: number;
  /** Memory the executor holds besides models and jobs (its stage thread), taken from the budget. */
  reservedBytes?: number;
  /** Decoded-pixel bound per input (decompression-bomb guard). */
  maxInputPixels?: number;
}

export const DEFAULT_MAX_INPUT_PIXELS = 40_000_000;

/**
 * This machine's RAM less 6 GiB for the system and the rest of the process, and never under half
 * of it: 17.5 GiB of 23.5 (two guided 512² outputs of an SD 1.5-size model plan 11.9 GiB in one call), 4 of 8.
 */
export function defaultMemoryBudget(): number {
  const total = totalmem();
  return Math.floor(Math.max(total * 0.5, total - 6 * 2 ** 30));
}

export class ModelCatalogue {
  readonly memoryBudgetBytes: number;
  readonly maxInputPixels: number;
  private readonly states = new Map<string, ModelState>();
  /** Why a model is in state 'error' (its folder, or its sessions as the executor reported). */
  private readonly reasons = new Map<string, string>();
  private readonly providersById = new Map<string, string>();
  /** Called with each folder that becomes readable after start (the executor learns of it). */
  onModelAdded: ((spec: ModelSpec) => void) | null = null;

  private constructor(
    readonly modelsDir: string,
    /** Every model id, in folder order; those not in `specs` are in `folderErrors`. */
    private readonly ids: readonly string[],
    private readonly specs: Map<string, ModelSpec>,
    private readonly folderErrors: Map<string, string>,
    readonly defaultModelId: string,
    config: CatalogueConfig,
  ) {
    this.memoryBudgetBytes = (config.memoryBudgetBytes ?? defaultMemoryBudget()) - (config.reservedBytes ?? 0);
    this.maxInputPixels = config.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  }

  /**
   * Reads every model folder, each on its own: a broken one is kept with its reason (`failures`).
   * ModelFolderError when there is no model folder at all, or the default or a preloaded id is not one.
   */
  static read(config: CatalogueConfig): ModelCatalogue {
    const ids = config.modelIds ?? listModelFolders(config.modelsDir);
    if (ids.length === 0) throw new ModelFolderError(`no model folders (with model_index.json) under ${config.modelsDir}`);
    const specs = new Map<string, ModelSpec>();
    const folderErrors = new Map<string, string>();
    for (const id of ids) {
      const read = readFolder(config.modelsDir, id);
      if ('spec' in read) specs.set(id, read.spec);
      else folderErrors.set(id, read.reason);
    }
    const defaultModel = config.defaultModel ?? (ids.includes('tiny-edit') ? 'tiny-edit' : ids[0]!);
    if (!ids.includes(defaultModel)) throw new ModelFolderError(`default model "${defaultModel}" is not under ${config.modelsDir} (found: ${ids.join(', ')})`);
    for (const id of config.preloadModels ?? []) {
      if (!ids.includes(id)) throw new ModelFolderError(`PRELOAD_MODELS names "${id}", which is not under ${config.modelsDir} (found: ${ids.join(', ')})`);
    }
    return new ModelCatalogue(config.modelsDir, ids, specs, folderErrors, defaultModel, config);
  }

  /** The models whose folders were read (some may still fail to load: `modelState`). */
  models(): ModelSpec[] {
    return this.ids.flatMap((id) => this.specs.get(id) ?? []);
  }

  /** Every model in state 'error', with its reason, in folder order. */
  failures(): { id: string; reason: string }[] {
    return this.ids.flatMap((id) => {
      const reason = this.errorReason(id);
      return reason === null ? [] : [{ id, reason }];
    });
  }

  /** Every model id, readable or not, in folder order. */
  modelIds(): readonly string[] {
    return this.ids;
  }

  /**
   * The model for an id, or the default; NOT_FOUND names the known ids (ids are never paths). A
   * folder that could not be read is read again: MODEL_UNAVAILABLE with the reason while it still fails.
   */
  model(id?: string | null): ModelSpec {
    const key = id ?? this.defaultModelId;
    const spec = this.specs.get(key) ?? (this.folderErrors.has(key) ? this.retry(key) : undefined);
    if (!spec) throw new InferenceError('NOT_FOUND', `unknown model "${id}"; available: ${this.ids.join(', ')}`);
    return spec;
  }

  /** Reads every failed folder again (SIGHUP); returns the ids that are now readable. */
  reload(): string[] {
    return [...this.folderErrors.keys()].filter((id) => {
      try {
        this.retry(id);
        return true;
      } catch {
        return false;
      }
    });
  }

  private retry(id: string): ModelSpec {
    const read = readFolder(this.modelsDir, id);
    if ('reason' in read) {
      this.folderErrors.set(id, read.reason);
      throw new InferenceError('MODEL_UNAVAILABLE', `model "${id}" cannot be served: ${read.reason}`);
    }
    this.folderErrors.delete(id);
    this.specs.set(id, read.spec);
    this.onModelAdded?.(read.spec);
    return read.spec;
  }

  /** `loaded`, `loading`, `available` (a folder that loads on first use) or `error` (`errorReason` says why). */
  modelState(id: string): ModelState {
    if (this.folderErrors.has(id)) return 'error';
    return this.states.get(id) ?? 'available';
  }

  /** Why a model is in state 'error'; null in any other state. */
  errorReason(id: string): string | null {
    return this.folderErrors.get(id) ?? (this.states.get(id) === 'error' ? (this.reasons.get(id) ?? 'it failed to load') : null);
  }

  /** Execution provider of each loaded model. */
  providers(): Record<string, string> {
    return Object.fromEntries(this.providersById);
  }

  /** Records what an executor reports about a model. */
  setState(modelId: string, state: ModelState, provider: string | null, reason?: string): void {
    this.states.set(modelId, state);
    if (reason) this.reasons.set(modelId, reason);
    else this.reasons.delete(modelId);
    if (provider) this.providersById.set(modelId, provider);
    else this.providersById.delete(modelId);
  }
}

/** One folder's spec, or why it cannot be read. */
function readFolder(modelsDir: string, id: string): { spec: ModelSpec } | { reason: string } {
  try {
    return { spec: readModelFolder(join(modelsDir, id), id) };
  } catch (err) {
    // Anything a half-copied folder throws (a truncated ONNX file too) is this folder's problem alone.
    return { reason: (err as Error).message };
  }
}
