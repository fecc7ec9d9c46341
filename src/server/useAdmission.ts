/**
 * Admission as a Yoga plugin: every GraphQL request over HTTP and SSE is admitted once
 * (`admission.admit`: auth, failed-auth backoff, the principal's rate limit) before its body is
 * read, and the admitted principal becomes the operation's `context.principal`. A refused request
 * is answered 401 (with the challenge) or 429 (with Retry-After) in the GraphQL error shape.
 *
 * Yoga's own CORS and GraphiQL plugins answer preflights and the GraphiQL page before this runs:
 * neither carries credentials nor executes anything. graphql-ws admits through the same
 * `admission` in websocket.ts.
 */
import type { IncomingMessage } from 'node:http';
import type { Plugin } from 'graphql-yoga';
import type { Logger } from 'pino';
import type { Viewer } from '../jobs/access.js';
import { errorReply } from './errorReply.js';
import { logRequestError } from './errorMapping.js';
import { type AdmissionControl, clientIp, refusalError, refusalHeaders } from './rateLimit.js';

/** Sees nothing: the principal of an operation that somehow was not admitted. */
export const NOBODY: Viewer = { owner: '\u0000nobody', admin: false };

export interface AdmissionPluginOptions {
  admission: AdmissionControl;
  /** WWW-Authenticate of a 401. */
  challenge: string;
  trustProxy: boolean;
  log: Logger;
}

export function useAdmission(options: AdmissionPluginOptions): Plugin<{ principal?: Viewer }, { req: IncomingMessage }> {
  const principals = new WeakMap<Request, Viewer>();
  return {
    async onRequest({ request, serverContext, url, endResponse, fetchAPI }) {
      // A CORS preflight never carries credentials and executes nothing.
      if (request.method === 'OPTIONS') return;
      const admitted = await options.admission.admit(request.headers.get('authorization'), clientIp(serverContext.req, options.trustProxy));
      if (admitted.ok) {
        principals.set(request, admitted.principal);
        return;
      }
      logRequestError(options.log, admitted.code, `refused ${url.pathname} (${admitted.status})`);
      const reply = errorReply('graphql', refusalError(admitted), { headers: refusalHeaders(admitted, options.challenge) });
      endResponse(new fetchAPI.Response(reply.body, { status: reply.status, headers: reply.headers }));
    },
    onContextBuilding({ context, extendContext }) {
      // graphql-ws passes the principal its connection was admitted with.
      if (context.principal) return;
      extendContext({ principal: (context.request && principals.get(context.request)) || NOBODY });
    },
  };
}
