/** The `npm run edit` CLI: writes <input name>-<variant>.<format>, shows progress, exits 2 on bad arguments. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';
import { expectedColour, maxChannelDiff, pixelAt, solidPng } from './support/images.js';

const cli = (args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src/cli/edit.ts'), ...args], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 60_000 });

describe('edit CLI', () => {
  it('edits several images with n variants into named files, with a progress bar and usage', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    writeFileSync(join(dir, 'a.png'), await solidPng(32, 32, [200, 60, 30]));
    writeFileSync(join(dir, 'b.png'), await solidPng(32, 32, [20, 120, 220]));
    const out = join(dir, 'out');
    const r = cli(['--image', join(dir, 'a.png'), '--image', join(dir, 'b.png'), '--prompt', 'sepia', '--n', '2', '--size', '32x32', '--scheduler', 'EULER', '--steps', '4', '--out', out]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /denoising \[#+\] 4\/4 100%/);
    assert.match(r.stdout, /2 input\(s\) → 4 image\(s\)/);
    for (const name of ['a-0.png', 'a-1.png', 'b-0.png', 'b-1.png']) assert.ok(existsSync(join(out, name)), name);
    const got = await pixelAt(await import('node:fs').then((fs) => fs.readFileSync(join(out, 'b-1.png'))), 5, 5);
    assert.ok(maxChannelDiff(got, expectedColour([20, 120, 220], 'sepia')) <= 2);
  });

  it('exits 2 with a clear message on bad arguments', () => {
    const cases: [string[], RegExp][] = [
      [[], /at least one --image/],
      [['--image', 'x.png'], /--prompt is required/],
      [['--image', '/nonexistent.png', '--prompt', 'x'], /cannot read --image/],
      [['--image', join(PROJECT_ROOT, 'package.json'), '--prompt', 'x', '--n', 'two'], /--n must be an integer/],
      [['--image', join(PROJECT_ROOT, 'package.json'), '--prompt', 'x', '--scheduler', 'PLMS'], /--scheduler must be/],
      [['--bogus'], /Unknown option/],
    ];
    for (const [args, message] of cases) {
      const r = cli(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    const notImage = cli(['--image', join(PROJECT_ROOT, 'package.json'), '--prompt', 'x']);
    assert.equal(notImage.status, 2);
    assert.match(notImage.stderr, /INVALID_IMAGE/);
  });
});
