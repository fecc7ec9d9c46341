/**
 * Scheduler factory and `scheduler_config.json` parsing.
 *
 * Missing keys get the defaults of the diffusers class that `createScheduler` will build, the way
 * diffusers' `from_config` fills them: notably an SD 1.5 config (which has no timestep_spacing)
 * runs Euler with 'linspace' but DDIM with 'leading'.
 */

import { DDIMScheduler } from './ddim.js';
import { EulerDiscreteScheduler } from './euler.js';
import { EulerAncestralDiscreteScheduler } from './eulerAncestral.js';
import type {
  BetaSchedule,
  PredictionType,
  Scheduler,
  SchedulerConfig,
  SchedulerName,
  TimestepSpacing,
} from './types.js';

export * from './types.js';
export { DDIMScheduler } from './ddim.js';
export { EulerDiscreteScheduler, SigmaScheduler } from './euler.js';
export { EulerAncestralDiscreteScheduler, ancestralSigmas } from './eulerAncestral.js';
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
    default: {
      const unknown: never = name;
      throw new Error(`Unknown scheduler ${JSON.stringify(unknown)}; expected one of EULER_ANCESTRAL, EULER, DDIM`);
    }
  }
}

const BETA_SCHEDULES: readonly BetaSchedule[] = ['linear', 'scaled_linear', 'squaredcos_cap_v2'];
const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'v_prediction', 'sample'];
const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['linspace', 'leading', 'trailing'];

/**
 * diffusers options these schedulers do not implement, with the value that means "off". A config
 * asking for anything else would silently sample differently from diffusers, so it is refused.
 */
const UNSUPPORTED_OPTIONS: Readonly<Record<string, unknown>> = {
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  rescale_betas_zero_snr: false,
  thresholding: false,
  interpolation_type: 'linear',
  timestep_type: 'discrete',
  final_sigmas_type: 'zero',
};

function fail(key: string, value: unknown, expected: string): never {
  throw new Error(`Invalid scheduler config: "${key}" is ${JSON.stringify(value)}, expected ${expected}`);
}

/**
 * Validates a parsed `scheduler_config.json` and fills diffusers' defaults for missing (or null)
 * keys. `scheduler` picks whose defaults apply (they differ: DDIM defaults to 'leading' spacing,
 * clip_sample and set_alpha_to_one true); without it the Euler defaults are used. Unknown keys such
 * as `_class_name` or `skip_prk_steps` are ignored.
 */
export function parseSchedulerConfig(json: unknown, scheduler: SchedulerName = 'EULER'): SchedulerConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`Invalid scheduler config: expected a JSON object, got ${Array.isArray(json) ? 'an array' : String(json)}`);
  }
  const raw = json as Record<string, unknown>;
  const get = (key: string): unknown => (raw[key] === null ? undefined : raw[key]);
  const isDdim = scheduler === 'DDIM';

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

  for (const [key, off] of Object.entries(UNSUPPORTED_OPTIONS)) {
    const v = get(key);
    if (v !== undefined && v !== off) {
      throw new Error(
        `Unsupported scheduler config: "${key}" is ${JSON.stringify(v)}; only ${JSON.stringify(off)} is implemented`,
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
      throw new Error(
        `Invalid scheduler config: "trained_betas" has ${tb.length} entries but num_train_timesteps is ${numTrain}`,
      );
    }
    trainedBetas = tb as number[];
  }

  const config: SchedulerConfig = {
    num_train_timesteps: numTrain,
    beta_start: num('beta_start', 0.0001, (v) => v >= 0 && v < 1, 'a number in [0, 1)'),
    beta_end: num('beta_end', 0.02, (v) => v > 0 && v < 1, 'a number in (0, 1)'),
    beta_schedule: oneOf('beta_schedule', 'linear', BETA_SCHEDULES),
    prediction_type: oneOf('prediction_type', 'epsilon', PREDICTION_TYPES),
    timestep_spacing: oneOf('timestep_spacing', isDdim ? 'leading' : 'linspace', TIMESTEP_SPACINGS),
    steps_offset: int('steps_offset', 0, 0),
    set_alpha_to_one: bool('set_alpha_to_one', true),
    clip_sample: bool('clip_sample', true),
    clip_sample_range: num('clip_sample_range', 1, (v) => v > 0, 'a positive number'),
    trained_betas: trainedBetas,
  };
  return config;
}
