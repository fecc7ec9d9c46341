/** Small real clients for the tests: JSON/multipart over fetch, graphql-ws, and GraphQL over SSE. */
import { print, type DocumentNode } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';

export interface GraphQLResponse<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

export async function postGraphQL<T>(
  url: string,
  query: string | DocumentNode,
  variables: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<{ status: number; body: GraphQLResponse<T> }> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query: typeof query === 'string' ? query : print(query), variables }),
  });
  return { status: res.status, body: (await res.json()) as GraphQLResponse<T> };
}

/** A GraphQL multipart request (operations + map + files), as curl -F or apollo-upload-client send it. */
export async function postMultipart<T>(
  url: string,
  query: string | DocumentNode,
  variables: Record<string, unknown>,
  files: { bytes: Uint8Array; name: string }[],
  headers: Record<string, string> = { 'apollo-require-preflight': 'true' },
  masks?: (Uint8Array | null)[],
): Promise<{ status: number; body: GraphQLResponse<T> }> {
  const form = new FormData();
  const vars = { ...variables, images: files.map(() => null), ...(masks ? { masks: masks.map(() => null) } : {}) };
  form.set('operations', JSON.stringify({ query: typeof query === 'string' ? query : print(query), variables: vars }));
  const map: Record<string, string[]> = Object.fromEntries(files.map((_, i) => [String(i), [`variables.images.${i}`]]));
  masks?.forEach((m, i) => {
    if (m) map[`m${i}`] = [`variables.masks.${i}`];
  });
  form.set('map', JSON.stringify(map));
  files.forEach((f, i) => form.set(String(i), new Blob([new Uint8Array(f.bytes)]), f.name));
  masks?.forEach((m, i) => {
    if (m) form.set(`m${i}`, new Blob([new Uint8Array(m)]), `mask-${i}.png`);
  });
  const res = await fetch(`${url}/graphql`, { method: 'POST', body: form, headers });
  const text = await res.text();
  let body: GraphQLResponse<T>;
  try {
    body = JSON.parse(text) as GraphQLResponse<T>;
  } catch {
    body = { errors: [{ message: text }] };
  }
  return { status: res.status, body };
}

export function wsClient(wsUrl: string, authorization?: string, extra: { onClose?: (code: number) => void } = {}): Client {
  return createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: true,
    connectionParams: authorization ? { authorization } : undefined,
    on: { closed: (e) => extra.onClose?.((e as { code: number }).code) },
  });
}

/** Collects every `next` payload of a subscription until it completes (or errors). */
export function collect<T>(client: Client, query: string | DocumentNode, variables: Record<string, unknown>): Promise<T[]> {
  const events: T[] = [];
  return new Promise((resolve, reject) => {
    client.subscribe<T>(
      { query: typeof query === 'string' ? query : print(query), variables },
      {
        next: (value) => {
          if (value.errors?.length) reject(new Error(JSON.stringify(value.errors)));
          else events.push(value.data as T);
        },
        error: (err) => reject(err instanceof Error ? err : new Error(JSON.stringify(err))),
        complete: () => resolve(events),
      },
    );
  });
}

/** GraphQL over SSE (Yoga's distinct-connections mode): POST with Accept: text/event-stream. */
export async function collectSse<T>(
  url: string,
  query: string | DocumentNode,
  variables: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<{ status: number; events: T[] }> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...headers },
    body: JSON.stringify({ query: typeof query === 'string' ? query : print(query), variables }),
  });
  if (!res.ok || !res.body) return { status: res.status, events: [] };
  const events: T[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = block
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .join('\n');
      if (event === 'complete') return { status: res.status, events };
      if (event === 'next' && data) events.push((JSON.parse(data) as { data: T }).data);
    }
  }
  return { status: res.status, events };
}
