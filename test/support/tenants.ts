/** Clients for the tenant tests: every answer a client can get about one job id, normalised for comparison. */
import WebSocket from 'ws';
import { postGraphQL, type GraphQLResponse } from './graphql.js';

const JOB = 'query($id: ID!) { editJob(id: $id) { id status result { images { b64Json } } } }';
const CANCEL = 'mutation($id: ID!) { cancelEditJob(id: $id) { id status } }';
const EVENTS =
  'subscription($id: ID!) { editJobEvents(id: $id) { __typename status ... on EditProgress { step previews { b64Json } } ... on EditCancelled { reason } ... on EditCompleted { result { images { b64Json } usage { mergedJobs generatedImages } } } } }';

export const basic = (user: string, pass: string, pad = true): string => {
  const b64 = Buffer.from(`${user}:${pass}`).toString('base64');
  return `Basic ${pad ? b64 : b64.replace(/=+$/, '')}`;
};

/** The raw SSE answer to a subscription, with `id` replaced (so answers for different ids compare). */
export async function rawSse(url: string, id: string, authorization: string, timeoutMs = 3000): Promise<{ status: number; text: string }> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    const res = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization },
      body: JSON.stringify({ query: EVENTS, variables: { id } }),
      signal: abort.signal,
    });
    let text = '';
    try {
      text = await res.text();
    } catch {
      text += '<aborted: still streaming>';
    }
    return { status: res.status, text: text.replaceAll(id, '<id>') };
  } finally {
    clearTimeout(timer);
  }
}

/** The first message graphql-ws sends for one subscribe (error or next), id replaced; or the close code. */
export async function rawWs(wsUrl: string, id: string, authorization: string, timeoutMs = 3000): Promise<string> {
  const socket = new WebSocket(wsUrl, 'graphql-transport-ws');
  try {
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => resolve('<no message>'), timeoutMs);
      socket.on('error', reject);
      socket.on('close', (code) => {
        clearTimeout(timer);
        resolve(`closed ${code}`);
      });
      socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization } })));
      socket.on('message', (data) => {
        const m = JSON.parse(String(data)) as { type: string };
        if (m.type === 'connection_ack') socket.send(JSON.stringify({ id: 'op', type: 'subscribe', payload: { query: EVENTS, variables: { id } } }));
        else if (m.type === 'ping') socket.send(JSON.stringify({ type: 'pong' }));
        else {
          clearTimeout(timer);
          resolve(JSON.stringify(m).replaceAll(id, '<id>'));
        }
      });
    });
  } finally {
    socket.close();
  }
}

/** Every answer a client can get about job `id`, normalised so that answers for two ids compare. */
export async function answers(url: string, id: string, authorization: string): Promise<Record<string, unknown>> {
  const headers = { authorization };
  const job = await postGraphQL(url, JOB, { id }, headers);
  const cancel = await postGraphQL(url, CANCEL, { id }, headers);
  const sse = await rawSse(url, id, authorization);
  const ws = await rawWs(url.replace(/^http/, 'ws') + '/graphql', id, authorization);
  const norm = (r: { status: number; body: GraphQLResponse<unknown> }) => JSON.parse(JSON.stringify(r).replaceAll(id, '<id>')) as unknown;
  return { job: norm(job), cancel: norm(cancel), sse, ws };
}
