/**
 * Log levels: a client's mistake is one line at info (refused credentials at warn) with its code;
 * error is for server faults only; readiness probes log nothing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import WebSocket from 'ws';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../src/server/app.js';
import { loadConfig } from '../src/server/config.js';
import { PROJECT_ROOT } from '../src/config.js';
import { freePort } from './support/net.js';

interface Line {
  level: number;
  code?: string;
  msg: string;
}

const INFO = 30;
const WARN = 40;
const TOKEN = 'log-test-token';

describe('log levels', () => {
  const lines: Line[] = [];
  let server: RunningServer;
  const auth = { authorization: `Bearer ${TOKEN}` };
  const post = (body: unknown, headers: Record<string, string> = auth) =>
    fetch(`${server.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  before(async () => {
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Line) });
    server = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', AUTH_TOKENS: TOKEN }), { logger });
  });
  after(() => server.shutdown(1000));

  it('logs each client mistake once, at info (auth at warn), with its code; probes not at all', async () => {
    const since = lines.length;
    for (let i = 0; i < 20; i++) assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    const expected: [number, string, () => Promise<unknown>][] = [
      [WARN, 'UNAUTHENTICATED', async () => assert.equal((await post({ query: '{ __typename }' }, {})).status, 401)],
      [INFO, 'FORBIDDEN', async () => assert.equal((await fetch(`${server.url}/graphql?query=%7B__typename%7D`, { headers: auth })).status, 403)],
      [
        INFO,
        'BAD_REQUEST',
        async () =>
          assert.equal(
            (
              await fetch(`${server.url}/graphql`, {
                method: 'PUT',
                headers: { ...auth, 'content-type': 'application/json' },
                body: '{"query":"{ __typename }"}',
              })
            ).status,
            405,
          ),
      ],
      [INFO, 'BAD_USER_INPUT', async () => assert.equal((await post({ query: 'query($id: ID!) { editJob(id: $id) { id } }', variables: {} })).status, 400)],
      [INFO, 'GRAPHQL_VALIDATION_FAILED', () => post({ query: '{ nope }' })],
      [INFO, 'NOT_FOUND', async () => assert.match(await (await post({ query: 'mutation { cancelEditJob(id: "nope") { id } }' })).text(), /NOT_FOUND/)],
      [INFO, 'NOT_FOUND', async () => assert.equal((await fetch(`${server.url}/nowhere`, { headers: auth })).status, 404)],
      [
        INFO,
        'BAD_USER_INPUT',
        async () => assert.equal((await fetch(`${server.url}/v1/images/edits`, { method: 'POST', headers: auth, body: new FormData() })).status, 400),
      ],
      [INFO, 'GRAPHQL_VALIDATION_FAILED', () => wsOperation(server.url, '{ nope }')],
      [INFO, 'NOT_FOUND', () => wsOperation(server.url, 'subscription { editJobEvents(id: "nope") { __typename } }')],
    ];
    for (const [level, code, request] of expected) {
      const before = lines.length;
      await request();
      // Responses can be sent before the line is written; give it a moment.
      await new Promise((r) => setTimeout(r, 20));
      const got = lines.slice(before);
      assert.deepEqual(
        got.map((l) => [l.level, l.code]),
        [[level, code]],
        `${code}: ${JSON.stringify(got)}`,
      );
    }
    assert.equal(lines.slice(since).filter((l) => l.level >= 50).length, 0);
  });
});

/** One operation over graphql-ws (authenticated); resolves on its first error or completion. */
async function wsOperation(url: string, query: string): Promise<void> {
  const socket = new WebSocket(url.replace(/^http/, 'ws') + '/graphql', 'graphql-transport-ws');
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  const done = new Promise<void>((resolve) => {
    socket.on('message', (data) => {
      const m = JSON.parse(String(data)) as { type: string };
      if (m.type === 'connection_ack') socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query } }));
      if (m.type === 'error' || m.type === 'complete' || m.type === 'next') resolve();
    });
  });
  socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${TOKEN}` } }));
  await done;
  socket.close();
}

describe('ROLE=worker', () => {
  it('does not warn that operations are open to anyone (it serves no port)', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src/server/main.ts')], {
      cwd: PROJECT_ROOT,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, ROLE: 'worker', REDIS_URL: '' },
    });
    assert.equal(r.status, 2, r.stdout + r.stderr);
    assert.match(r.stdout, /ROLE=worker needs REDIS_URL/);
    assert.doesNotMatch(r.stdout, /open to anyone/);
  });
});

describe('graphql-ws connection_init with any credential type', () => {
  const lines: Line[] = [];
  let server: RunningServer;

  before(async () => {
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Line) });
    server = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', AUTH_TOKENS: TOKEN, AUTH_FAIL_LIMIT: '3' }), { logger });
  });
  after(() => server.shutdown(1000));

  /** The close code of a socket that sends this connection_init payload. */
  async function closeCode(payload: unknown): Promise<number> {
    const socket = new WebSocket(`${server.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
    const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    socket.send(JSON.stringify({ type: 'connection_init', payload }));
    return closed;
  }

  it('closes 4401 for a non-string authorization, counts it as a failed authentication (4429 past the limit), and logs nothing above debug', async () => {
    const since = lines.length;
    const codes = [];
    for (const authorization of [{}, ['Bearer x'], 5, true]) codes.push(await closeCode({ authorization }));
    assert.deepEqual(codes, [4401, 4401, 4401, 4429]);
    assert.deepEqual(
      lines.slice(since).filter((l) => l.level >= INFO),
      [],
    );
  });
});

/**
 * `npm start`'s output until it listens: through `script` when `tty` (stdout is then a terminal),
 * else through a pipe. The whole process group is stopped afterwards.
 */
async function startupOutput(env: Record<string, string>, tty: boolean): Promise<string> {
  const command = `exec ${process.execPath} --import tsx ${join(PROJECT_ROOT, 'src/server/main.ts')}`;
  const child = tty
    ? spawn('script', ['-qfec', command, '/dev/null'], { cwd: PROJECT_ROOT, env: { ...process.env, ...env }, detached: true, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn('sh', ['-c', command], { cwd: PROJECT_ROOT, env: { ...process.env, ...env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start:\n${text}`)), 120_000);
      const take = (chunk: Buffer): void => {
        text += chunk.toString();
        if (text.includes('image-edit-server listening')) {
          clearTimeout(timer);
          setTimeout(resolve, 100); // the rest of the line
        }
      };
      child.stdout!.on('data', take);
      child.stderr!.on('data', take);
      child.on('exit', (code) => reject(new Error(`server exited ${code}:\n${text}`)));
    });
  } finally {
    process.kill(-child.pid!, 'SIGTERM');
  }
  return text;
}

describe('log format', () => {
  it('writes one JSON object a line when stdout is not a terminal: one info line per loaded model, warn only for what an operator must act on', async () => {
    const out = await startupOutput({ PORT: String(await freePort()), LOG_LEVEL: 'info', LOG_FORMAT: '' }, false);
    const lines = out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Line & { model?: string });
    const loaded = lines.filter((l) => l.msg === 'model loaded');
    assert.deepEqual(
      loaded.map((l) => [l.level, l.model]),
      [[INFO, 'tiny-edit']],
    );
    assert.ok(JSON.stringify(loaded[0]).length < 400, `a short line: ${JSON.stringify(loaded[0])}`);
    assert.deepEqual(
      lines.filter((l) => l.level >= WARN).map((l) => l.msg),
      ['no AUTH_TOKENS or AUTH_BASIC set: every operation is open to anyone who can reach the server'],
      'loading a model is not a warning',
    );
  });

  it('is human-readable on a terminal (pino-pretty), and JSON there with LOG_FORMAT=json', async () => {
    const coloured = await startupOutput({ PORT: String(await freePort()), LOG_LEVEL: 'info', LOG_FORMAT: '' }, true);
    const pretty = stripVTControlCharacters(coloured);
    assert.match(pretty, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: model loaded \{"model":"tiny-edit","family":"instruct-pix2pix",.*\}\r?$/m);
    assert.match(pretty, /^\[[\d:.]+\] INFO: image-edit-server listening \{"url":/m);
    assert.doesNotMatch(pretty, /"level":/);
    const json = await startupOutput({ PORT: String(await freePort()), LOG_LEVEL: 'info', LOG_FORMAT: 'json' }, true);
    assert.match(json, /^\{"level":30,/m);
    assert.doesNotMatch(json, /INFO.*: model loaded/);
  });

  it('refuses a LOG_FORMAT it does not know', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src/server/main.ts')], {
      cwd: PROJECT_ROOT,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, LOG_FORMAT: 'xml' },
    });
    assert.equal(r.status, 2, r.stdout + r.stderr);
    assert.equal((JSON.parse(r.stdout) as Line).msg, 'LOG_FORMAT must be json or pretty (got "xml")');
  });
});
