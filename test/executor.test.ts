/**
 * The two executors behind the engine: they cancel the same way, and a worker thread that dies
 * fails its running jobs with WORKER_CRASHED, is restarted (logged, counted in /metrics) and runs
 * the next job. The worker really dies mid-job: a malformed request throws in its message handler,
 * which runs between two ONNX Runtime runs (onnxruntime-node runs each session in a setImmediate).
 * `worker.terminate()` is not used: landing while a session runs in native code, it can abort the
 * whole process in onnxruntime-node's binding ("terminate called after throwing Napi::Error").
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Worker } from 'node:worker_threads';
import { InferenceEngine } from '../src/inference/engine.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { InferenceError } from '../src/inference/errors.js';
import type { EditOutput } from '../src/inference/editRunner.js';
import { JobService } from '../src/jobs/jobService.js';
import { createMetrics } from '../src/server/metrics.js';
import { defaultModelsDir } from '../src/config.js';
import { twoColourPng } from './support/images.js';

const start = (threading: 'inline' | 'worker', log?: (m: string) => void) =>
  InferenceEngine.start({ modelsDir: defaultModelsDir(), modelIds: ['tiny-edit'], threading, intraOpThreads: 1, log });

async function longJob(engine: InferenceEngine, options: { signal?: AbortSignal; onStep?: (step: number) => void } = {}) {
  const spec = engine.model('tiny-edit');
  const image = await twoColourPng(64, 64, [200, 60, 30], [20, 120, 220]);
  return engine.edit(spec.id, resolveEditOptions(spec, 1, { prompt: 'sepia', size: '256x256', steps: 100, seed: 1 }), [{ bytes: image }], {
    signal: options.signal,
    onProgress: (u) => options.onStep?.(u.step),
  });
}

async function quickJob(engine: InferenceEngine): Promise<number> {
  const spec = engine.model('tiny-edit');
  const image = await twoColourPng(32, 24, [200, 60, 30], [20, 120, 220]);
  const out = await engine.edit(spec.id, resolveEditOptions(spec, 1, { prompt: 'invert', size: '32x24', steps: 2, seed: 1 }), [{ bytes: image }]);
  return out.images.length;
}

describe('executors', () => {
  for (const threading of ['inline', 'worker'] as const) {
    it(`${threading}: an AbortSignal cancels before the next step with CANCELLED`, async () => {
      const engine = await start(threading);
      try {
        const controller = new AbortController();
        let last = 0;
        await assert.rejects(
          longJob(engine, {
            signal: controller.signal,
            onStep: (step) => {
              last = step;
              if (step === 2) controller.abort();
            },
          }),
          (err: unknown) => err instanceof InferenceError && err.code === 'CANCELLED' && err.message === 'the job was cancelled',
        );
        assert.ok(last < 100, `ran ${last} steps`);
        assert.equal(await quickJob(engine), 1);
      } finally {
        await engine.close();
      }
    });
  }

  it('calls submitted together (prepared and encoded beside each other’s denoising) give the images of calls run one at a time', async () => {
    const engine = await start('worker');
    try {
      const spec = engine.model('tiny-edit');
      const inputs = await Promise.all([0, 1, 2].map((i) => twoColourPng(32 + 8 * i, 24, [200, 60 - 20 * i, 30], [20, 120, 220])));
      const calls = ['sepia', 'invert', 'grayscale'].map((prompt, i) => ({
        edit: resolveEditOptions(spec, 1, { prompt, size: '32x24', steps: 3, seed: i, outputFormat: i === 1 ? 'webp' : 'png' }),
        inputs: [{ bytes: inputs[i]! }],
      }));
      const alone = [];
      for (const c of calls) alone.push(await engine.edit(spec.id, c.edit, c.inputs));
      const together = await Promise.all(calls.map((c) => engine.edit(spec.id, c.edit, c.inputs)));
      assert.deepEqual(
        together.map((o) => Buffer.from(o.images[0]!.bytes).toString('base64')),
        alone.map((o) => Buffer.from(o.images[0]!.bytes).toString('base64')),
      );
      // One failing call (an undecodable input) leaves the calls beside it alone.
      const mixed = await Promise.allSettled([
        engine.edit(spec.id, calls[0]!.edit, calls[0]!.inputs),
        engine.edit(spec.id, calls[1]!.edit, [{ bytes: new Uint8Array([1, 2, 3]) }]),
        engine.edit(spec.id, calls[2]!.edit, calls[2]!.inputs),
      ]);
      assert.deepEqual(
        mixed.map((m) => m.status),
        ['fulfilled', 'rejected', 'fulfilled'],
      );
      assert.equal(
        Buffer.from((mixed[2] as PromiseFulfilledResult<EditOutput>).value.images[0]!.bytes).toString('base64'),
        Buffer.from(alone[2]!.images[0]!.bytes).toString('base64'),
      );
    } finally {
      await engine.close();
    }
  });

  it('the stage thread dying mid-job is logged and replaced: the job decodes on a new one and gives the same image', async () => {
    const logged: string[] = [];
    const engine = await start('inline', (m) => logged.push(m));
    try {
      const reference = await longJob(engine);
      // The stage thread as the host holds it (no hook in the product for crashing it).
      const stage = (): Promise<Worker> | null =>
        (engine as unknown as { executor: { host: { stage: { worker: Promise<Worker> | null } } } }).executor.host.stage.worker;
      const dying = await stage()!;
      let killed = false;
      const out = await longJob(engine, {
        onStep: (step) => {
          if (step === 1 && !killed) {
            killed = true;
            // A message that is not an object: the thread's handler throws, uncaught, and it exits with code 1.
            dying.postMessage(null);
          }
        },
      });
      assert.ok(killed);
      assert.ok(
        logged.some((m) => /the encoder thread died \(.*\); the next run starts another/.test(m)),
        logged.join('\n'),
      );
      assert.notEqual(await stage(), dying);
      assert.equal(Buffer.from(out.images[0]!.bytes).toString('base64'), Buffer.from(reference.images[0]!.bytes).toString('base64'));
    } finally {
      await engine.close();
    }
  });

  it('the stage thread gives the images of one thread, for every built-in model', async () => {
    const image = await twoColourPng(64, 64, [200, 60, 30], [20, 120, 220]);
    const mask = await twoColourPng(64, 64, [255, 255, 255], [0, 0, 0]);
    const run = async (stageThread: boolean) => {
      const engine = await InferenceEngine.start({ modelsDir: defaultModelsDir(), threading: 'inline', stageThread });
      try {
        const outs = [];
        for (const model of ['tiny-edit', 'tiny-flow-edit']) {
          const spec = engine.model(model);
          const edit = resolveEditOptions(spec, 2, { prompt: 'sepia', size: '64x64', steps: 3, seed: 7, n: 2 });
          const out = await engine.edit(model, edit, [{ bytes: image, mask: model === 'tiny-edit' ? mask : null }, { bytes: image }]);
          outs.push(...out.images.map((i) => Buffer.from(i.bytes).toString('base64')));
        }
        return outs;
      } finally {
        await engine.close();
      }
    };
    const staged = await run(true);
    assert.equal(staged.length, 8);
    assert.deepEqual(staged, await run(false));
  });

  it('a worker that dies mid-job fails it with WORKER_CRASHED, is restarted, logged and counted', async () => {
    const logged: string[] = [];
    const engine = await start('worker', (m) => logged.push(m));
    const jobs = new JobService(engine, { retentionMs: 60_000, maxQueuedJobs: 10, jobTimeoutMs: 0, mergeJobs: false });
    const metrics = createMetrics(jobs, engine);
    try {
      // The thread itself, as the engine holds it (no hook in the product for crashing it).
      const thread = (): Worker => (engine as unknown as { executor: { worker: Worker } }).executor.worker;
      const dying = thread();
      let killed = false;
      await assert.rejects(
        longJob(engine, {
          onStep: (step) => {
            if (step === 1 && !killed) {
              killed = true;
              // `runs` must be an array: the worker's handler throws, uncaught, and the thread exits with code 1.
              dying.postMessage({ type: 'run', modelId: 'tiny-edit', runs: null, options: {} });
            }
          },
        }),
        (err: unknown) => err instanceof InferenceError && err.code === 'WORKER_CRASHED' && /died while running this job/.test(err.message),
      );
      assert.ok(killed);
      assert.equal(engine.workerRestarts, 1);
      assert.ok(
        logged.some((m) =>
          /inference worker died \(Cannot read properties of null \(reading 'map'\)\) with 1 job\(s\) running; restarting it \(restart 1\)/.test(m),
        ),
        logged.join('\n'),
      );
      // The next job runs on a new thread.
      assert.equal(await quickJob(engine), 1);
      assert.notEqual(thread(), dying);
      assert.equal(engine.modelState('tiny-edit'), 'loaded');
      const exposed = await metrics.registry.getSingleMetricAsString('image_edit_inference_worker_restarts_total');
      assert.match(exposed, /^image_edit_inference_worker_restarts_total 1$/m);
    } finally {
      await jobs.shutdown(0);
      await engine.close();
    }
  });
});
