/**
 * The GraphQL server (graphql-yoga) over the services: schema, context, error masking, and one
 * plugin per concern (admission, CSRF, body and document limits, introspection, suggestions,
 * validation logging). HTTP and SSE reach it through routes.ts; graphql-ws runs its operations
 * through the same plugins with `yoga.getEnveloped` (websocket.ts).
 *
 * Uploads are parsed inside Yoga's request pipeline rather than by graphql-upload-minimal: limits
 * hold while the body streams (maxRequestBodySize → 413 before buffering the rest; per-part
 * limits in multipart.ts, shared with REST) and Yoga's CSRF prevention stays in the path, whereas
 * graphql-upload-minimal truncates oversize files silently and bypasses the CSRF check. Yoga's own
 * multipart parser is off: it trusted `map` (graphqlMultipart.ts says why).
 */
import type { IncomingMessage } from 'node:http';
import { useCSRFPrevention } from '@graphql-yoga/plugin-csrf-prevention';
import { createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import type { Logger } from 'pino';
import { buildSchema, type GraphQLContext } from '../schema/index.js';
import { createErrorMasker, type ErrorMasker, logRequestError } from './errorMapping.js';
import { graphiqlOptions, renderGraphiQLPage } from './graphiql.js';
import { useGraphQLMultipart } from './graphqlMultipart.js';
import { useContentTypeCheck, useFieldSuggestions, useGraphQLLimits, useIntrospection, useJsonBodyLimit, useVaryOrigin } from './hardening.js';
import { multipartLimits } from './multipart.js';
import type { Services } from './services.js';
import { useAdmission } from './useAdmission.js';

const MB = 1024 * 1024;

/** Node's request beside Yoga's own context (routes.ts serves it with `yoga.requestListener`). */
export type ServerContext = { req: IncomingMessage };
export type GraphQLServer = YogaServerInstance<ServerContext, GraphQLContext>;

/** Validation errors reach clients without the masker: one log line each, for every transport. */
function useValidationLog(log: Logger): Plugin {
  return {
    onValidate:
      () =>
      ({ valid, result }) => {
        if (!valid) for (const e of result) logRequestError(log, String(e.extensions?.code ?? 'GRAPHQL_VALIDATION_FAILED'), e.message);
      },
  };
}

export function createGraphQLServer(services: Services): { yoga: GraphQLServer; masker: ErrorMasker } {
  const { config, log, engine, access, edits } = services;
  const masker = createErrorMasker({ fieldSuggestions: config.fieldSuggestions, log });
  const yoga = createYoga<ServerContext, GraphQLContext>({
    schema: buildSchema(),
    // `principal` comes from useAdmission (HTTP, SSE) or from websocket.ts (graphql-ws).
    context: ({ request, req }) => {
      const base = services.publicBase(req);
      return {
        engine,
        jobs: access,
        edits,
        idempotencyKey: request?.headers.get('idempotency-key') ?? null,
        resultUrl: (jobId, image, created) => services.resultUrls.image(base, jobId, image, created),
      } as GraphQLContext;
    },
    graphqlEndpoint: '/graphql',
    landingPage: false,
    // Yoga's default CORS reflects any Origin with credentials allowed, which would let any web
    // page read responses (and pass the CSRF check by preflighting its header). Off unless listed.
    cors: config.corsOrigins.length
      ? {
          origin: config.corsOrigins,
          credentials: true,
          methods: ['GET', 'POST'],
          allowedHeaders: ['authorization', 'content-type', 'apollo-require-preflight', 'x-graphql-yoga-csrf', 'idempotency-key'],
        }
      : false,
    // Subscriptions over SSE (they carry the Headers tab's credentials), a walk-through query (graphiql.ts).
    graphiql: config.graphiql ? graphiqlOptions() : false,
    // Assets bundled in the package (no CDN), linked from a hashed, compressed, cacheable path.
    renderGraphiQL: renderGraphiQLPage,
    maskedErrors: { maskError: (error) => masker.http(error) },
    // Whole-body bound, enforced while streaming (413); per-part bounds are multipart.ts's.
    maxRequestBodySize: config.maxTotalBytes + MB,
    multipart: false,
    // Yoga logs at error only the original of each error it masks: the masker has logged that
    // one already, at its level.
    logging: { debug: (...a) => log.debug(a), info: (...a) => log.info(a), warn: (...a) => log.warn(a), error: (...a) => log.debug(a) },
    plugins: [
      useAdmission({ admission: services.admission, challenge: services.auth.challenge, trustProxy: config.trustProxy, log }),
      useContentTypeCheck(),
      useCSRFPrevention({ requestHeaders: ['x-graphql-yoga-csrf', 'apollo-require-preflight'] }),
      useJsonBodyLimit(config.graphqlMaxJsonBytes),
      useGraphQLMultipart(multipartLimits(config)),
      useGraphQLLimits(config),
      useIntrospection(config.introspection),
      useFieldSuggestions(config.fieldSuggestions),
      useValidationLog(log),
      config.corsOrigins.length > 0 && useVaryOrigin(),
    ],
  });
  return { yoga, masker };
}
