/**
 * Several models in one MODELS_DIR: the default (or PRELOAD_MODELS) opens at start, the others on
 * first use, within MODEL_MEMORY_MB, least recently used idle models released to make room.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildExportFixture } from '../models/exports.js';
import { writeModelFolder } from '../models/modelFiles.js';
import { InferenceEngine } from '../src/inference/engine.js';
import { ModelCatalogue } from '../src/inference/catalogue.js';
import { ModelFolderError } from '../src/inference/modelFolder.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { estimateBatchBytes } from '../src/inference/memory.js';
import { STAGE_THREAD_BYTES } from '../src/inference/stageThread.js';
import type { InferenceError } from '../src/inference/errors.js';
import { solidPng } from './support/images.js';

describe('models loaded on first use within a memory budget', () => {
  let root: string;
  const ids = ['a-ip2p', 'b-img2img', 'c-inpaint'] as const;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'models-'));
    writeModelFolder(join(root, ids[0]), buildExportFixture({ generation: 'optimum-1.24', family: 'instruct-pix2pix' }));
    writeModelFolder(join(root, ids[1]), buildExportFixture({ generation: 'optimum-1.24', family: 'img2img' }));
    writeModelFolder(join(root, ids[2]), buildExportFixture({ generation: 'optimum-1.24', family: 'inpaint' }));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('opens the preloaded model at start, others on first use, and releases the least recently used to stay within the budget', async () => {
    const catalogue = ModelCatalogue.read({ modelsDir: root });
    const weights = ids.map((id) => catalogue.model(id).memory.weightBytes);
    // Room for the two biggest models, never for all three.
    const budget = [...weights]
      .sort((x, y) => y - x)
      .slice(0, 2)
      .reduce((a, b) => a + b, 0);
    const log: string[] = [];
    const engine = await InferenceEngine.start({
      modelsDir: root,
      defaultModel: ids[0],
      threading: 'worker',
      modelMemoryBytes: budget,
      log: (m) => log.push(m),
    });
    try {
      assert.deepEqual(
        ids.map((id) => engine.modelState(id)),
        ['loaded', 'available', 'available'],
      );
      const input = [{ bytes: await solidPng(64, 64, [200, 60, 30]) }];
      const run = (id: string) => engine.edit(id, resolveEditOptions(engine.model(id), 1, { prompt: 'sepia', size: '64x64', steps: 2, strength: 1 }), input);
      const updates: { step: number; phase?: string }[] = [];
      await engine.edit(ids[1], resolveEditOptions(engine.model(ids[1]), 1, { prompt: 'sepia', size: '64x64', steps: 2, strength: 1 }), input, {
        onProgress: (u) => updates.push({ step: u.step, phase: u.phase }),
      });
      assert.deepEqual(updates[0], { step: 0, phase: 'loading-model' }, 'the job hears that its model is loading');
      assert.deepEqual(
        updates.slice(1).map((u) => u.step),
        [1, 2],
      );
      assert.deepEqual(
        ids.map((id) => engine.modelState(id)),
        ['loaded', 'loaded', 'available'],
      );
      await run(ids[0]); // a is now the most recently used
      await run(ids[2]);
      assert.deepEqual(
        ids.map((id) => engine.modelState(id)),
        ['loaded', 'available', 'loaded'],
        'b, the least recently used, was released for c',
      );
      assert.ok(
        log.some((m) => m.includes(`model ${ids[1]} released to make room for ${ids[2]}`)),
        log.join('\n'),
      );
      await run(ids[1]); // loads again, releasing a
      assert.deepEqual(
        ids.map((id) => engine.modelState(id)),
        ['available', 'loaded', 'loaded'],
      );
      assert.deepEqual(Object.keys(engine.providers()).sort(), [ids[1], ids[2]]);
    } finally {
      await engine.close();
    }
  });

  it('opens every model named in PRELOAD_MODELS at start, and refuses one that does not exist', async () => {
    const engine = await InferenceEngine.start({ modelsDir: root, defaultModel: ids[0], threading: 'inline', preloadModels: [ids[1], ids[2]] });
    try {
      assert.deepEqual(
        ids.map((id) => engine.modelState(id)),
        ['available', 'loaded', 'loaded'],
      );
    } finally {
      await engine.close();
    }
    await assert.rejects(
      InferenceEngine.start({ modelsDir: root, threading: 'inline', preloadModels: ['nope'] }),
      (err: unknown) => err instanceof ModelFolderError && /PRELOAD_MODELS names "nope"/.test(err.message),
    );
  });

  it('refuses an output the memory plan cannot fit (IMAGE_TOO_LARGE) before loading the model, naming the largest size that fits', async () => {
    const spec = ModelCatalogue.read({ modelsDir: root }).model(ids[1]);
    // Room for the weights and a bit over one 64² output, not one 128² output.
    const one64 = estimateBatchBytes(spec.memory, { width: 64, height: 64, vaeScaleFactor: spec.vaeScaleFactor, branches: 1 }, 1);
    const per64 = one64 - estimateBatchBytes(spec.memory, { width: 64, height: 64, vaeScaleFactor: spec.vaeScaleFactor, branches: 1 }, 0);
    const budget = one64 + 0.5 * per64 + STAGE_THREAD_BYTES + 2 ** 20;
    const states: string[] = [];
    for (const threading of ['inline', 'worker'] as const) {
      const engine = await InferenceEngine.start({
        modelsDir: root,
        defaultModel: ids[0],
        threading,
        memoryBudgetBytes: budget,
        onState: ({ spec: s, state }) => s.id === ids[1] && states.push(state),
      });
      try {
        const updates: (string | undefined)[] = [];
        const edit = resolveEditOptions(engine.model(ids[1]), 1, { prompt: 'sepia', size: '128x128', steps: 2, strength: 1, guidanceScale: 1 });
        await assert.rejects(
          engine.edit(ids[1], edit, [{ bytes: await solidPng(128, 128, [200, 60, 30]) }], { onProgress: (u) => updates.push(u.phase) }),
          (err: InferenceError) => {
            assert.equal(err.code, 'IMAGE_TOO_LARGE');
            assert.match(err.message, /the largest square that fits is (\d+)x\1 \(max pixels \d+\)/);
            const side = Number(/fits is (\d+)x/.exec(err.message)![1]);
            assert.ok(side >= 64 && side < 128, err.message);
            return true;
          },
        );
        assert.deepEqual(updates, [], 'no loading-model progress: the job was refused first');
        assert.equal(engine.modelState(ids[1]), 'available', `${threading}: the model was never loaded`);
        assert.deepEqual(states, [], 'no load was started');
        // A size that fits loads the model and runs.
        const small = resolveEditOptions(engine.model(ids[1]), 1, { prompt: 'sepia', size: '64x64', steps: 2, strength: 1, guidanceScale: 1 });
        const phases: (string | undefined)[] = [];
        await engine.edit(ids[1], small, [{ bytes: await solidPng(64, 64, [200, 60, 30]) }], { onProgress: (u) => phases.push(u.phase) });
        assert.equal(phases[0], 'loading-model');
        assert.equal(engine.modelState(ids[1]), 'loaded');
      } finally {
        await engine.close();
        states.length = 0;
      }
    }
  });
});
