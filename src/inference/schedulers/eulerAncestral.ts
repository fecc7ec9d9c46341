/**
 * Euler ancestral sampler (diffusers' EulerAncestralDiscreteScheduler): each step goes
 * deterministically down to σ_down and then re-injects fresh noise of std σ_up, chosen so that
 * σ_down² + σ_up² = σ_next², i.e. the sample lands exactly at noise level σ_next.
 */

import { SigmaScheduler, assertSameLength, x0Coefficients } from './euler.js';
import type { SchedulerStepResult } from './types.js';

/** Split of the next noise level into the deterministic and the re-injected part (eta = 1). */
export function ancestralSigmas(sigmaFrom: number, sigmaTo: number): { sigmaUp: number; sigmaDown: number } {
  const from2 = sigmaFrom * sigmaFrom;
  const to2 = sigmaTo * sigmaTo;
  const sigmaUp = Math.sqrt((to2 * (from2 - to2)) / from2);
  // max(0, …) only guards a −1e-17 rounding residue from turning into NaN.
  const sigmaDown = Math.sqrt(Math.max(0, to2 - sigmaUp * sigmaUp));
  return { sigmaUp, sigmaDown };
}

export class EulerAncestralDiscreteScheduler extends SigmaScheduler {
  readonly name = 'EULER_ANCESTRAL' as const;
  readonly isStochastic = true;

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: Float32Array): SchedulerStepResult {
    assertSameLength('modelOutput', modelOutput, sample);
    if (noise === undefined) {
      throw new Error('EULER_ANCESTRAL: step needs a standard-normal `noise` array (isStochastic is true)');
    }
    assertSameLength('noise', noise, sample);
    const index = this.ensureStepIndex(timestep);
    const sigma = this.sigmas[index]!;
    const { sigmaUp, sigmaDown } = ancestralSigmas(sigma, this.sigmas[index + 1]!);
    const [a, b] = x0Coefficients(this.config.prediction_type, sigma);
    const r = (sigmaDown - sigma) / sigma;
    const n = sample.length;
    const prevSample = new Float32Array(n);
    const predOriginalSample = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const x = sample[i]!;
      const x0 = a * x + b * modelOutput[i]!;
      predOriginalSample[i] = x0;
      prevSample[i] = x + (x - x0) * r + noise[i]! * sigmaUp;
    }
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample };
  }
}
