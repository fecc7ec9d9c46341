/**
 * HTTP routes on one node:http listener: /healthz, the progress page, GraphiQL's assets (all
 * without credentials), /graphql (Yoga, which admits each request itself: useAdmission.ts), and
 * behind the same admission /metrics and REST's /v1/images/edits. Anything else is 404.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ServiceError } from '../errors.js';
import { errorShapeFor, sendError, sendJson } from './errorReply.js';
import { GRAPHIQL_ASSETS_ROOT, serveGraphiQLAsset } from './graphiql.js';
import { clientIp, refusalError, refusalHeaders } from './rateLimit.js';
import { multipartLimits } from './multipart.js';
import { handleRestEdit } from './rest.js';
import { RESULTS_PATH } from '../jobs/resultUrls.js';
import type { Services } from './services.js';
import { serveUi } from './ui.js';
import type { GraphQLServer } from './yoga.js';

const MB = 1024 * 1024;

export interface HttpRoutes {
  listener(req: IncomingMessage, res: ServerResponse): void;
  /** /healthz answers 503 "shutting-down" from now on. */
  shuttingDown(): void;
}

export function createRoutes(services: Services, yoga: GraphQLServer): HttpRoutes {
  const { config, log, engine, jobs, admission } = services;
  let shuttingDown = false;

  async function health(res: ServerResponse): Promise<void> {
    // Unhealthy (503, with the reason) while the job system cannot serve (Redis mode: Redis does not answer).
    const problem = shuttingDown ? null : await services.jobSystem.health();
    // Models that cannot be served leave the others serving: 'degraded' (200), naming them.
    const failed = engine.failures();
    const status = shuttingDown ? 'shutting-down' : problem ? problem.status : failed.length > 0 ? 'degraded' : 'ok';
    sendJson(res, status === 'ok' || status === 'degraded' ? 200 : 503, {
      status,
      ...(problem ? { reason: problem.reason } : {}),
      ...(failed.length > 0 ? { failedModels: Object.fromEntries(failed.map((f) => [f.id, f.reason])) } : {}),
      models: engine.models().map((m) => m.id),
      providers: engine.providers(),
      warnings: Object.fromEntries(
        engine
          .models()
          .filter((m) => m.warnings.length > 0)
          .map((m) => [m.id, m.warnings]),
      ),
    });
  }

  async function serveResult(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendError(res, 'openai', new ServiceError('BAD_USER_INPUT', 'use GET'), log, { status: 405, headers: { allow: 'GET, HEAD' } });
      return;
    }
    const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
    const { jobId, index, expires } = services.resultUrls.check(pathname, query);
    // The signature is the capability: the job is read as stored, whoever asks.
    const image = (await jobs.get(jobId))?.result?.images.find((i) => i.index === index);
    if (!image) throw new ServiceError('NOT_FOUND', `job ${jobId} has no output ${index} now (finished jobs are kept for JOB_RETENTION_SECONDS)`);
    res.writeHead(200, {
      'content-type': image.mimeType,
      'content-length': image.bytes.byteLength,
      'cache-control': `private, max-age=${Math.max(0, expires - Math.floor(Date.now() / 1000))}`,
      'x-content-type-options': 'nosniff',
    });
    res.end(req.method === 'HEAD' ? undefined : image.bytes);
  }

  async function route(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
    if (pathname === '/healthz') return health(res);
    if ((pathname === '/' || pathname === '/favicon.ico' || pathname.startsWith('/ui/')) && serveUi(pathname, req, res)) return;
    if (config.graphiql && pathname.startsWith(GRAPHIQL_ASSETS_ROOT)) {
      if (!(await serveGraphiQLAsset(pathname, req, res))) sendError(res, 'openai', new ServiceError('NOT_FOUND', `no GraphiQL asset at ${pathname}`), log);
      return;
    }
    if (pathname === '/graphql') return yoga.requestListener(req, res);
    // Result URLs carry their own capability (a signature): no credentials.
    if (pathname.startsWith(RESULTS_PATH)) return serveResult(req, res, pathname);
    // One decision for every other route: who is calling, failed-auth backoff, the principal's rate limit.
    const admitted = await admission.admit(req.headers.authorization, clientIp(req, config.trustProxy));
    if (!admitted.ok) {
      sendError(res, 'openai', refusalError(admitted), log, {
        headers: refusalHeaders(admitted, services.auth.challenge),
        logMessage: `refused ${pathname} (${admitted.status})`,
      });
      return;
    }
    if (pathname === '/metrics' && req.method === 'GET') return services.metrics.handle(req, res);
    if (pathname === '/v1/images/edits') {
      const base = services.publicBase(req);
      return handleRestEdit(req, res, {
        engine,
        jobs: services.access,
        edits: services.edits,
        principal: admitted.principal,
        log,
        maxBodyBytes: config.maxTotalBytes + MB,
        multipartLimits: multipartLimits(config),
        resultUrl: (jobId, image, created) => services.resultUrls.image(base, jobId, image, created),
      });
    }
    sendError(res, 'openai', new ServiceError('NOT_FOUND', `no route for ${pathname}`), log);
  }

  return {
    listener(req, res) {
      const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
      route(req, res, pathname).catch((err: unknown) => sendError(res, errorShapeFor(pathname), err, log));
    },
    shuttingDown() {
      shuttingDown = true;
    },
  };
}
