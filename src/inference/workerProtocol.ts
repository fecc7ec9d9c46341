/** Messages between the engine (main thread) and the inference worker. */
import type { EditInput, EditOutput, ProgressUpdate, RunOptions } from './editRunner.js';
import type { InferenceErrorCode } from './errors.js';
import type { ResolvedEdit } from './request.js';
import type { ExecutionProviderName } from './sessions.js';
import type { ModelState } from './modelHost.js';
import type { EngineLogLevel } from './log.js';

export interface WorkerInit {
  models: { id: string; dir: string }[];
  /** Opened before 'ready'; the others on first use. */
  preload: string[];
  modelMemoryBytes?: number;
  provider: ExecutionProviderName;
  intraOpThreads?: number;
  allowSpinning?: boolean;
  cpuMemArena?: boolean;
  memPattern?: boolean;
  optimizedCacheDir?: string | null;
  warmUp?: boolean;
  stageThread?: boolean;
}

export type WorkerRequest =
  | {
      type: 'run';
      modelId: string;
      /** Jobs sharing one pipeline call; each settles on its own. */
      runs: {
        runId: number;
        edit: ResolvedEdit;
        inputs: EditInput[];
        /** 4 bytes; set to 1 by the main thread to cancel before the next step. */
        cancelFlag: SharedArrayBuffer;
      }[];
      options: RunOptions;
    }
  /** A model folder that became readable after start: the worker reads it. */
  | { type: 'add-model'; id: string; dir: string }
  | { type: 'close' };

export type WorkerResponse =
  | { type: 'ready' }
  | { type: 'init-error'; message: string }
  | { type: 'log'; message: string; level: EngineLogLevel }
  | { type: 'model-state'; modelId: string; state: ModelState; provider: string | null; reason?: string }
  | { type: 'progress'; runId: number; update: ProgressUpdate }
  | { type: 'done'; runId: number; output: EditOutput }
  | { type: 'failed'; runId: number; code: InferenceErrorCode; message: string };
