/**
 * The memory plan against real RSS: jobs of 512² outputs on the bench model and the built-in
 * tiny-edit, each in a fresh
 * process (bench/memoryChild.ts: inline engine, ONNX Runtime's CPU arena on as by default) with
 * MEMORY_BUDGET set just above or just below the plan's figure for the job as one call. What the
 * job needs is its peak RSS minus the RSS of the process before the model was loaded (the plan
 * counts the sessions as `weightBytes`).
 *   - just below, one image: the plan refuses it (IMAGE_TOO_LARGE), so nothing runs: its own accounting.
 *   - just above, one image and four: one pipeline call, and the peak stays under the budget.
 *   - just below, four images: the plan splits the job, and the peak stays under the budget.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { dirname } from 'node:path';
import { ensureBenchModel } from '../models/bench.js';
import { TINY_EDIT_DIR } from '../models/generate.js';
import { readModelFolder, type ModelSpec } from '../src/inference/modelFolder.js';
import { estimateBatchBytes } from '../src/inference/memory.js';
import { STAGE_THREAD_BYTES } from '../src/inference/stageThread.js';
import { resolveEditOptions } from '../src/inference/request.js';
import { measureJobMemory } from '../bench/memory.js';

const MB = 2 ** 20;
const SIZE = 512;

const MODELS: [string, () => Promise<string>][] = [
  ['bench', () => ensureBenchModel()],
  ['tiny-edit', async () => TINY_EDIT_DIR],
];

for (const [model, folder] of MODELS)
  describe(`memory plan boundary (real RSS, ${model}, 512²)`, { timeout: 600_000 }, () => {
    let modelsDir = '';
    let spec: ModelSpec;

    before(async () => {
      const dir = await folder();
      modelsDir = dirname(dir);
      spec = readModelFolder(dir, model);
    });

    /** The plan's bytes for `images` outputs in one call, with their decoded inputs and the stage thread. */
    function planBytes(images: number): number {
      const edit = resolveEditOptions(spec, images, { prompt: 'x', size: `${SIZE}x${SIZE}`, steps: 2 });
      const geometry = { width: SIZE, height: SIZE, vaeScaleFactor: spec.vaeScaleFactor, branches: spec.family.guidanceBranches(edit) };
      // The engine's stage thread is on by default; the budget reserves its memory.
      return estimateBatchBytes(spec.memory, geometry, images) + images * SIZE * SIZE * 3 * 4 + STAGE_THREAD_BYTES;
    }

    function run(images: number, budgetMb: number) {
      const r = measureJobMemory({ modelsDir, model, images, size: SIZE, steps: 2, arena: true, budgetMb });
      const need = r.peak_rss - r.runtime_rss;
      console.log(
        `${model}: ${images} × ${SIZE}², budget ${budgetMb} MB (plan for one call ${Math.round(planBytes(images) / MB)} MB): ${r.error ? r.error.code : `${r.batches} call(s), needed ${Math.round(need / MB)} MB`}`,
      );
      return { ...r, need };
    }

    it('refuses one image when the budget is just below its need', () => {
      const budget = Math.floor(planBytes(1) / MB) - 1;
      const r = run(1, budget);
      assert.equal(r.error?.code, 'IMAGE_TOO_LARGE', JSON.stringify(r.error));
      assert.match(r.error!.message, /over the memory budget/);
    });

    for (const images of [1, 4]) {
      it(`runs ${images} image(s) as one call within a budget just above the plan`, () => {
        const budget = Math.ceil(planBytes(images) / MB) + 1;
        const r = run(images, budget);
        assert.equal(r.error, undefined, JSON.stringify(r.error));
        assert.equal(r.batches, 1);
        assert.ok(r.need <= budget * MB, `needed ${Math.round(r.need / MB)} MB, budget ${budget} MB`);
      });
    }

    it('splits four images when the budget is just below their need, and stays within it', () => {
      const budget = Math.floor(planBytes(4) / MB) - 1;
      const r = run(4, budget);
      assert.equal(r.error, undefined, JSON.stringify(r.error));
      assert.ok(r.batches >= 2, `${r.batches} call(s)`);
      assert.ok(r.need <= budget * MB, `needed ${Math.round(r.need / MB)} MB, budget ${budget} MB`);
    });
  });
