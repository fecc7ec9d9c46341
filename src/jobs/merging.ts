/**
 * Cross-request batching, decided the same way by both job backends: which queued jobs may share
 * the pipeline call of a head job (jobService.ts takes them from its queue, redisWorker.ts from
 * BullMQ's waiting list).
 */
import type { InferenceEngine } from '../inference/engine.js';
import { decodedInputBytes, decodedReferenceBytes, mergeKey, outputsPerBatch } from '../inference/editRunner.js';
import type { ResolvedEdit } from '../inference/request.js';
import type { EditInput } from '../inference/editRunner.js';

/** A job's declared source pixels: its inputs' (as probed at submission, 0 where unknown) and its reference images' (the edit's `references`). */
export function declaredPixels(inputs: readonly EditInput[], edit: Pick<ResolvedEdit, 'references'>): number {
  return inputs.reduce((n, i) => n + (i.pixels ?? 0), 0) + (edit.references ?? []).reduce((n, r) => n + r.width * r.height, 0);
}

/** What merging needs to know of a job. */
export interface MergeCandidate {
  modelId: string;
  edit: ResolvedEdit;
  /** Input images. */
  images: number;
  /** Declared source pixels of its inputs and references (0 when unknown; `declaredPixels`). */
  pixels: number;
  masked: boolean;
}

/**
 * The jobs of one pipeline call so far: later candidates join when they have the head's model and
 * pipeline settings (`mergeKey`, reference layout included), all outputs still fit one call under the memory budget less the
 * decoded inputs held for the whole call, and the declared source pixels stay within
 * `maxPixels` (one job's bound).
 */
export class MergeGroup {
  private readonly key: string;
  private heldBytes: number;
  private pixels: number;
  private outputs: number;

  private constructor(
    private readonly engine: Pick<InferenceEngine, 'model' | 'memoryBudgetBytes'>,
    private readonly head: MergeCandidate,
    private readonly maxPixels: number,
    key: string,
  ) {
    this.key = key;
    this.heldBytes = this.held(head);
    this.pixels = head.pixels;
    this.outputs = head.images * head.edit.n;
  }

  /** A group led by `head`, or null when its settings never merge (e.g. size 'auto'). */
  static start(engine: Pick<InferenceEngine, 'model' | 'memoryBudgetBytes'>, head: MergeCandidate, maxPixels = Number.POSITIVE_INFINITY): MergeGroup | null {
    const key = mergeKey(engine.model(head.modelId), head.edit);
    return key === null ? null : new MergeGroup(engine, head, maxPixels, key);
  }

  /** Takes `c` into the call when it fits; false (nothing changed) when not. */
  add(c: MergeCandidate): boolean {
    if (c.modelId !== this.head.modelId) return false;
    const spec = this.engine.model(this.head.modelId);
    if (mergeKey(spec, c.edit) !== this.key || this.pixels + c.pixels > this.maxPixels) return false;
    const more = c.images * c.edit.n;
    if (this.outputs + more > outputsPerBatch(spec, this.head.edit, this.engine.memoryBudgetBytes - this.heldBytes - this.held(c))) return false;
    this.outputs += more;
    this.heldBytes += this.held(c);
    this.pixels += c.pixels;
    return true;
  }

  /** [issue 16 item 5] Each job's inputs are held decoded (at the output size) for the whole call, and its references (at their decode sizes). */
  private held(c: MergeCandidate): number {
    const { width, height } = c.edit.size as { width: number; height: number };
    return c.images * decodedInputBytes(width, height, c.masked) + decodedReferenceBytes(this.engine.model(c.modelId), c.edit);
  }
}
