/**
 * Prometheus metrics (prom-client) at /metrics: queue depth, running jobs, job duration and
 * queue-time histograms, denoise steps, images generated, failures by code, and how many jobs
 * and outputs each pipeline call carried. Fed by observing job events, so the job system itself
 * knows nothing about metrics; inference worker restarts are read from the engine.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { JobBackend, JobEvent } from '../jobs/types.js';

export interface ServerMetrics {
  registry: Registry;
  /** Records one job event (called for every event of every job). */
  observe(event: JobEvent): void;
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

export function createMetrics(jobs: JobBackend, engine: { readonly workerRestarts: number }): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'image_edit_process_' });
  new Gauge({
    name: 'image_edit_queue_depth',
    help: 'Jobs waiting in the queue',
    registers: [registry],
    async collect() {
      this.set((await jobs.stats()).queued);
    },
  });
  new Gauge({
    name: 'image_edit_running_jobs',
    help: 'Jobs in the pipeline call in progress',
    registers: [registry],
    async collect() {
      this.set((await jobs.stats()).running);
    },
  });
  const duration = new Histogram({
    name: 'image_edit_job_processing_seconds',
    help: 'Processing time of succeeded jobs',
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  const queueTime = new Histogram({
    name: 'image_edit_job_queue_seconds',
    help: 'Time jobs waited before running',
    buckets: [0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  new Counter({
    name: 'image_edit_inference_worker_restarts_total',
    help: 'Inference worker threads restarted after dying (their running jobs failed with WORKER_CRASHED)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(engine.workerRestarts);
    },
  });
  const steps = new Counter({ name: 'image_edit_denoise_steps_total', help: 'Denoise steps run (rate() gives steps per second)', registers: [registry] });
  const images = new Counter({ name: 'image_edit_images_generated_total', help: 'Output images generated', registers: [registry] });
  const finished = new Counter({ name: 'image_edit_jobs_finished_total', help: 'Jobs finished, by status', labelNames: ['status'], registers: [registry] });
  const failures = new Counter({ name: 'image_edit_job_failures_total', help: 'Failed jobs by error code', labelNames: ['code'], registers: [registry] });
  const merged = new Histogram({
    name: 'image_edit_jobs_per_pipeline_call',
    help: 'Jobs sharing one pipeline call (cross-request batching)',
    buckets: [1, 2, 3, 4, 6, 8, 12, 16],
    registers: [registry],
  });
  const outputs = new Histogram({
    name: 'image_edit_outputs_per_job',
    help: 'Outputs (images × n) per job',
    buckets: [1, 2, 4, 8, 16, 32, 64],
    registers: [registry],
  });
  return {
    registry,
    observe(event) {
      switch (event.type) {
        case 'progress':
          steps.inc();
          break;
        case 'completed': {
          const u = event.result.usage;
          duration.observe(u.processingTimeSeconds);
          queueTime.observe(u.queueTimeSeconds);
          images.inc(u.generatedImages);
          merged.observe(u.mergedJobs);
          outputs.observe(u.generatedImages);
          finished.inc({ status: 'SUCCEEDED' });
          break;
        }
        case 'failed':
          failures.inc({ code: event.error.code });
          finished.inc({ status: 'FAILED' });
          break;
        case 'cancelled':
          finished.inc({ status: 'CANCELLED' });
          break;
        default:
          break;
      }
    },
    async handle(_req, res) {
      const body = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(body);
    },
  };
}
