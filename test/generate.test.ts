/** `npm run generate:models -- bench` writes both bench model folders and says where. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';

describe('models/generate.ts', () => {
  it('bench: writes .cache/models/bench and bench-img2img, printing each folder', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'models/generate.ts'), 'bench'], {
      cwd: PROJECT_ROOT,
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stderr);
    for (const [name, family] of [
      ['bench', 'instruct-pix2pix'],
      ['bench-img2img', 'img2img'],
    ]) {
      const dir = join(PROJECT_ROOT, '.cache', 'models', name);
      assert.ok(r.stdout.includes(`wrote ${dir}\n`), r.stdout);
      assert.match(readFileSync(join(dir, 'VERSION'), 'utf8'), new RegExp(`:${family}\\n$`));
    }
  });

  it('tiny-flow-edit <dir>: writes the FLUX- and SD3-layout analytic folders there', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gen-flow-'));
    try {
      const r = spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'models/generate.ts'), 'tiny-flow-edit', dir], {
        cwd: PROJECT_ROOT,
        encoding: 'utf8',
        timeout: 120_000,
      });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(JSON.parse(readFileSync(join(dir, 'tiny-flow-edit', 'model_index.json'), 'utf8'))._class_name, 'FluxKontextPipeline');
      assert.equal(JSON.parse(readFileSync(join(dir, 'tiny-sd3-edit', 'model_index.json'), 'utf8'))._class_name, 'StableDiffusion3Img2ImgPipeline');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses an unknown model name with exit status 2', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'models/generate.ts'), 'nope'], {
      cwd: PROJECT_ROOT,
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown model "nope"/);
  });
});
