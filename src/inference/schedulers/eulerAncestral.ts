/**
 * Euler ancestral sampler (diffusers' EulerAncestralDiscreteScheduler): each step goes
 * deterministically down to σ_down and then re-injects fresh noise of std σ_up, chosen so that
 * σ_down² + σ_up² = σ_next², i.e. the sample lands exactly at noise level σ_next.
 */

import { SigmaScheduler, assertSameLength } from './euler.js';
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

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: Float32Array, out?: SchedulerStepResult): SchedulerStepResult {
    if (noise === undefined) {
      throw new Error('EULER_ANCESTRAL: step needs a standard-normal `noise` array (isStochastic is true)');
    }
    assertSameLength('noise', noise, sample);
    return this.eulerUpdate(
      modelOutput,
      timestep,
      sample,
      (sigma, sigmaNext) => {
        const { sigmaUp, sigmaDown } = ancestralSigmas(sigma, sigmaNext);
        return { sigmaTarget: sigmaDown, noiseScale: sigmaUp };
      },
      noise,
      out,
    );
  }
}
