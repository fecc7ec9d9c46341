/** The in-memory job system (no REDIS_URL): JobService queues and runs jobs on this process's engine. */
import type { JobSystemModule } from './jobSystem.js';
import { JobService } from './jobService.js';
import { MemoryIdempotencyStore } from './idempotency.js';
import { webhookDispatcher } from './systemConfig.js';

export const memoryJobSystem: JobSystemModule = {
  name: 'memory',
  selects: () => true,
  roleProblem: (config) =>
    config.role === 'worker'
      ? 'ROLE=worker needs REDIS_URL (workers take jobs from the Redis queue)'
      : config.role === 'api'
        ? 'ROLE=api needs REDIS_URL (API processes queue jobs for Redis workers)'
        : null,
  runsInference: () => true,
  async create({ config, log, engine, resultUrls, tenantQuota, onEvent }) {
    const webhooks = webhookDispatcher(config, log);
    const backend = new JobService(engine, {
      retentionMs: config.retentionSeconds * 1000,
      maxQueuedJobs: config.maxQueuedJobs,
      jobTimeoutMs: config.jobTimeoutSeconds * 1000,
      mergeJobs: config.mergeJobs,
      maxMergedInputPixels: config.maxJobInputPixels,
      tenantQuota,
      resultStore: resultUrls.bucket?.store,
      log: (fields, message) => log.info(fields, message),
      onEvent: (event) => {
        onEvent?.(event);
        webhooks.observe(event);
      },
    });
    const idempotency = new MemoryIdempotencyStore();
    return {
      name: 'memory',
      api: { backend, idempotency, webhooks },
      worker: null,
      health: async () => null,
      drain: (graceMs) => backend.shutdown(graceMs),
      async close() {
        idempotency.close();
      },
    };
  },
};
