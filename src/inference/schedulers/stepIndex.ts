/**
 * diffusers' `_step_index` / `_begin_index` bookkeeping, shared by the schedulers that keep it
 * (Euler, Euler ancestral, DPM-Solver++, LCM, flow-match Euler): the index of the next step is
 * pinned by the run's first call, from the begin index when one is set, else from where that
 * call's timestep sits in the schedule.
 */
import { assertBeginIndex } from './timesteps.js';

export class StepIndex {
  private step: number | null = null;
  private begin: number | null = null;

  constructor(
    /** The scheduler (its name for messages, its current timesteps), read when needed. */
    private readonly owner: { readonly name: string; readonly timesteps: ArrayLike<number> },
    /** Where a timestep sits in the schedule (diffusers' `index_for_timestep`). */
    private readonly indexFor: (timestep: number) => number,
  ) {}

  private length(): number {
    return this.owner.timesteps.length;
  }

  /** The next step's index, or null before the run starts. */
  get current(): number | null {
    return this.step;
  }

  /** The begin index, or null when none is set. */
  get beginIndex(): number | null {
    return this.begin;
  }

  /** A new schedule: no run in progress, no begin index. */
  reset(): void {
    this.step = null;
    this.begin = null;
  }

  setBegin(beginIndex: number): void {
    this.requireTimesteps();
    assertBeginIndex(beginIndex, this.length());
    this.begin = beginIndex;
    this.step = null;
  }

  /** The index of the step at `timestep`, pinned on the run's first call. */
  ensure(timestep: number): number {
    this.requireTimesteps();
    if (this.step === null) this.step = this.begin ?? this.indexFor(timestep);
    if (this.step >= this.length()) throw new RangeError(`${this.owner.name}: all ${this.length()} steps were already taken`);
    return this.step;
  }

  /** Step `index` is done. */
  advance(index: number): void {
    this.step = index + 1;
  }

  /** `add_noise`'s index in the Euler schedulers: a run in progress, else the begin index, else the timestep's place. */
  forNoiseRunFirst(timestep: number): number {
    return this.step ?? this.begin ?? this.indexFor(timestep);
  }

  /** `add_noise`'s index in DPM-Solver++ and flow matching: the timestep's place unless a begin index is set, then the run in progress or the begin index. */
  forNoiseBeginFirst(timestep: number): number {
    return this.begin === null ? this.indexFor(timestep) : (this.step ?? this.begin);
  }

  requireTimesteps(): void {
    if (this.length() === 0) throw new Error(`${this.owner.name}: call setTimesteps before sampling`);
  }
}
