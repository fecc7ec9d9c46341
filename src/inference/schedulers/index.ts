/**
 * Scheduler factory, `scheduler_config.json` parsing and the mapping from a folder's diffusers
 * class to our names.
 *
 * Parsing follows diffusers' `from_config`: a config written for one class can drive another. Keys
 * of other classes are ignored; missing keys get the defaults of the class `createScheduler` will
 * build (so an SD 1.5 config, which has no timestep_spacing, runs Euler with 'linspace' but DDIM and
 * PNDM with 'leading'); a key of that class whose non-default meaning is not implemented is refused.
 */

import { DDIMScheduler } from './ddim.js';
import { EulerDiscreteScheduler } from './euler.js';
import { DPMSolverMultistepScheduler } from './dpmSolverMultistep.js';
import { EulerAncestralDiscreteScheduler } from './eulerAncestral.js';
import { LCMScheduler } from './lcm.js';
import { PNDMScheduler } from './pndm.js';
import { SCHEDULER_NAMES } from './types.js';
import type { BetaSchedule, FinalSigmasType, PredictionType, Scheduler, SchedulerConfig, SchedulerName, SolverType, TimestepSpacing } from './types.js';

export * from './types.js';
export { DDIMScheduler } from './ddim.js';
export { EulerDiscreteScheduler, SigmaScheduler } from './euler.js';
export { EulerAncestralDiscreteScheduler, ancestralSigmas } from './eulerAncestral.js';
export { PNDMScheduler } from './pndm.js';
export { DPMSolverMultistepScheduler, dpmTimesteps, karrasSigmas, sigmaToTimestep } from './dpmSolverMultistep.js';
export { LCMScheduler, lcmBoundaryScalings } from './lcm.js';
export { alphasCumprod, betasForAlphaBar, betasForSchedule, sigmasFromAlphasCumprod } from './betas.js';
export { inferenceTimesteps, interpOnIndexGrid, roundHalfEven } from './timesteps.js';

export function createScheduler(name: SchedulerName, config: SchedulerConfig): Scheduler {
  switch (name) {
    case 'EULER':
      return new EulerDiscreteScheduler(config);
    case 'EULER_ANCESTRAL':
      return new EulerAncestralDiscreteScheduler(config);
    case 'DDIM':
      return new DDIMScheduler(config);
    case 'PNDM':
      return new PNDMScheduler(config);
    case 'DPMPP_2M':
      return new DPMSolverMultistepScheduler(config, false);
    case 'DPMPP_2M_KARRAS':
      return new DPMSolverMultistepScheduler(config, true);
    case 'LCM':
      return new LCMScheduler(config);
    default: {
      const unknown: never = name;
      throw new Error(`Unknown scheduler ${JSON.stringify(unknown)}; expected one of ${SCHEDULER_NAMES.join(', ')}`);
    }
  }
}

const BETA_SCHEDULES: readonly BetaSchedule[] = ['linear', 'scaled_linear', 'squaredcos_cap_v2'];
const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'v_prediction', 'sample'];
const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['linspace', 'leading', 'trailing'];

type ClassKey = Exclude<
  keyof SchedulerConfig,
  'num_train_timesteps' | 'beta_start' | 'beta_end' | 'beta_schedule' | 'prediction_type' | 'timestep_spacing' | 'steps_offset' | 'trained_betas'
>;

interface ClassSpec {
  /** The diffusers class whose config keys and defaults apply. */
  className: string;
  betas: { beta_start: number; beta_end: number; beta_schedule: BetaSchedule };
  timestepSpacing: TimestepSpacing;
  /** This class's own keys that we implement, with diffusers' defaults. */
  reads: Partial<Pick<SchedulerConfig, ClassKey>>;
  /** This class's keys that we do not implement, with the value that means "off". */
  unsupported: Readonly<Record<string, unknown>>;
  predictionTypes: readonly PredictionType[];
}

const SD_BETAS = { beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear' } as const;
const DPM: Omit<ClassSpec, 'className'> = {
  betas: SD_BETAS,
  timestepSpacing: 'linspace',
  // algorithm_type, solver_order and use_karras_sigmas are what the name chooses (dpmsolver++, 2, and
  // Karras for DPMPP_2M_KARRAS only), so they are not read; see schedulerForClassName.
  reads: { solver_type: 'midpoint', lower_order_final: true, euler_at_final: false, final_sigmas_type: 'zero' },
  unsupported: {
    thresholding: false,
    use_exponential_sigmas: false,
    use_beta_sigmas: false,
    use_lu_lambdas: false,
    use_flow_sigmas: false,
    use_dynamic_shifting: false,
    rescale_betas_zero_snr: false,
    variance_type: undefined,
    lambda_min_clipped: -Infinity,
  },
  predictionTypes: PREDICTION_TYPES,
};

const CLASSES: Readonly<Record<SchedulerName, ClassSpec>> = {
  EULER: {
    className: 'EulerDiscreteScheduler',
    betas: SD_BETAS,
    timestepSpacing: 'linspace',
    reads: {},
    unsupported: {
      use_karras_sigmas: false,
      use_exponential_sigmas: false,
      use_beta_sigmas: false,
      rescale_betas_zero_snr: false,
      interpolation_type: 'linear',
      timestep_type: 'discrete',
      final_sigmas_type: 'zero',
    },
    predictionTypes: PREDICTION_TYPES,
  },
  EULER_ANCESTRAL: {
    className: 'EulerAncestralDiscreteScheduler',
    betas: SD_BETAS,
    timestepSpacing: 'linspace',
    reads: {},
    unsupported: { rescale_betas_zero_snr: false },
    predictionTypes: PREDICTION_TYPES,
  },
  DDIM: {
    className: 'DDIMScheduler',
    betas: SD_BETAS,
    timestepSpacing: 'leading',
    reads: { set_alpha_to_one: true, clip_sample: true, clip_sample_range: 1 },
    unsupported: { thresholding: false, rescale_betas_zero_snr: false },
    predictionTypes: PREDICTION_TYPES,
  },
  PNDM: {
    className: 'PNDMScheduler',
    betas: SD_BETAS,
    timestepSpacing: 'leading',
    reads: { skip_prk_steps: false, set_alpha_to_one: false },
    unsupported: {},
    predictionTypes: ['epsilon', 'v_prediction'],
  },
  DPMPP_2M: { className: 'DPMSolverMultistepScheduler', ...DPM },
  DPMPP_2M_KARRAS: { className: 'DPMSolverMultistepScheduler', ...DPM },
  LCM: {
    className: 'LCMScheduler',
    betas: { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear' },
    timestepSpacing: 'leading',
    reads: { original_inference_steps: 50, timestep_scaling: 10, clip_sample: false, clip_sample_range: 1 },
    unsupported: { thresholding: false, rescale_betas_zero_snr: false },
    predictionTypes: PREDICTION_TYPES,
  },
};

function fail(key: string, value: unknown, expected: string): never {
  throw new Error(`Invalid scheduler config: "${key}" is ${JSON.stringify(value)}, expected ${expected}`);
}

/**
 * Validates a parsed `scheduler_config.json` for the scheduler `scheduler` (EULER when omitted)
 * and fills diffusers' defaults of that scheduler's class for missing (or null) keys.
 */
export function parseSchedulerConfig(json: unknown, scheduler: SchedulerName = 'EULER'): SchedulerConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`Invalid scheduler config: expected a JSON object, got ${Array.isArray(json) ? 'an array' : String(json)}`);
  }
  const spec = CLASSES[scheduler];
  if (!spec) throw new Error(`Unknown scheduler ${JSON.stringify(scheduler)}; expected one of ${SCHEDULER_NAMES.join(', ')}`);
  const raw = json as Record<string, unknown>;
  const get = (key: string): unknown => (raw[key] === null ? undefined : raw[key]);

  const int = (key: string, fallback: number, min: number): number => {
    const v = get(key) ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) fail(key, v, `an integer >= ${min}`);
    return v;
  };
  const num = (key: string, fallback: number, ok: (v: number) => boolean, expected: string): number => {
    const v = get(key) ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) fail(key, v, expected);
    return v;
  };
  const oneOf = <T extends string>(key: string, fallback: T, allowed: readonly T[]): T => {
    const v = get(key) ?? fallback;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      fail(key, v, `one of ${allowed.map((a) => `"${a}"`).join(', ')}`);
    }
    return v as T;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = get(key) ?? fallback;
    if (typeof v !== 'boolean') fail(key, v, 'true or false');
    return v;
  };

  for (const [key, off] of Object.entries(spec.unsupported)) {
    const v = get(key);
    if (v !== undefined && v !== off) {
      throw new Error(
        `Unsupported scheduler config for ${scheduler} (${spec.className}): "${key}" is ${JSON.stringify(v)}; only ${off === undefined ? 'null' : JSON.stringify(off)} is implemented`,
      );
    }
  }

  const numTrain = int('num_train_timesteps', 1000, 1);
  let trainedBetas: number[] | null = null;
  const tb = get('trained_betas');
  if (tb !== undefined) {
    if (!Array.isArray(tb) || tb.some((b) => typeof b !== 'number' || !Number.isFinite(b) || b < 0 || b >= 1)) {
      fail('trained_betas', tb, 'null or an array of numbers in [0, 1)');
    }
    if (tb.length !== numTrain) {
      throw new Error(`Invalid scheduler config: "trained_betas" has ${tb.length} entries but num_train_timesteps is ${numTrain}`);
    }
    trainedBetas = tb as number[];
  }

  const config: SchedulerConfig = {
    num_train_timesteps: numTrain,
    beta_start: num('beta_start', spec.betas.beta_start, (v) => v >= 0 && v < 1, 'a number in [0, 1)'),
    beta_end: num('beta_end', spec.betas.beta_end, (v) => v > 0 && v < 1, 'a number in (0, 1)'),
    beta_schedule: oneOf('beta_schedule', spec.betas.beta_schedule, BETA_SCHEDULES),
    prediction_type: oneOf('prediction_type', 'epsilon', spec.predictionTypes),
    timestep_spacing: oneOf('timestep_spacing', spec.timestepSpacing, TIMESTEP_SPACINGS),
    steps_offset: int('steps_offset', 0, 0),
    trained_betas: trainedBetas,
  };
  const r = spec.reads;
  if (r.set_alpha_to_one !== undefined) config.set_alpha_to_one = bool('set_alpha_to_one', r.set_alpha_to_one);
  if (r.clip_sample !== undefined) config.clip_sample = bool('clip_sample', r.clip_sample);
  if (r.clip_sample_range !== undefined) config.clip_sample_range = num('clip_sample_range', r.clip_sample_range, (v) => v > 0, 'a positive number');
  if (r.skip_prk_steps !== undefined) config.skip_prk_steps = bool('skip_prk_steps', r.skip_prk_steps);
  if (r.solver_type !== undefined) config.solver_type = oneOf<SolverType>('solver_type', r.solver_type, ['midpoint', 'heun']);
  if (r.lower_order_final !== undefined) config.lower_order_final = bool('lower_order_final', r.lower_order_final);
  if (r.euler_at_final !== undefined) config.euler_at_final = bool('euler_at_final', r.euler_at_final);
  if (r.final_sigmas_type !== undefined) {
    config.final_sigmas_type = oneOf<FinalSigmasType>('final_sigmas_type', r.final_sigmas_type, ['zero', 'sigma_min']);
  }
  if (r.original_inference_steps !== undefined) {
    config.original_inference_steps = int('original_inference_steps', r.original_inference_steps, 1);
    if (config.original_inference_steps > numTrain) {
      fail('original_inference_steps', config.original_inference_steps, `at most num_train_timesteps (${numTrain})`);
    }
  }
  if (r.timestep_scaling !== undefined) config.timestep_scaling = num('timestep_scaling', r.timestep_scaling, (v) => v > 0, 'a positive number');
  return config;
}

/** Closest scheduler for diffusers classes we do not implement, by family. */
const FALLBACKS: ReadonlyArray<[RegExp, SchedulerName]> = [
  [/^(UniPC|DEIS|DPMSolverSinglestep|DPMSolverSDE|KDPM2)/, 'DPMPP_2M'],
  [/^DDPM/, 'DDIM'],
  [/^TCD/, 'LCM'],
];

/** The DPM-Solver variant both DPMPP_2M names run, whatever the config says. */
const DPM_VARIANT: Readonly<Record<string, unknown>> = { algorithm_type: 'dpmsolver++', solver_order: 2 };

/**
 * Our scheduler for a folder's `scheduler_config.json` `_class_name` (and, for DPM-Solver, its
 * `use_karras_sigmas`): the same class where we implement it. A class we do not implement, or a
 * DPM-Solver variant other than dpmsolver++ of order 2, maps to the closest scheduler with a
 * warning saying so.
 */
export function schedulerForClassName(className: string, config: Readonly<Record<string, unknown>> = {}): { name: SchedulerName; warning: string | null } {
  if (className === 'DPMSolverMultistepScheduler') {
    const name: SchedulerName = config.use_karras_sigmas === true ? 'DPMPP_2M_KARRAS' : 'DPMPP_2M';
    const differs = Object.keys(DPM_VARIANT)
      .filter((key) => config[key] != null && config[key] !== DPM_VARIANT[key])
      .map((key) => `${key} ${JSON.stringify(config[key])}`);
    const warning = differs.length ? `${className} with ${differs.join(' and ')} is not implemented; using ${name} (dpmsolver++, solver_order 2)` : null;
    return { name, warning };
  }
  const exact = (Object.keys(CLASSES) as SchedulerName[]).find((n) => CLASSES[n].className === className);
  if (exact) return { name: exact, warning: null };
  const name = FALLBACKS.find(([re]) => re.test(className))?.[1] ?? 'EULER';
  const what = className ? `scheduler class ${className}` : 'a scheduler config without _class_name';
  return { name, warning: `${what} is not implemented; using ${name} (${CLASSES[name].className}) instead` };
}
