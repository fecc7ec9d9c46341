/**
 * Command-line editing on the built-in (or any) model folder:
 *   npm run edit -- --image a.jpg --image b.png --prompt "sepia" --n 2 --size 512x512 --scheduler EULER --out out/
 * Writes <input name>-<variant>.<format> per output; exit code 2 on bad arguments.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { InferenceEngine } from '../inference/engine.js';
import { resolveEditOptions } from '../inference/request.js';
import { InferenceError } from '../inference/errors.js';
import type { SchedulerName } from '../inference/schedulers/types.js';
import type { OutputFormat } from '../inference/imageIO.js';
import { defaultModelsDir } from '../config.js';
import { ProgressBar } from './progressBar.js';

const USAGE = `usage: npm run edit -- --image <file> [--image <file> ...] --prompt <text> [options]

  --image <file>            input image (repeatable; PNG, JPEG, WebP, AVIF, TIFF, GIF)
  --prompt <text>           edit instruction for every image
  --image-prompt <text>     per-image instruction, one per --image in order (repeatable)
  --negative-prompt <text>
  --n <int>                 variants per input image (default 1)
  --size <WxH|auto>         output size (default: the model's)
  --steps <int>             denoise steps
  --guidance <float>        text guidance scale
  --image-guidance <float>  image guidance scale (InstructPix2Pix)
  --strength <float>        img2img strength, 0 < s <= 1
  --seed <int>              base seed
  --scheduler <name>        EULER_ANCESTRAL | EULER | DDIM
  --model <id>              model id (default: the default model)
  --models-dir <dir>        folder of model folders (default: MODELS_DIR, else the project's models/)
  --format <png|jpeg|webp>  output format (default png)
  --quality <1-100>         JPEG/WebP quality
  --out <dir>               output folder (default ./out)`;

class UsageError extends Error {}

function numberArg(name: string, value: string | undefined, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new UsageError(`--${name} must be ${integer ? 'an integer' : 'a number'} (got "${value}")`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        image: { type: 'string', multiple: true },
        prompt: { type: 'string' },
        'image-prompt': { type: 'string', multiple: true },
        'negative-prompt': { type: 'string' },
        n: { type: 'string' },
        size: { type: 'string' },
        steps: { type: 'string' },
        guidance: { type: 'string' },
        'image-guidance': { type: 'string' },
        strength: { type: 'string' },
        seed: { type: 'string' },
        scheduler: { type: 'string' },
        model: { type: 'string' },
        'models-dir': { type: 'string' },
        format: { type: 'string' },
        quality: { type: 'string' },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let engine: InferenceEngine | undefined;
  try {
    const images = values.image ?? [];
    if (images.length === 0) throw new UsageError('at least one --image is required');
    if (values.prompt === undefined && !values['image-prompt']) throw new UsageError('--prompt is required');
    const scheduler = values.scheduler?.toUpperCase();
    if (scheduler !== undefined && !['EULER_ANCESTRAL', 'EULER', 'DDIM'].includes(scheduler)) throw new UsageError(`--scheduler must be EULER_ANCESTRAL, EULER or DDIM (got "${values.scheduler}")`);
    const format = values.format?.toLowerCase().replace('jpg', 'jpeg');
    if (format !== undefined && !['png', 'jpeg', 'webp'].includes(format)) throw new UsageError(`--format must be png, jpeg or webp (got "${values.format}")`);
    const inputs = images.map((path) => {
      try {
        return { bytes: new Uint8Array(readFileSync(path)), name: path };
      } catch {
        throw new UsageError(`cannot read --image ${path}`);
      }
    });
    engine = await InferenceEngine.start({ modelsDir: resolve(values['models-dir'] ?? process.env.MODELS_DIR ?? defaultModelsDir()), threading: 'inline' });
    const spec = engine.model(values.model ?? null);
    const edit = resolveEditOptions(spec, inputs.length, {
      prompt: values.prompt ?? '',
      prompts: values['image-prompt'] ?? null,
      negativePrompt: values['negative-prompt'],
      n: numberArg('n', values.n, true),
      size: values.size,
      steps: numberArg('steps', values.steps, true),
      guidanceScale: numberArg('guidance', values.guidance, false),
      imageGuidanceScale: numberArg('image-guidance', values['image-guidance'], false),
      strength: numberArg('strength', values.strength, false),
      seed: numberArg('seed', values.seed, true),
      scheduler: scheduler as SchedulerName | undefined,
      outputFormat: format as OutputFormat | undefined,
      outputQuality: numberArg('quality', values.quality, true),
    });
    const bar = new ProgressBar();
    const output = await engine.edit(spec.id, edit, inputs, { onProgress: (u) => bar.update(u.step, u.totalSteps) });
    bar.done();
    const outDir = resolve(values.out ?? 'out');
    mkdirSync(outDir, { recursive: true });
    const stems = inputs.map((i) => basename(i.name, extname(i.name)));
    const ext = edit.outputFormat === 'jpeg' ? 'jpg' : edit.outputFormat;
    for (const image of output.images) {
      // Two inputs with the same file name get their input index to keep outputs apart.
      const stem = stems.filter((s) => s === stems[image.inputIndex]).length > 1 ? `${stems[image.inputIndex]}.${image.inputIndex}` : stems[image.inputIndex];
      const path = join(outDir, `${stem}-${image.variant}.${ext}`);
      writeFileSync(path, image.bytes);
      console.log(`${path}  ${image.width}x${image.height}  seed ${image.seed}`);
    }
    const u = output.usage;
    console.log(`model ${spec.id}: ${u.inputImages} input(s) → ${u.generatedImages} image(s), ${u.steps} steps in ${u.batches} batch(es), ${u.processingTimeSeconds.toFixed(2)} s`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof InferenceError && ['BAD_USER_INPUT', 'NOT_FOUND', 'INVALID_IMAGE', 'IMAGE_TOO_LARGE'].includes(err.code)) {
      console.error(`error (${err.code}): ${err.message}`);
      return 2;
    }
    console.error(`error: ${(err as Error).message}`);
    return 1;
  } finally {
    await engine?.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
