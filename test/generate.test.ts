/** `npm run generate:models -- bench` writes both bench model folders and says where. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';

describe('models/generate.ts', () => {
  it('bench: writes .cache/models/bench and bench-img2img, printing each folder', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'models/generate.ts'), 'bench'], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    for (const [name, family] of [['bench', 'instruct-pix2pix'], ['bench-img2img', 'img2img']]) {
      const dir = join(PROJECT_ROOT, '.cache', 'models', name);
      assert.ok(r.stdout.includes(`wrote ${dir}\n`), r.stdout);
      assert.match(readFileSync(join(dir, 'VERSION'), 'utf8'), new RegExp(`:${family}\\n$`));
    }
  });

  it('refuses an unknown model name with exit status 2', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'models/generate.ts'), 'nope'], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown model "nope"/);
  });
});
