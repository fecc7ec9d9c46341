/**
 * Command-line editing on the built-in (or any) model folder:
 *   npm run edit -- --image a.jpg --image b.png --prompt "sepia" --n 2 --size 512x512 --scheduler EULER --out out/
 * Writes <input name>-<variant>.<format> per output. Arguments, inputs and the output folder are
 * checked before any model loads. Exit status: 0 done, 2 bad arguments, inputs or output folder
 * (or an output file that exists, without --overwrite), 1 any other failure, 128 + the signal's
 * number after SIGINT/SIGTERM.
 */
import { existsSync, readFileSync, statSync, mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { InferenceEngine } from '../inference/engine.js';
import { ModelCatalogue } from '../inference/catalogue.js';
import { checkReferenceCount, resolveEditOptions, resolveReferences } from '../inference/request.js';
import { checkPromptGiven } from '../inference/prompts.js';
import { InferenceError } from '../inference/errors.js';
import { ModelFolderError } from '../inference/modelFolder.js';
import { EDIT_SCHEDULER_NAMES, type EditSchedulerName } from '../inference/schedulers/types.js';
import { DEFAULT_NOISE_GENERATOR, isNoiseGeneratorName, NOISE_GENERATORS } from '../inference/random.js';
import { ImageDecodeError, SIZE_FITS, isOutputFormat, outputFormatList, probeImage, type OutputFormat, type SizeFit } from '../inference/imageIO.js';
import { callerDir, defaultModelsDir, optimizedCacheDir } from '../config.js';
import { ProgressBar } from './progressBar.js';

const USAGE_LINE = 'usage: npm run edit -- --image <file> [--image <file> ...] --prompt <text> [options]';
const USAGE = `${USAGE_LINE}

  --image <file>            input image (repeatable; PNG, JPEG, WebP, AVIF, TIFF, GIF)
  --reference <file>        reference image (repeatable; models that condition one output on
                            several images, e.g. Qwen-Image-Edit Plus): each --image is edited
                            with [references..., that image], so "Picture 1" is the first reference
  --mask <file>             where to edit, one per --image in order (repeatable; white or
                            transparent edits, black or opaque keeps; the image's size)
  --mask-blur <int>         feather mask edges: Gaussian sigma in output pixels (default 0)
  --prompt <text>           edit instruction for every image
  --image-prompt <text>     per-image instruction, one per --image in order (repeatable)
  --negative-prompt <text>
  --n <int>                 variants per input image (default 1)
  --size <WxH|auto>         output size (default auto: each input's own, snapped to the model's
                            multiple); a changed size is reported as a warning
  --fit <${SIZE_FITS.join('|')}>    an explicit size of another aspect ratio: pad (default;
                            white bars, nothing cut off), crop the centre, or stretch
  --steps <int>             denoise steps
  --guidance <float>        text guidance scale (not on Qwen-Image-Edit: use --true-cfg-scale)
  --image-guidance <float>  image guidance scale (InstructPix2Pix)
  --strength <float>        img2img strength, 0 < s <= 1
  --seed <int>              base seed
  --generator <name>        ${NOISE_GENERATORS.join(' | ')}: what the seed seeds (default ${DEFAULT_NOISE_GENERATOR}:
                            torch.Generator("cpu").manual_seed(seed), as diffusers draws)
  --scheduler <name>        ${EDIT_SCHEDULER_NAMES.join(' | ')}
                            (FLOW_MATCH_EULER: flow models only, which take nothing else)
  --true-cfg-scale <float>  flow models: true CFG against --negative-prompt (> 1 turns it on)
  --max-sequence-length <int>  models with a T5 encoder: T5 tokens (FLUX: up to 512)
  --model <id>              model id (default: the default model)
  --models-dir <dir>        folder of model folders (default: MODELS_DIR, else the project's models/)
  --memory-budget <MiB>     memory one pipeline call may use (default: MEMORY_BUDGET_MB, else half
                            the RAM); an output that cannot fit is refused (IMAGE_TOO_LARGE, exit 2)
                            before the model loads, and larger jobs run in micro-batches
  --format <png|jpeg|webp>  output format (default png)
  --quality <1-100>         JPEG/WebP quality
  --out <dir>               output folder, created if missing (default ./out)
  --overwrite               replace existing output files (default: refuse, exit 2)

Relative paths are read from the folder you run the command in.`;

/** What a refused command line prints after the problem: one line, not the whole help. */
const SHORT_USAGE = `${USAGE_LINE}\n(npm run edit -- --help lists every option)`;

class UsageError extends Error {}

/** Integers are decimal digits with an optional sign; other numbers anything finite Number() reads. */
function numberArg(name: string, value: string | undefined, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || (integer && !/^[+-]?\d+$/.test(value.trim())))
    throw new UsageError(`--${name} must be ${integer ? 'an integer' : 'a number'} (got "${value}")`);
  return n;
}

/** --memory-budget (MiB), else MEMORY_BUDGET_MB, else undefined (the RAM less 6 GiB, at least half); both strict positive integers. */
function memoryBudgetArg(flag: string | undefined, env: string | undefined): number | undefined {
  const [name, raw] = flag !== undefined ? ['--memory-budget', flag] : ['MEMORY_BUDGET_MB', env ?? ''];
  if (flag === undefined && raw === '') return undefined;
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < 1) throw new UsageError(`${name} must be a positive integer of MiB (got "${raw}")`);
  return Number(raw) * 2 ** 20;
}

/**
 * Creates `dir` (and missing parents) and writes a probe file in it. Parents are made one at a
 * time: mkdirSync's recursive mode never returns on some paths (/proc/x on Node 20).
 */
function prepareOutDir(dir: string): void {
  try {
    const missing: string[] = [];
    let existing = dir;
    while (!existsSync(existing) && dirname(existing) !== existing) {
      missing.unshift(existing);
      existing = dirname(existing);
    }
    if (!statSync(existing).isDirectory()) throw new Error(`${existing} is not a folder`);
    for (const folder of missing) mkdirSync(folder);
    const probe = join(dir, `.edit-${process.pid}.tmp`);
    writeFileSync(probe, '');
    unlinkSync(probe);
  } catch (err) {
    throw new UsageError(`cannot write to --out ${dir}: ${(err as Error).message}`);
  }
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        image: { type: 'string', multiple: true },
        mask: { type: 'string', multiple: true },
        reference: { type: 'string', multiple: true },
        'mask-blur': { type: 'string' },
        prompt: { type: 'string' },
        'image-prompt': { type: 'string', multiple: true },
        'negative-prompt': { type: 'string' },
        n: { type: 'string' },
        size: { type: 'string' },
        fit: { type: 'string' },
        steps: { type: 'string' },
        guidance: { type: 'string' },
        'image-guidance': { type: 'string' },
        strength: { type: 'string' },
        seed: { type: 'string' },
        generator: { type: 'string' },
        scheduler: { type: 'string' },
        'true-cfg-scale': { type: 'string' },
        'max-sequence-length': { type: 'string' },
        model: { type: 'string' },
        'models-dir': { type: 'string' },
        'memory-budget': { type: 'string' },
        format: { type: 'string' },
        quality: { type: 'string' },
        out: { type: 'string' },
        overwrite: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n${SHORT_USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let engine: InferenceEngine | undefined;
  try {
    // 1. Arguments.
    const images = values.image ?? [];
    if (images.length === 0) throw new UsageError('at least one --image is required');
    if (values.prompt === undefined && !values['image-prompt']) throw new UsageError('--prompt is required');
    const scheduler = values.scheduler?.toUpperCase();
    if (scheduler !== undefined && !EDIT_SCHEDULER_NAMES.includes(scheduler as EditSchedulerName))
      throw new UsageError(`--scheduler must be one of ${EDIT_SCHEDULER_NAMES.join(', ')} (got "${values.scheduler}")`);
    const generator = values.generator?.toUpperCase();
    if (generator !== undefined && !isNoiseGeneratorName(generator))
      throw new UsageError(`--generator must be one of ${NOISE_GENERATORS.join(', ')} (got "${values.generator}")`);
    const format = values.format?.toLowerCase().replace('jpg', 'jpeg');
    if (format !== undefined && !isOutputFormat(format)) throw new UsageError(`--format must be ${outputFormatList()} (got "${values.format}")`);
    if (values.fit !== undefined && !SIZE_FITS.includes(values.fit as SizeFit))
      throw new UsageError(`--fit must be one of ${SIZE_FITS.join(', ')} (got "${values.fit}")`);
    const masks = values.mask ?? [];
    if (masks.length > images.length) throw new UsageError(`${masks.length} --mask for ${images.length} --image: give at most one mask per image, in order`);
    const numbers = {
      n: numberArg('n', values.n, true),
      steps: numberArg('steps', values.steps, true),
      guidanceScale: numberArg('guidance', values.guidance, false),
      imageGuidanceScale: numberArg('image-guidance', values['image-guidance'], false),
      strength: numberArg('strength', values.strength, false),
      seed: numberArg('seed', values.seed, true),
      outputQuality: numberArg('quality', values.quality, true),
      maskBlur: numberArg('mask-blur', values['mask-blur'], true),
      trueCfgScale: numberArg('true-cfg-scale', values['true-cfg-scale'], false),
      maxSequenceLength: numberArg('max-sequence-length', values['max-sequence-length'], true),
    };
    // 2. Inputs: readable, and image headers that decode within the pixel bound. The catalogue
    // (model folders' JSON, no sessions) resolves the model and its limits.
    // Paths as the caller typed them, from the folder they ran the command in.
    const cwd = callerDir('edit');
    const modelsDir = resolve(cwd, values['models-dir'] || process.env.MODELS_DIR || defaultModelsDir());
    const memoryBudgetBytes = memoryBudgetArg(values['memory-budget'], process.env.MEMORY_BUDGET_MB);
    let catalogue: ModelCatalogue;
    try {
      catalogue = ModelCatalogue.read({ modelsDir, memoryBudgetBytes });
    } catch (err) {
      throw err instanceof ModelFolderError ? new UsageError(err.message) : err;
    }
    const read = async (flag: string, typed: string): Promise<Uint8Array> => (await readProbed(flag, typed)).bytes;
    const readProbed = async (flag: string, typed: string): Promise<{ bytes: Uint8Array; width: number; height: number }> => {
      const path = resolve(cwd, typed);
      let bytes;
      try {
        bytes = new Uint8Array(readFileSync(path));
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        const why = e.code === 'ENOENT' ? 'no such file (ENOENT)' : e.code === 'EISDIR' ? 'a folder, not a file (EISDIR)' : (e.code ?? e.message);
        throw new UsageError(`cannot read --${flag} ${path}${path === typed ? '' : ` (given as ${typed})`}: ${why}`);
      }
      try {
        const { width, height } = await probeImage(bytes, { maxInputPixels: catalogue.maxInputPixels });
        return { bytes, width, height };
      } catch (err) {
        throw err instanceof ImageDecodeError ? new InferenceError(err.code, `--${flag} ${path}: ${err.message}`) : err;
      }
    };
    const read0 = await Promise.all(
      images.map(async (path, i) => ({ bytes: await read('image', path), name: path, mask: masks[i] === undefined ? null : await read('mask', masks[i]!) })),
    );
    const spec = catalogue.model(values.model ?? null);
    checkReferenceCount(spec, values.reference?.length ?? 0);
    const references = await Promise.all((values.reference ?? []).map((path) => readProbed('reference', path)));
    // Every input holds the same reference arrays (EditInput.references).
    const referenceBytes = references.map((r) => r.bytes);
    const inputs = referenceBytes.length ? read0.map((i) => ({ ...i, references: referenceBytes })) : read0;
    spec.family.checkEdit?.(spec, { masks: inputs.some((i) => i.mask) });
    checkPromptGiven(spec, values.prompt ?? '', values['image-prompt'] ?? null);
    const options = {
      prompt: values.prompt ?? '',
      prompts: values['image-prompt'] ?? null,
      negativePrompt: values['negative-prompt'],
      generator,
      size: values.size,
      fit: values.fit as SizeFit | undefined,
      scheduler: scheduler as EditSchedulerName | undefined,
      outputFormat: format as OutputFormat | undefined,
      ...numbers,
    };
    const edit = resolveReferences(spec, resolveEditOptions(spec, inputs.length, options), references);
    // 3. The output folder, and the files this run would write.
    const outDir = resolve(cwd, values.out ?? 'out');
    prepareOutDir(outDir);
    const stems = inputs.map((i) => basename(i.name, extname(i.name)));
    const ext = edit.outputFormat === 'jpeg' ? 'jpg' : edit.outputFormat;
    const outputPath = (inputIndex: number, variant: number): string => {
      // Two inputs with the same file name get their input index to keep outputs apart.
      const stem = stems.filter((s) => s === stems[inputIndex]).length > 1 ? `${stems[inputIndex]}.${inputIndex}` : stems[inputIndex];
      return join(outDir, `${stem}-${variant}.${ext}`);
    };
    if (!values.overwrite) {
      const taken = inputs.flatMap((_, i) => Array.from({ length: edit.n }, (_, v) => outputPath(i, v))).filter((path) => existsSync(path));
      if (taken.length) throw new UsageError(`would overwrite ${taken.join(', ')} (pass --overwrite to replace existing files)`);
    }
    // 4. Only now the model's sessions, loaded by the edit itself once its inputs are decoded and
    // its memory plan fits (an output that cannot fit is refused before the load).
    engine = await InferenceEngine.start({
      modelsDir,
      modelIds: [spec.id],
      threading: 'inline',
      memoryBudgetBytes,
      preloadModels: [],
      optimizedCacheDir: optimizedCacheDir(process.env),
      warmUp: !/^(0|off|false|no)$/i.test((process.env.ORT_WARM_UP ?? '').trim()),
      memPattern: !/^(0|off|false|no)$/i.test((process.env.ORT_MEM_PATTERN ?? '').trim()),
      // Each component's load (for models worth watching), warnings and faults.
      log: (message, level) => level !== 'debug' && console.error(level === 'info' ? message : `${level}: ${message}`),
    });
    // The bar starts with the first step (its ETA must not count the model's load).
    const progress: { bar: ProgressBar | null } = { bar: null };
    const output = await engine.edit(spec.id, edit, inputs, {
      onProgress: (u) => {
        if (u.phase === 'loading-model') console.error(`loading model ${spec.id}…`);
        else (progress.bar ??= new ProgressBar()).update(u.step, u.totalSteps);
      },
    });
    progress.bar?.done();
    for (const image of output.images) {
      const path = outputPath(image.inputIndex, image.variant);
      writeFileSync(path, image.bytes, { flag: values.overwrite ? 'w' : 'wx' });
      console.log(`${path}  ${image.width}x${image.height}  seed ${image.seed}`);
    }
    for (const warning of output.warnings) console.error(`warning: ${warning}`);
    const u = output.usage;
    console.log(
      `model ${spec.id}: ${u.inputImages} input(s) → ${u.generatedImages} image(s), ${u.steps} steps in ${u.batches} batch(es), ${u.processingTimeSeconds.toFixed(2)} s`,
    );
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`${err.message}\n${SHORT_USAGE}`);
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

// SIGINT/SIGTERM end the run at once, at any stage; outputs already written are kept.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\ninterrupted (${signal})`);
    process.exit(128 + constants.signals[signal]);
  });
}

process.exitCode = await main(process.argv.slice(2));
