/**
 * The inference worker thread. onnxruntime-node's session.run blocks its thread for the whole
 * call, so the denoise loop lives here and the main thread stays free to answer queries and
 * deliver progress. Cancellation arrives through a shared flag, read before every step, because
 * this thread's event loop is busy while a job runs.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ModelHost } from './modelHost.js';
import { readModelFolder } from './modelFolder.js';
import type { WorkerInit, WorkerRequest, WorkerResponse } from './workerProtocol.js';
import { abortCheck } from './executor.js';

const port = parentPort!;
const init = workerData as WorkerInit;
const post = (message: WorkerResponse, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

// [issue 16 item 5] ONNX Runtime's outputs live in external buffers that only go back when V8
// collects their wrappers; this thread allocates little JavaScript, so after a large run that could
// take minutes (measured: RSS 0.5–1 GB above idle 20 s after a burst). One full collection once the
// thread is idle gives them back.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as (() => void) | undefined;
let runsInFlight = 0;

let host: ModelHost;
try {
  const specs = init.models.map((m) => readModelFolder(m.dir, m.id));
  host = await ModelHost.open(specs, {
    provider: init.provider,
    intraOpThreads: init.intraOpThreads,
    allowSpinning: init.allowSpinning,
    cpuMemArena: init.cpuMemArena,
    memPattern: init.memPattern,
    optimizedCacheDir: init.optimizedCacheDir,
    warmUp: init.warmUp,
    stageThread: init.stageThread,
    preload: init.preload,
    modelMemoryBytes: init.modelMemoryBytes,
    log: (message, level) => post({ type: 'log', message, level }),
    onState: (modelId, state, provider, reason) => post({ type: 'model-state', modelId, state, provider, reason }),
  });
  post({ type: 'ready' });
} catch (err) {
  post({ type: 'init-error', message: (err as Error).message });
  process.exit(1);
}

port.on('message', (message: WorkerRequest) => {
  if (message.type === 'close') {
    void host.close().then(() => process.exit(0));
    return;
  }
  if (message.type === 'add-model') {
    try {
      host.addModel(readModelFolder(message.dir, message.id));
    } catch (err) {
      // Read fine on the main thread a moment ago; if not now, its first job reports "not known".
      post({ type: 'log', message: `model ${message.id}: ${(err as Error).message}`, level: 'warn' });
    }
    return;
  }
  const { modelId, runs, options } = message;
  runsInFlight += 1;
  void host
    .run(
      modelId,
      runs.map(({ runId, edit, inputs, cancelFlag }) => {
        const flag = new Int32Array(cancelFlag);
        return {
          edit,
          inputs,
          throwIfAborted: abortCheck(() => Atomics.load(flag, 0) !== 0),
          onProgress: (update) => post({ type: 'progress', runId, update }),
          onSettled: (outcome) => {
            if ('output' in outcome) post({ type: 'done', runId, output: outcome.output });
            else post({ type: 'failed', runId, code: outcome.error.code, message: outcome.error.message });
          },
        };
      }),
      options,
    )
    .finally(() => {
      runsInFlight -= 1;
      if (runsInFlight === 0 && collectGarbage) setTimeout(() => runsInFlight === 0 && collectGarbage(), 50);
    });
});
