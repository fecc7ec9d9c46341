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
});
