/**
 * GraphQL over WebSocket (graphql-ws, subprotocol graphql-transport-ws) at /graphql, shaped like
 * graphql-yoga's graphql-ws example: each operation is parsed, validated and executed through
 * `yoga.getEnveloped`, so the same plugins (limits, introspection, suggestions, masking) run as
 * over HTTP. Admission is the same `admit` as HTTP's: with the `connection_init` credentials when
 * the connection opens (not charged to the rate limit), then per operation when rate limits are on.
 *
 * The socket adapter is ours, over graphql-ws's protocol core (`makeServer`), as graphql-ws's own
 * `use/ws` adapter is: same keep-alive (a ping every 12 s, a peer that does not answer is dropped),
 * but a client's protocol violation (an oversized or malformed frame, which ws reports as a socket
 * error after closing it with 1009, 1002, …) is logged at debug level instead of printed to stderr.
 */
import type { IncomingMessage, Server } from 'node:http';
import { type ExecutionArgs, type GraphQLError, getOperationAST } from 'graphql';
import { CloseCode, handleProtocols, makeServer } from 'graphql-ws';
import { type WebSocket, WebSocketServer } from 'ws';
import { ServiceError } from '../errors.js';
import type { Principal } from './auth.js';
import { type ErrorMasker, operationResolutionFailure } from './errorMapping.js';
import { clientIp, refusalError } from './rateLimit.js';
import type { Services } from './services.js';
import type { GraphQLServer } from './yoga.js';

/** Close codes graphql-ws clients understand: 4401 is fatal for them (no retry with bad credentials). */
const WS_UNAUTHORIZED = 4401;
/** Too many failed authentications from this address (graphql-ws treats 4429 as fatal too). */
const WS_TOO_MANY = 4429;
const KEEP_ALIVE_MS = 12_000;

interface Extra {
  socket: WebSocket;
  request: IncomingMessage;
}

export interface GraphQLWebSocket {
  /** Closes every socket with 1001 and stops accepting new ones. */
  close(): Promise<void>;
}

export function attachGraphQLWs(httpServer: Server, yoga: GraphQLServer, masker: ErrorMasker, services: Services): GraphQLWebSocket {
  const { config, log, admission } = services;
  const allowedOrigin = (origin: string | undefined, host: string | undefined): boolean => {
    if (!origin) return true;
    if (config.corsOrigins.includes(origin) || config.corsOrigins.includes('*')) return true;
    try {
      return new URL(origin).host === host;
    } catch {
      return false;
    }
  };
  const wsServer = new WebSocketServer({
    server: httpServer,
    path: '/graphql',
    maxPayload: config.wsMaxPayloadBytes,
    handleProtocols,
    // Browsers do not apply CORS to websockets: refuse pages from other origins (cross-site
    // websocket hijacking). Clients that are not browsers send no Origin and are unaffected.
    verifyClient: ({ origin, req }: { origin?: string; req: IncomingMessage }) => allowedOrigin(origin, req.headers.host),
  });
  /** The principal each connection was admitted with. */
  const principals = new WeakMap<WebSocket, Principal>();
  const authorizationOf = (params: Record<string, unknown> | undefined): unknown => params?.authorization ?? params?.Authorization;
  const refuse = (err: ServiceError) => [masker.ws(err)];
  /** A result's errors (variable coercion: Yoga gives them HTTP status hints) as graphql-ws clients get errors. */
  const withoutHttp = (result: unknown): unknown => {
    const errors = (result as { errors?: unknown } | null)?.errors;
    if (!Array.isArray(errors)) return result;
    return { ...(result as object), errors: errors.map((e: unknown) => masker.ws(e, false)) };
  };

  const protocol = makeServer<Record<string, unknown> | undefined, Extra>({
    connectionInitWaitTimeout: config.wsInitTimeoutMs,
    onConnect: async (ctx) => {
      const admitted = await admission.admit(authorizationOf(ctx.connectionParams), clientIp(ctx.extra.request, config.trustProxy), { count: false });
      if (!admitted.ok) {
        // Debug only: a client that keeps sending bad connection_init messages cannot flood the log.
        log.debug({ code: admitted.code, error: admitted.message }, 'refused connection_init');
        if (admitted.status === 429) ctx.extra.socket.close(WS_TOO_MANY, 'Too many failed authentications');
        else ctx.extra.socket.close(WS_UNAUTHORIZED, 'Unauthorized');
        return false;
      }
      principals.set(ctx.extra.socket, admitted.principal);
      return true;
    },
    execute: async (args) => withoutHttp(await (args.rootValue as { execute: (a: ExecutionArgs) => unknown }).execute(args)) as never,
    subscribe: async (args) => withoutHttp(await (args.rootValue as { subscribe: (a: ExecutionArgs) => unknown }).subscribe(args)) as never,
    // Anything thrown here would close the whole socket (4500): every refusal is returned as
    // errors for this one operation instead, and the connection stays usable.
    onSubscribe: async (ctx, _id, params) => {
      // graphql-ws has already registered this operation in ctx.subscriptions.
      if (Object.keys(ctx.subscriptions).length > config.wsMaxSubscriptionsPerConnection) {
        return refuse(
          new ServiceError('BAD_USER_INPUT', `too many operations on this connection: the limit is ${config.wsMaxSubscriptionsPerConnection} at once`),
        );
      }
      try {
        if (admission.rateLimited) {
          const admitted = await admission.admit(authorizationOf(ctx.connectionParams), clientIp(ctx.extra.request, config.trustProxy));
          if (!admitted.ok) return refuse(refusalError(admitted));
        }
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params,
          principal: principals.get(ctx.extra.socket),
        });
        let document: ReturnType<typeof parse>;
        try {
          document = parse(params.query);
        } catch (err) {
          return [masker.ws(err)];
        }
        // As Yoga does over HTTP, before validation: the same code for the same document on both.
        if (!getOperationAST(document, params.operationName)) return [masker.ws(operationResolutionFailure())];
        const errors = validate(schema, document);
        if (errors.length) return errors.map((e: GraphQLError) => masker.ws(e, false));
        return {
          schema,
          operationName: params.operationName,
          document,
          variableValues: params.variables,
          contextValue: await contextFactory(),
          rootValue: { execute, subscribe },
        };
      } catch (err) {
        return [masker.ws(err)];
      }
    },
  });

  wsServer.on('connection', (socket, request) => {
    socket.on('error', (err: Error & { code?: string }) => {
      if (err.code?.startsWith('WS_ERR_')) log.debug({ err }, 'websocket protocol error from client');
      else {
        log.error({ err }, 'websocket error');
        socket.close(CloseCode.InternalServerError, 'Internal server error');
      }
    });
    let pongWait: NodeJS.Timeout | null = null;
    const ping = setInterval(() => {
      if (socket.readyState !== socket.OPEN) return;
      pongWait = setTimeout(() => socket.terminate(), KEEP_ALIVE_MS);
      socket.once('pong', () => {
        if (pongWait) clearTimeout(pongWait);
        pongWait = null;
      });
      socket.ping();
    }, KEEP_ALIVE_MS);
    const closed = protocol.opened(
      {
        protocol: socket.protocol,
        send: (data) =>
          new Promise<void>((resolve, reject) => {
            if (socket.readyState !== socket.OPEN) return resolve();
            socket.send(data, (err) => (err ? reject(err) : resolve()));
          }),
        close: (code, reason) => socket.close(code, reason),
        onMessage: (cb) =>
          socket.on('message', (data) => {
            cb(String(data)).catch((err: unknown) => {
              log.error({ err }, 'internal error in a graphql-ws message');
              socket.close(CloseCode.InternalServerError, 'Internal server error');
            });
          }),
      },
      { socket, request },
    );
    socket.once('close', (code, reason) => {
      if (pongWait) clearTimeout(pongWait);
      clearInterval(ping);
      void closed(code, String(reason));
    });
  });

  return {
    async close() {
      for (const client of wsServer.clients) client.close(1001, 'Server shutting down');
      await new Promise<void>((resolve) => wsServer.close(() => resolve()));
    },
  };
}
