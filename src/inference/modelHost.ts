/**
 * Owns the loaded runtimes (tokenizer + ONNX sessions, created once per model and reused) and runs
 * edits on them one at a time. Lives in the inference worker thread, or inline for tools that do
 * not mind a blocked event loop.
 */
import type { ModelSpec } from './modelFolder.js';
import { openModelSessions } from './sessions.js';
import type { SessionConfig } from './sessions.js';
import { loadTokenizer } from './tokenizer.js';
import { runEdits } from './editRunner.js';
import { ScratchPool } from './scratch.js';
import type { EditTask, ModelRuntime, RunOptions } from './editRunner.js';
import { InferenceError } from './errors.js';

export class ModelHost {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly runtimes: Map<string, ModelRuntime>) {}

  static async open(specs: readonly ModelSpec[], config: SessionConfig): Promise<ModelHost> {
    const runtimes = new Map<string, ModelRuntime>();
    try {
      for (const spec of specs) {
        const tokenizer = loadTokenizer(spec.paths.tokenizerDir);
        const tokenizers = [tokenizer, ...spec.paths.tokenizerDirs.slice(1).map(loadTokenizer)];
        const sessions = await openModelSessions(spec, config);
        runtimes.set(spec.id, { spec, sessions, tokenizer, tokenizers, scratch: new ScratchPool() });
      }
    } catch (err) {
      await Promise.all([...runtimes.values()].map((r) => r.sessions.release()));
      throw err;
    }
    return new ModelHost(runtimes);
  }

  providers(): Record<string, string> {
    return Object.fromEntries([...this.runtimes].map(([id, r]) => [id, r.sessions.provider]));
  }

  /**
   * Runs pipeline calls strictly one after another (one pipeline at a time on this device); the
   * tasks of one call share it (cross-request batching). Resolves when every task has settled.
   */
  run(modelId: string, tasks: readonly EditTask[], options: RunOptions): Promise<void> {
    const runtime = this.runtimes.get(modelId);
    if (!runtime) {
      for (const t of tasks) t.onSettled({ error: new InferenceError('NOT_FOUND', `model "${modelId}" is not loaded`) });
      return Promise.resolve();
    }
    const result = this.queue.then(() => runEdits(runtime, tasks, options));
    this.queue = result.catch(() => undefined);
    return result;
  }

  async close(): Promise<void> {
    await this.queue;
    await Promise.all([...this.runtimes.values()].map((r) => r.sessions.release()));
    this.runtimes.clear();
  }
}
