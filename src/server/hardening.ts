/**
 * GraphQL-level hardening, as Yoga/envelop plugins so that the same rules run for HTTP, SSE and
 * graphql-ws (websocket.ts validates websocket operations through yoga.getEnveloped()):
 *
 *  - document limits from graphql-armor: depth, cost, aliases, directives (validation rules) and
 *    tokens (a counting parser that stops at the limit);
 *  - introspection on/off (graphql-js's NoSchemaIntrospectionCustomRule);
 *  - "Did you mean …?" suggestions on/off, in validation and in coercion errors;
 *  - a bound on non-multipart bodies, much smaller than the upload bound.
 *
 * Every rejection is a GraphQL error with extensions.code (BAD_USER_INPUT, or PAYLOAD_TOO_LARGE
 * for bodies): armor's rules are configured not to throw (a throw inside validate() would close a
 * whole graphql-ws socket with 4500) but to report to the validation context instead.
 */
import { GraphQLError, NoSchemaIntrospectionCustomRule, type ValidationContext } from 'graphql';
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import type { Plugin } from 'graphql-yoga';
import type { ServerConfig } from './config.js';

type LimitsConfig = Pick<ServerConfig, 'graphqlMaxDepth' | 'graphqlMaxAliases' | 'graphqlMaxTokens' | 'graphqlMaxCost' | 'graphqlMaxDirectives'>;

/** armor prefixes every message with "Syntax Error: " even for validation limits. */
const armorMessage = (error: GraphQLError): string => error.message.replace(/^Syntax Error: /, '');

/** Reports an armor rejection as an ordinary validation error carrying a code. */
function reportToContext(context: ValidationContext | null, error: GraphQLError): void {
  context?.reportError(new GraphQLError(armorMessage(error), { extensions: { code: 'BAD_USER_INPUT' } }));
}

const reject = { propagateOnRejection: false, onReject: [reportToContext] };

/** The graphql-armor limits as one envelop plugin. */
export function useGraphQLLimits(config: LimitsConfig): Plugin {
  return EnvelopArmorPlugin({
    // Handled by useFieldSuggestions (which also covers coercion errors).
    blockFieldSuggestion: { enabled: false },
    maxDepth: { n: config.graphqlMaxDepth, ...reject },
    costLimit: { maxCost: config.graphqlMaxCost, ...reject },
    maxAliases: { n: config.graphqlMaxAliases, ...reject },
    maxDirectives: { n: config.graphqlMaxDirectives, ...reject },
    // The token limit lives in the parser: throwing there stops a huge document early, and a parse
    // error is an ordinary syntax error for Yoga (400) and for websocket.ts.
    maxTokens: { n: config.graphqlMaxTokens },
  }) as Plugin;
}

/**
 * With introspection off, `__schema` and `__type` are validation errors. graphql-js's own
 * MaxIntrospectionDepthRule (part of the specified rules) bounds nested introspection either way.
 */
export function useIntrospection(enabled: boolean): Plugin {
  if (enabled) return {};
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}

const SUGGESTION = /\s*Did you mean\b[^?]*\?/g;
const HAS_SUGGESTION = /Did you mean\b/;

export function stripSuggestions(message: string): string {
  return message.replace(SUGGESTION, '');
}

/** A copy of `error` without "Did you mean …?" in its message (the same error when there is none). */
export function withoutSuggestions<E extends Error>(error: E): E {
  if (!HAS_SUGGESTION.test(error.message)) return error;
  if (error instanceof GraphQLError) {
    return new GraphQLError(stripSuggestions(error.message), {
      nodes: error.nodes,
      source: error.source,
      positions: error.positions,
      path: error.path,
      originalError: error.originalError,
      extensions: error.extensions,
    }) as unknown as E;
  }
  return new Error(stripSuggestions(error.message)) as E;
}

/** Hides schema names leaked through suggestions in validation errors (coercion errors: errorMapping.ts createErrorMasker). */
export function useFieldSuggestions(enabled: boolean): Plugin {
  if (enabled) return {};
  return {
    onValidate() {
      return ({ valid, result, setResult }) => {
        if (!valid) setResult(result.map((e) => withoutSuggestions(e)));
      };
    },
  };
}

export function payloadTooLarge(limit: number): GraphQLError {
  return new GraphQLError(`request body too large: the limit for a non-multipart request is ${limit} bytes`, {
    extensions: { code: 'PAYLOAD_TOO_LARGE', http: { status: 413 } },
  });
}

/**
 * Bounds non-multipart bodies (JSON, application/graphql, form-urlencoded) to `limit` bytes:
 * by Content-Length when given, else while the body streams. Multipart uploads keep the larger
 * whole-body bound (maxRequestBodySize) and busboy's per-file limits.
 */
export function useJsonBodyLimit(limit: number): Plugin {
  return {
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI }) {
      if (request.method === 'GET' || request.method === 'HEAD') return;
      if (/^\s*multipart\/form-data/i.test(request.headers.get('content-type') ?? '')) return;
      const contentLength = request.headers.get('content-length');
      if (contentLength != null && /^\d+$/.test(contentLength) && Number(contentLength) > limit) throw payloadTooLarge(limit);
      if (!requestParser || !request.body) return;
      const parser = requestParser;
      setRequestParser((req) => parser(limitBody(req, limit, fetchAPI)));
    },
  };
}

/** Body types Yoga parses on POST (its request parsers: JSON, multipart, GraphQL text, URL-encoded form). */
const GRAPHQL_POST_TYPES = ['application/json', 'application/graphql+json', 'multipart/form-data', 'application/graphql', 'application/x-www-form-urlencoded'];

/**
 * A POST whose Content-Type no parser reads gets a message saying so (415, BAD_REQUEST) before the
 * CSRF check, which would otherwise answer a text/plain body with "Required CSRF header(s) not present".
 */
export function useContentTypeCheck(): Plugin {
  return {
    onRequestParse({ request }) {
      if (request.method !== 'POST') return;
      const type = (request.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
      if (GRAPHQL_POST_TYPES.includes(type)) return;
      throw new GraphQLError(
        `${type ? `Content-Type ${type}` : 'a POST without a Content-Type'} is not a GraphQL request: send application/json ({"query": …, "variables": …}), or multipart/form-data with the apollo-require-preflight header for uploads`,
        { extensions: { code: 'BAD_REQUEST', http: { status: 415 } } },
      );
    },
  };
}

/**
 * `Vary: Origin` on every response when CORS_ORIGINS is set: the CORS headers depend on the
 * request's Origin (none without one), which Yoga marks only when it echoes one of several origins.
 */
export function useVaryOrigin(): Plugin {
  return {
    onResponse({ response }) {
      const vary = response.headers.get('vary') ?? '';
      if (!/(^|,)\s*origin\s*(,|$)/i.test(vary)) response.headers.set('vary', vary ? `${vary}, Origin` : 'Origin');
    },
  };
}

function limitBody(request: Request, limit: number, fetchAPI: { Request: typeof Request; TransformStream: typeof TransformStream }): Request {
  const body = request.body;
  if (!body) return request;
  // As in Yoga's own limit: a native stream needs the native TransformStream.
  const Transform = body instanceof ReadableStream ? globalThis.TransformStream : fetchAPI.TransformStream;
  let read = 0;
  const limited = body.pipeThrough(
    new Transform<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        read += chunk.byteLength;
        if (read > limit) controller.error(payloadTooLarge(limit));
        else controller.enqueue(chunk);
      },
    }),
  );
  return new fetchAPI.Request(request.url, {
    method: request.method,
    headers: request.headers,
    signal: request.signal,
    body: limited,
    duplex: 'half',
  } as RequestInit);
}
