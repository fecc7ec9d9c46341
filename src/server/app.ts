/**
 * HTTP and websocket wiring: one node:http server on one port serving /graphql (HTTP, SSE,
 * graphql-ws, GraphiQL), /healthz, and the REST endpoint, with the same auth everywhere.
 *
 * Uploads use Yoga's built-in multipart parser rather than graphql-upload-minimal: it enforces
 * real limits while the body streams (maxRequestBodySize → 413 before buffering the rest;
 * busboy's per-file fileSize/files limits through formDataLimits) and keeps Yoga's CSRF
 * prevention in the path, whereas graphql-upload-minimal truncates oversize files silently and
 * bypasses the CSRF check.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { useCSRFPrevention } from '@graphql-yoga/plugin-csrf-prevention';
import { createFetch } from '@whatwg-node/fetch';
import { WebSocketServer } from 'ws';
import { useServer } from 'graphql-ws/use/ws';
import { GraphQLError, type ExecutionArgs } from 'graphql';
import { pino, type Logger } from 'pino';
import { InferenceEngine, type EngineConfig } from '../inference/engine.js';
import { JobService } from '../jobs/jobService.js';
import type { JobBackend } from '../jobs/types.js';
import { RedisJobBackend } from '../jobs/redisJobs.js';
import { watchRedis, type RedisLog } from '../jobs/redisShared.js';
import { startRedisWorker, type RedisWorkerConfig } from '../jobs/redisWorker.js';
import { EditService } from '../jobs/editService.js';
import { buildSchema, type GraphQLContext } from '../schema/index.js';
import type { ServerConfig } from './config.js';
import { Redis } from 'ioredis';
import { createAuthenticator, type Authenticator, type Principal } from './auth.js';
import { JobAccess, type Viewer } from '../jobs/access.js';
import { logRequestError, maskGraphQLError } from './errorMapping.js';
import { useFieldSuggestions, useGraphQLLimits, useIntrospection, useJsonBodyLimit, useMultipartErrors, withoutSuggestions } from './hardening.js';
import { clientIp, createAdmission, sendRefusal } from './rateLimit.js';
import { handleRestEdit } from './rest.js';
import { serveUi } from './ui.js';
import { GRAPHIQL_ASSETS_ROOT, graphiqlOptions, renderGraphiQLPage, serveGraphiQLAsset } from './graphiql.js';
import { createMetrics } from './metrics.js';

export interface RunningServer {
  url: string;
  httpServer: Server;
  engine: InferenceEngine;
  jobs: JobBackend;
  edits: EditService;
  auth: Authenticator;
  log: Logger;
  /** SIGTERM behaviour: no new jobs, running ones finish within the grace period, then everything closes. */
  shutdown(graceMs?: number): Promise<void>;
}

/** Close codes graphql-ws clients understand: 4401 is fatal for them (no retry with bad credentials). */
const WS_UNAUTHORIZED = 4401;
/** Too many failed authentications from this address (graphql-ws treats 4429 as fatal too). */
const WS_TOO_MANY = 4429;
/** Sees nothing: the context of a request that somehow was not admitted. */
const NOBODY: Viewer = { owner: '\u0000nobody', admin: false };
const MB = 1024 * 1024;
/** Fields pino replaces with [Redacted]: credentials never reach the logs. */
export const LOG_REDACT = ['authorization', '*.authorization'];

export async function startServer(config: ServerConfig, options: { logger?: Logger } = {}): Promise<RunningServer> {
  const log = options.logger ?? pino({ level: config.logLevel, redact: LOG_REDACT });
  const auth = createAuthenticator(config);
  // With auth off the server is one tenant: no per-tenant quota (MAX_QUEUED_JOBS still bounds the queue).
  const tenantQuota =
    auth.enabled && (config.tenantMaxQueuedJobs > 0 || config.tenantMaxQueuedImages > 0)
      ? { maxJobs: config.tenantMaxQueuedJobs, maxImages: config.tenantMaxQueuedImages }
      : null;
  // An API process in front of Redis workers only needs the model catalogue.
  const engine = await InferenceEngine.start(engineConfig(config, log, config.redisUrl && config.role === 'api' ? 'catalogue' : 'worker'));
  const jobs: JobBackend = config.redisUrl
    ? new RedisJobBackend({
        redisUrl: config.redisUrl,
        retentionMs: config.retentionSeconds * 1000,
        maxQueuedJobs: config.maxQueuedJobs,
        attempts: config.jobAttempts,
        maxInputBytes: config.maxTotalBytes,
        tenantQuota,
        log: (fields, message) => log.info(fields, message),
        redisLog: redisLog(log),
        onEvent: (event) => metrics.observe(event),
      })
    : new JobService(engine, {
        retentionMs: config.retentionSeconds * 1000,
        maxQueuedJobs: config.maxQueuedJobs,
        jobTimeoutMs: config.jobTimeoutSeconds * 1000,
        mergeJobs: config.mergeJobs,
        maxMergedInputPixels: config.maxJobInputPixels,
        tenantQuota,
        log: (fields, message) => log.info(fields, message),
        onEvent: (event) => metrics.observe(event),
      });
  const worker = config.redisUrl && config.role === 'all' ? await startRedisWorker(engine, redisWorkerConfig(config, log)) : null;
  const metrics = createMetrics(jobs, engine);
  const edits = new EditService(engine, jobs, {
    maxFilesPerJob: config.maxImagesPerJob,
    maxFileBytes: config.maxFileBytes,
    maxTotalBytes: config.maxTotalBytes,
    maxInputPixels: config.maxInputPixels,
    maxJobInputPixels: config.maxJobInputPixels,
    maxProcessInputPixels: config.maxProcessInputPixels,
  });
  const access = new JobAccess(jobs);
  /** The admitted principal of each HTTP request and websocket upgrade request. */
  const principals = new WeakMap<IncomingMessage, Principal>();
  const logError = (err: unknown): void => log.error({ err }, 'internal error');
  /**
   * Every GraphQL error a client sees, over HTTP, SSE and graphql-ws, goes through here, and is
   * logged here once (validation errors, which Yoga does not mask, by the onValidate plugin below).
   */
  const maskError = (err: unknown, logged = true): Error => {
    let masked = maskGraphQLError(err, logError);
    // Yoga's own body/file-size errors say REQUEST_ENTITY_TOO_LARGE: the API's code is PAYLOAD_TOO_LARGE.
    if (masked instanceof GraphQLError && masked.extensions?.code === 'REQUEST_ENTITY_TOO_LARGE') {
      masked = new GraphQLError(masked.message, { nodes: masked.nodes, path: masked.path, extensions: { ...masked.extensions, code: 'PAYLOAD_TOO_LARGE' } });
    }
    masked = config.fieldSuggestions ? masked : withoutSuggestions(masked);
    const code = (masked as GraphQLError).extensions?.code;
    if (logged && code !== 'INTERNAL') logRequestError(log, String(code), masked.message);
    return masked;
  };
  /** Over graphql-ws: masked, without Yoga's HTTP-only `extensions.http` (status hints for its HTTP responses). */
  const maskWsError = (err: unknown, logged = true): GraphQLError => {
    const masked = maskError(err, logged);
    if (!(masked instanceof GraphQLError) || !masked.extensions?.http) return masked as GraphQLError;
    const { http: _http, ...extensions } = masked.extensions;
    return new GraphQLError(masked.message, { nodes: masked.nodes, source: masked.source, positions: masked.positions, path: masked.path, extensions });
  };
  /** Validation errors reach clients without maskError: one log line each, for every transport. */
  const useValidationLog: Plugin = {
    onValidate:
      () =>
      ({ valid, result }) => {
        if (!valid) for (const e of result) logRequestError(log, String(e.extensions?.code ?? 'GRAPHQL_VALIDATION_FAILED'), e.message);
      },
  };
  // Limits shared by every API process on the same Redis (rate-limiter-flexible), else per process.
  const limitRedis = config.redisUrl ? new Redis(config.redisUrl, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 }) : null;
  if (limitRedis) {
    watchRedis(limitRedis, 'rate-limit', redisLog(log));
    // Unreachable at start: the limits run on per-process memory counters until ioredis reconnects.
    await limitRedis.connect().catch((err: unknown) => log.warn({ err }, 'rate-limit redis not reachable yet: per-process limits until it is'));
  }
  const admission = createAdmission({
    auth,
    perMinute: config.rateLimitPerMinute,
    burst: config.rateLimitBurst,
    authFailLimit: config.authFailLimit,
    authFailWindowSeconds: config.authFailWindowSeconds,
    authFailBlockSeconds: config.authFailBlockSeconds,
    redis: limitRedis,
  });

  const yoga: YogaServerInstance<Record<string, unknown>, GraphQLContext> = createYoga<Record<string, unknown>, GraphQLContext>({
    schema: buildSchema(),
    context: (initial: Record<string, unknown>) => ({ engine, jobs: access, edits, principal: principals.get(initial.req as IncomingMessage) ?? NOBODY }),
    graphqlEndpoint: '/graphql',
    landingPage: false,
    // Yoga's default CORS reflects any Origin with credentials allowed, which would let any web
    // page read responses (and pass the CSRF check by preflighting its header). Off unless listed.
    cors: config.corsOrigins.length
      ? {
          origin: config.corsOrigins,
          credentials: true,
          methods: ['GET', 'POST'],
          allowedHeaders: ['authorization', 'content-type', 'apollo-require-preflight', 'x-graphql-yoga-csrf'],
        }
      : false,
    // Subscriptions over SSE (they carry the Headers tab's credentials), a walk-through query (graphiql.ts).
    graphiql: config.graphiql ? graphiqlOptions() : false,
    // Assets bundled in the package (no CDN), linked from a hashed, compressed, cacheable path.
    renderGraphiQL: renderGraphiQLPage,
    maskedErrors: { maskError: (error) => maskError(error) },
    // Whole-body bound, enforced while streaming (413); per-file bounds are busboy's, below.
    maxRequestBodySize: config.maxTotalBytes + MB,
    fetchAPI: createFetch({
      formDataLimits: { fileSize: config.maxFileBytes, files: config.maxImagesPerJob, fieldSize: MB, fields: 64, parts: config.maxImagesPerJob + 64 },
    }),
    // Yoga logs at error only the original of each error it masks: maskError has logged that
    // one already, at its level.
    logging: { debug: (...a) => log.debug(a), info: (...a) => log.info(a), warn: (...a) => log.warn(a), error: (...a) => log.debug(a) },
    plugins: [
      useCSRFPrevention({ requestHeaders: ['x-graphql-yoga-csrf', 'apollo-require-preflight'] }),
      useJsonBodyLimit(config.graphqlMaxJsonBytes),
      useMultipartErrors(),
      useGraphQLLimits(config),
      useIntrospection(config.introspection),
      useFieldSuggestions(config.fieldSuggestions),
      useValidationLog,
    ],
  });

  const allowedOrigin = (origin: string | undefined, host: string | undefined): boolean => {
    if (!origin) return true;
    if (config.corsOrigins.includes(origin) || config.corsOrigins.includes('*')) return true;
    try {
      return new URL(origin).host === host;
    } catch {
      return false;
    }
  };

  let shuttingDown = false;
  const httpServer = createServer((req, res) => {
    void route(req, res).catch((err: unknown) => {
      logError(err);
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'INTERNAL', message: 'internal error' } });
      else res.end();
    });
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/healthz') {
      // Redis mode: unhealthy (503, with the reason) while the job store does not answer.
      const redisProblem = !shuttingDown && jobs instanceof RedisJobBackend ? await jobs.health() : null;
      const status = shuttingDown ? 'shutting-down' : redisProblem ? 'redis-unavailable' : 'ok';
      sendJson(res, status === 'ok' ? 200 : 503, {
        status,
        ...(redisProblem ? { reason: redisProblem } : {}),
        models: engine.models().map((m) => m.id),
        providers: engine.providers(),
        warnings: Object.fromEntries(
          engine
            .models()
            .filter((m) => m.warnings.length > 0)
            .map((m) => [m.id, m.warnings]),
        ),
      });
      return;
    }
    if (url.pathname === '/' || url.pathname === '/favicon.ico' || url.pathname.startsWith('/ui/')) {
      if (serveUi(url.pathname, req, res)) return;
    }
    if (config.graphiql && url.pathname.startsWith(GRAPHIQL_ASSETS_ROOT)) {
      await serveGraphiQLAsset(url.pathname, req, res);
      return;
    }
    // The page only (Yoga renders it for any browser GET, `?query=…` included: GraphiQL puts the
    // editor's text in the URL, so a reload must show the page again); it executes nothing.
    const isGraphiQLPage = config.graphiql && url.pathname === '/graphql' && req.method === 'GET' && (req.headers.accept ?? '').includes('text/html');
    // A CORS preflight never carries credentials; it executes nothing (Yoga answers it, or refuses it when no origin is configured).
    const isPreflight = req.method === 'OPTIONS' && url.pathname === '/graphql';
    let principal: Principal | null = null;
    if (!isGraphiQLPage && !isPreflight) {
      // One decision for every route: who is calling, failed-auth backoff, the principal's rate limit.
      const admitted = await admission.admit(req.headers.authorization, clientIp(req, config.trustProxy));
      if (!admitted.ok) {
        logRequestError(log, admitted.status === 429 ? 'RATE_LIMITED' : 'UNAUTHENTICATED', `refused ${url.pathname} (${admitted.status})`);
        sendRefusal(res, admitted, { pathname: url.pathname, challenge: auth.challenge });
        return;
      }
      principal = admitted.principal;
      principals.set(req, principal);
    }
    if (url.pathname === '/metrics' && req.method === 'GET') {
      await metrics.handle(req, res);
      return;
    }
    if (url.pathname === '/v1/images/edits') {
      await handleRestEdit(req, res, {
        engine,
        jobs: access,
        edits,
        principal: principal ?? NOBODY,
        log,
        maxBodyBytes: config.maxTotalBytes + MB,
        uploadLimits: edits.limits,
      });
      return;
    }
    if (url.pathname === '/graphql') {
      await yoga.requestListener(req, res);
      return;
    }
    logRequestError(log, 'NOT_FOUND', `no route for ${url.pathname}`);
    sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no route for ${url.pathname}` } });
  }

  const wsServer = new WebSocketServer({
    server: httpServer,
    path: '/graphql',
    maxPayload: config.wsMaxPayloadBytes,
    // Browsers do not apply CORS to websockets: refuse pages from other origins (cross-site
    // websocket hijacking). Clients that are not browsers send no Origin and are unaffected.
    verifyClient: ({ origin, req }: { origin?: string; req: IncomingMessage }) => allowedOrigin(origin, req.headers.host),
  });
  // ws reports a client's protocol violations (an oversized or malformed frame) as a socket error
  // after it has already closed the socket (1009, 1002, …); graphql-ws would print each one to
  // stderr with console.error. They are the client's fault: log them at debug level instead.
  wsServer.on('connection', (socket) => {
    const emit = socket.emit.bind(socket) as (event: string | symbol, ...args: unknown[]) => boolean;
    socket.emit = ((event: string | symbol, ...args: unknown[]) => {
      const err = args[0] as { code?: unknown } | undefined;
      if (event === 'error' && typeof err?.code === 'string' && err.code.startsWith('WS_ERR_')) {
        log.debug({ err }, 'websocket protocol error from client');
        return true;
      }
      return emit(event, ...args);
    }) as typeof socket.emit;
  });
  const wsError = (message: string, code: string, extensions: Record<string, unknown> = {}) => {
    logRequestError(log, code, message);
    return [new GraphQLError(message, { extensions: { code, ...extensions } })];
  };
  useServer(
    {
      connectionInitWaitTimeout: config.wsInitTimeoutMs,
      onConnect: async (ctx) => {
        const authorization = (ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization) as string | undefined;
        const admitted = await admission.admit(authorization, clientIp(ctx.extra.request, config.trustProxy), { count: false });
        if (!admitted.ok) {
          logRequestError(log, admitted.status === 429 ? 'RATE_LIMITED' : 'UNAUTHENTICATED', 'refused connection_init');
          if (admitted.status === 429) ctx.extra.socket.close(WS_TOO_MANY, 'Too many failed authentications');
          else ctx.extra.socket.close(WS_UNAUTHORIZED, 'Unauthorized');
          return false;
        }
        principals.set(ctx.extra.request, admitted.principal);
        return true;
      },
      execute: (args) => (args.rootValue as { execute: (a: ExecutionArgs) => unknown }).execute(args) as never,
      subscribe: (args) => (args.rootValue as { subscribe: (a: ExecutionArgs) => unknown }).subscribe(args) as never,
      // Anything thrown here would close the whole socket (4500): every refusal is returned as
      // errors for this one operation instead, and the connection stays usable.
      onSubscribe: async (ctx, _id, params) => {
        // graphql-ws has already registered this operation in ctx.subscriptions.
        if (Object.keys(ctx.subscriptions).length > config.wsMaxSubscriptionsPerConnection) {
          return wsError(`too many operations on this connection: the limit is ${config.wsMaxSubscriptionsPerConnection} at once`, 'BAD_USER_INPUT');
        }
        try {
          if (admission.rateLimited) {
            // The same admission as HTTP, with the credentials of connection_init.
            const authorization = (ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization) as string | undefined;
            const admitted = await admission.admit(authorization, clientIp(ctx.extra.request, config.trustProxy));
            if (!admitted.ok) return wsError(admitted.message, admitted.code, admitted.status === 429 ? { retryAfterSeconds: admitted.retryAfterSeconds } : {});
          }
          const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
            ...ctx,
            req: ctx.extra.request,
            socket: ctx.extra.socket,
            params,
          });
          let document;
          try {
            document = parse(params.query);
          } catch (err) {
            return [maskWsError(err)];
          }
          const errors = validate(schema, document);
          if (errors.length) return errors.map((e: GraphQLError) => maskWsError(e, false));
          return {
            schema,
            operationName: params.operationName,
            document,
            variableValues: params.variables,
            contextValue: await contextFactory(),
            rootValue: { execute, subscribe },
          };
        } catch (err) {
          return [maskWsError(err)];
        }
      },
    },
    wsServer,
  );

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(config.port, config.host, () => resolve());
  });
  const address = httpServer.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;

  return {
    url,
    httpServer,
    engine,
    jobs,
    edits,
    auth,
    log,
    async shutdown(graceMs = config.shutdownGraceSeconds * 1000) {
      if (shuttingDown) return;
      shuttingDown = true;
      log.info({ graceMs }, 'shutting down: no new jobs; waiting for running ones');
      if (worker) await Promise.race([worker.close(), new Promise((r) => setTimeout(r, graceMs).unref())]);
      await jobs.shutdown(graceMs);
      // Terminal events are queued on the sockets; give them a moment to flush before closing.
      await new Promise((r) => setTimeout(r, 200));
      for (const client of wsServer.clients) client.close(1001, 'Server shutting down');
      await new Promise<void>((resolve) => wsServer.close(() => resolve()));
      httpServer.closeIdleConnections();
      // A client that stops reading (or a slow upload) must not hold the process open: responses
      // still in flight after a short delay are cut.
      const forceClose = setTimeout(() => httpServer.closeAllConnections(), 2000);
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
      clearTimeout(forceClose);
      limitRedis?.disconnect();
      await engine.close();
      log.info('shut down');
    },
  };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function redisWorkerConfig(config: ServerConfig, log: Logger): RedisWorkerConfig {
  return {
    redisUrl: config.redisUrl!,
    retentionMs: config.retentionSeconds * 1000,
    jobTimeoutMs: config.jobTimeoutSeconds * 1000,
    attempts: config.jobAttempts,
    stallMs: config.jobStallSeconds * 1000,
    log: (fields, message) => log.info(fields, message),
    redisLog: redisLog(log),
  };
}

/** pino's levels as the Redis helpers' structured log sink. */
export function redisLog(log: Logger): RedisLog {
  return { info: (f, m) => log.info(f, m), warn: (f, m) => log.warn(f, m), debug: (f, m) => log.debug(f, m) };
}

export function engineConfig(config: ServerConfig, log: Logger, threading: EngineConfig['threading']): EngineConfig {
  return {
    modelsDir: config.modelsDir,
    defaultModel: config.defaultModel,
    provider: config.provider,
    intraOpThreads: config.intraOpThreads,
    allowSpinning: config.ortAllowSpinning,
    cpuMemArena: config.ortCpuMemArena,
    memoryBudgetBytes: config.memoryBudgetBytes,
    preloadModels: config.preloadModels,
    modelMemoryBytes: config.modelMemoryBytes,
    maxInputPixels: config.maxInputPixels,
    pngCompressionLevel: config.pngCompressionLevel,
    threading,
    log: (message) => log.warn(message),
  };
}
