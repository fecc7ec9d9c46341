/**
 * The `npm run edit` CLI: writes <input name>-<variant>.<format>, shows progress, exits 2 on bad
 * arguments, inputs or output folder before any model loads, keeps existing outputs, stops on signals.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../models/onnx/graph.js';
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
    const r = cli([
      '--image',
      join(dir, 'a.png'),
      '--image',
      join(dir, 'b.png'),
      '--prompt',
      'sepia',
      '--n',
      '2',
      '--size',
      '32x32',
      '--scheduler',
      'EULER',
      '--steps',
      '4',
      '--out',
      out,
    ]);
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
      [['--image', join(PROJECT_ROOT, 'package.json'), '--prompt', 'x', '--n', '0x2'], /--n must be an integer \(got "0x2"\)/],
      [['--image', join(PROJECT_ROOT, 'package.json'), '--prompt', 'x', '--scheduler', 'PLMS'], /--scheduler must be/],
      [['--image', join(PROJECT_ROOT, 'package.json'), '--prompt', 'x', '--generator', 'numpy'], /--generator must be one of TORCH, XOSHIRO \(got "numpy"\)/],
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

  it('reads relative paths from the folder `npm run edit` was run in, and names the resolved path it could not read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-cwd-'));
    writeFileSync(join(dir, 'rel.png'), await solidPng(16, 16, [200, 60, 30]));
    // npm runs the script in the project root; the caller's folder is INIT_CWD.
    const npm = (args: string[]) =>
      spawnSync('npm', ['--prefix', PROJECT_ROOT, 'run', '--silent', 'edit', '--', ...args], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
    const ok = npm(['--image', 'rel.png', '--prompt', 'invert', '--size', '16x16', '--steps', '2', '--out', 'edited']);
    assert.equal(ok.status, 0, ok.stderr);
    assert.ok(existsSync(join(dir, 'edited', 'rel-0.png')), ok.stdout);
    const missing = npm(['--image', 'nope/missing.png', '--prompt', 'invert']);
    assert.equal(missing.status, 2);
    const lines = missing.stderr.split('\n').filter((l) => l.trim() && !l.startsWith('npm warn'));
    assert.equal(lines[0], `cannot read --image ${join(dir, 'nope/missing.png')} (given as nope/missing.png): no such file (ENOENT)`);
    assert.equal(lines.filter((l) => l.startsWith('usage:')).length, 1, missing.stderr);
    assert.ok(lines.length <= 3, `one line of usage, not the whole help:\n${missing.stderr}`);
  });

  it('checks inputs and the output folder before any model loads', async () => {
    // A model folder whose catalogue (JSON and declared ONNX ports) is valid but whose sessions
    // cannot load (an operator ONNX Runtime does not have): exit 2 (not 1) proves each refusal
    // came before the model load.
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    const models = join(dir, 'models');
    cpSync(join(PROJECT_ROOT, 'models', 'tiny-edit'), join(models, 'tiny-edit'), { recursive: true });
    const g = new GraphBuilder('unet');
    const sample = g.input('sample', 'float32', ['batch_size', 8, 'height', 'width']);
    g.input('timestep', 'float32', ['batch_size']);
    g.input('encoder_hidden_states', 'float32', ['batch_size', 'sequence_length', 16]);
    g.output('out_sample', g.op1('NoSuchOperator', [sample]), 'float32', ['batch_size', 4, 'height', 'width']);
    writeFileSync(join(models, 'tiny-edit', 'unet', 'model.onnx'), g.toBytes());
    writeFileSync(join(dir, 'a.png'), await solidPng(16, 16, [10, 20, 30]));
    writeFileSync(join(dir, 'truncated.png'), (await solidPng(16, 16, [10, 20, 30])).subarray(0, 20));
    const base = ['--models-dir', models, '--prompt', 'sepia', '--size', '16x16', '--steps', '1'];
    const cases: [string[], RegExp][] = [
      [['--image', join(dir, 'a.png'), '--out', '/proc/nope'], /cannot write to --out \/proc\/nope/],
      [['--image', join(dir, 'a.png'), '--out', join(PROJECT_ROOT, 'README.md')], /cannot write to --out .*README\.md: .*README\.md is not a folder/],
      [['--image', join(dir, 'a.png'), '--out', join(PROJECT_ROOT, 'README.md', 'sub')], /is not a folder/],
      [['--image', join(dir, 'missing.png'), '--out', join(dir, 'out')], /cannot read --image .*missing\.png: no such file \(ENOENT\)/],
      [['--image', dir, '--out', join(dir, 'out')], /cannot read --image .*: a folder, not a file \(EISDIR\)/],
      [['--image', join(dir, 'truncated.png'), '--out', join(dir, 'out')], /INVALID_IMAGE.*truncated\.png/],
    ];
    for (const [args, message] of cases) {
      const r = cli([...base, ...args]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    assert.ok(!existsSync(join(dir, 'out')), 'no output folder is made for a run refused on its inputs');
    // The same model folder with valid arguments does reach the model load, and fails there.
    const load = cli([...base, '--image', join(dir, 'a.png'), '--out', join(dir, 'out')]);
    assert.equal(load.status, 1, load.stderr);
  });

  it('takes --memory-budget (else MEMORY_BUDGET_MB) strictly, and refuses an output that cannot fit before the model loads', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    writeFileSync(join(dir, 'a.png'), await solidPng(64, 64, [200, 60, 30]));
    const base = ['--image', join(dir, 'a.png'), '--prompt', 'sepia', '--steps', '1', '--out', join(dir, 'out')];
    const run = (args: string[], env: Record<string, string> = {}) =>
      spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src/cli/edit.ts'), ...args], {
        cwd: PROJECT_ROOT,
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, MEMORY_BUDGET_MB: '', ...env },
      });
    for (const [args, env, message] of [
      [['--memory-budget', 'lots'], {}, /--memory-budget must be a positive integer of MiB \(got "lots"\)/],
      [['--memory-budget', '0'], {}, /--memory-budget must be a positive integer/],
      [['--memory-budget', '1e3'], {}, /--memory-budget must be a positive integer/],
      [[], { MEMORY_BUDGET_MB: '12x' }, /MEMORY_BUDGET_MB must be a positive integer of MiB \(got "12x"\)/],
    ] as [string[], Record<string, string>, RegExp][]) {
      const r = run([...base, ...args], env);
      assert.equal(r.status, 2, `${args.join(' ')} ${JSON.stringify(env)}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    // tiny-edit plans ~152 MiB per 512² output: 100 MiB (64 reserved for the stage thread, 3 for the decoded input) fits a smaller square only.
    for (const [args, env] of [
      [['--memory-budget', '100'], {}],
      [[], { MEMORY_BUDGET_MB: '100' }],
      [['--memory-budget', '100'], { MEMORY_BUDGET_MB: '100000' }],
    ] as [string[], Record<string, string>][]) {
      const r = run([...base, '--size', '512x512', ...args], env);
      assert.equal(r.status, 2, r.stderr);
      assert.match(
        r.stderr,
        /error \(IMAGE_TOO_LARGE\): one 512x512 output needs about \d+ MiB, over the memory budget of \d+ MiB; the largest square that fits is (\d+)x\1/,
      );
      assert.doesNotMatch(r.stderr, /loading model/, 'refused before the model loads');
    }
    const fits = run([...base, '--size', '64x64', '--memory-budget', '100']);
    assert.equal(fits.status, 0, fits.stderr);
    assert.match(fits.stderr, /loading model tiny-edit…/);
  });

  it('keeps existing output files unless --overwrite', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    writeFileSync(join(dir, 'a.png'), await solidPng(16, 16, [200, 60, 30]));
    const out = join(dir, 'out');
    const args = ['--image', join(dir, 'a.png'), '--prompt', 'sepia', '--size', '16x16', '--steps', '1', '--n', '2', '--out', out];
    writeFileSync(join(dir, 'placeholder'), '');
    cpSync(join(dir, 'placeholder'), join(out, 'a-1.png'));
    const refused = cli(args);
    assert.equal(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, /would overwrite .*a-1\.png \(pass --overwrite/);
    assert.doesNotMatch(refused.stderr, /a-0\.png/);
    assert.equal(readFileSync(join(out, 'a-1.png')).length, 0, 'the existing file is untouched');
    assert.ok(!existsSync(join(out, 'a-0.png')), 'nothing is written when one output would be overwritten');
    const replaced = cli([...args, '--overwrite']);
    assert.equal(replaced.status, 0, replaced.stderr);
    assert.ok(readFileSync(join(out, 'a-1.png')).length > 0);
    assert.ok(existsSync(join(out, 'a-0.png')));
  });

  it('stops promptly on SIGTERM and SIGINT while denoising', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    writeFileSync(join(dir, 'a.png'), await solidPng(32, 32, [200, 60, 30]));
    for (const [signal, status] of [
      ['SIGTERM', 143],
      ['SIGINT', 130],
    ] as const) {
      // Long enough (over a minute) that only the signal can end it soon.
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          join(PROJECT_ROOT, 'src/cli/edit.ts'),
          '--image',
          join(dir, 'a.png'),
          '--prompt',
          'sepia',
          '--size',
          '512x512',
          '--steps',
          '100',
          '--n',
          '4',
          '--out',
          join(dir, 'out'),
          '--overwrite',
        ],
        { cwd: PROJECT_ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      // The last denoising step reported when the signal went (null: not yet sent).
      let stepAtSignal: number | null = null;
      const lastStep = (): number => Math.max(0, ...[...stderr.matchAll(/denoising \[[#-]*\] (\d+)\/100/g)].map((m) => Number(m[1])));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk;
        if (stepAtSignal === null && stderr.includes('denoising')) {
          stepAtSignal = lastStep();
          child.kill(signal);
        }
      });
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      assert.ok(stepAtSignal !== null, stderr);
      assert.equal(code, status, stderr);
      assert.match(stderr, new RegExp(`interrupted \\(${signal}\\)`));
      // Promptly: the signal ends the denoising loop (it does not wait for the run to end), and nothing is written.
      assert.ok(lastStep() < 100, `${signal}: denoising went on from step ${stepAtSignal} to ${lastStep()} of 100 after the signal`);
      assert.ok(!existsSync(join(dir, 'out')) || readdirSync(join(dir, 'out')).length === 0, 'no output written');
    }
  });
});
