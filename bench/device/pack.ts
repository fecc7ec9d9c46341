/**
 * `npm run bench:device-pack`: builds what bench/device/run.sh needs on a GPU machine that has no
 * Node, no npm and no network, into bench/device/out/ (git-ignored):
 *   run.sh           the entry point (bench/device/run.sh)
 *   payload.tar.xz   this machine's node binary, gpu.mjs (bench/device/gpu.ts bundled by esbuild) and
 *                    stageWorker.js (the engine's encoder thread, bundled likewise),
 *                    the native parts esbuild cannot bundle (onnxruntime-node with its Linux x64
 *                    libonnxruntime.so.1 and binding, sharp with libvips), the `bench` and `bench-qwen` model folders,
 *                    and the Vulkan loader (Debian's libvulkan1 .deb, fetched with `apt-get download`,
 *                    plus its extracted files) for machines that lack one.
 * Fails if the folder would exceed 64 MiB. `--no-vulkan` leaves the loader out (no apt access).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { build } from 'esbuild';
import { PROJECT_ROOT } from '../../src/config.js';
import { ensureBenchModel } from '../../models/bench.js';

const LIMIT_BYTES = 64 * 2 ** 20;
const withVulkan = !process.argv.includes('--no-vulkan');
const OUT = join(PROJECT_ROOT, 'bench', 'device', 'out');
const STAGE = join(OUT, 'payload');
const modules = join(PROJECT_ROOT, 'node_modules');

/** Package folders (relative to node_modules) gpu.mjs loads at run time, with the parts of each it needs. */
const PACKAGES: Record<string, string[]> = {
  'onnxruntime-node': ['package.json', 'dist', 'bin/napi-v6/linux/x64'],
  'onnxruntime-common': ['package.json', 'dist/cjs'],
  sharp: ['package.json', 'lib', 'node_modules'],
  'detect-libc': ['package.json', 'lib'],
  semver: ['.'],
  '@img/colour': ['.'],
  '@img/sharp-linux-x64': ['package.json', 'lib'],
  '@img/sharp-libvips-linux-x64': ['package.json', 'lib', 'versions.json'],
};

function sizeOf(path: string): number {
  const s = statSync(path);
  if (!s.isDirectory()) return s.size;
  return readdirSync(path).reduce((n, name) => n + sizeOf(join(path, name)), 0);
}

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

async function main(): Promise<void> {
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new Error('the device pack carries Linux x64 binaries: run it on Linux x64');
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(STAGE, { recursive: true });

  await build({
    // The engine's encoder thread loads `stageWorker.js` from beside the bundle (spawnWorker.ts).
    entryPoints: { gpu: join(PROJECT_ROOT, 'bench', 'device', 'gpu.ts'), stageWorker: join(PROJECT_ROOT, 'src', 'inference', 'stageWorker.ts') },
    outdir: STAGE,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['onnxruntime-node', 'sharp'],
    // Bundled CommonJS dependencies call require(): give the ES module one.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    logLevel: 'warning',
  });

  // Both bundles are ES modules: gpu.js is renamed to the .mjs that run.sh starts, and
  // stageWorker.js is read as one through this package.json.
  renameSync(join(STAGE, 'gpu.js'), join(STAGE, 'gpu.mjs'));
  writeFileSync(join(STAGE, 'package.json'), '{ "type": "module" }\n');

  for (const [pkg, parts] of Object.entries(PACKAGES)) {
    for (const part of parts) {
      const from = join(modules, pkg, part);
      if (!existsSync(from)) throw new Error(`missing ${from} (run npm ci)`);
      cpSync(from, join(STAGE, 'node_modules', pkg, part), { recursive: true, dereference: true });
    }
  }
  cpSync(process.execPath, join(STAGE, 'node'));
  cpSync(await ensureBenchModel(), join(STAGE, 'models', 'bench'), { recursive: true });
  cpSync(await ensureBenchModel({ family: 'qwen-image-edit' }), join(STAGE, 'models', 'bench-qwen'), { recursive: true });

  if (withVulkan) {
    const debs = join(STAGE, 'debs');
    mkdirSync(debs, { recursive: true });
    execFileSync('apt-get', ['download', 'libvulkan1'], { cwd: debs, stdio: ['ignore', 'ignore', 'inherit'] });
    for (const deb of readdirSync(debs)) execFileSync('dpkg-deb', ['-x', join(debs, deb), join(STAGE, 'vulkan')]);
  }

  execFileSync('tar', ['-cJf', join(OUT, 'payload.tar.xz'), '-C', STAGE, '.'], { env: { ...process.env, XZ_OPT: '-9 -T0' } });
  const staged = sizeOf(STAGE);
  rmSync(STAGE, { recursive: true, force: true });
  cpSync(join(dirname(OUT), 'run.sh'), join(OUT, 'run.sh'));
  const total = sizeOf(OUT);
  console.log(`bench/device/out: ${mib(total)} (payload ${mib(staged)} before xz)${withVulkan ? '' : ', no Vulkan loader'}`);
  if (total > LIMIT_BYTES) throw new Error(`bench/device/out is ${mib(total)}, over the ${mib(LIMIT_BYTES)} a device run may carry`);
}

await main();
