/**
 * Hostile-input probes of issue 27, measured against a fresh server process: for each probe, the
 * answer's status and time, the slowest /healthz answer while it ran (polled every 10 ms), and the
 * server's RSS growth (VmRSS after, VmHWM peak, from /proc). Usage: `npm run bench:hostile`.
 * Figures go to docs/security.md; this is a measurement, not a test (test/audit.test.ts and
 * test/fuzz.test.ts hold the regression tests).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import sharp from 'sharp';
import { PROJECT_ROOT } from '../src/config.js';
import { freePort } from '../test/support/net.js';

const MB = 1024 * 1024;

interface Probe {
  name: string;
  /** Sends the request; resolves with the HTTP status (0 when the server dropped the connection). */
  send(base: string): Promise<number>;
  /** Concurrent copies. */
  copies?: number;
}

function procStatus(pid: number): { rss: number; hwm: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(text)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Streams `parts` (generated lazily) as one multipart body; answers the status. */
function postMultipart(url: string, headers: Record<string, string>, parts: () => AsyncGenerator<Buffer>): Promise<number> {
  const boundary = 'probe-boundary-7d1f';
  return new Promise((resolve) => {
    const req = request(url, { method: 'POST', headers: { ...headers, 'content-type': `multipart/form-data; boundary=${boundary}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    async function* body() {
      for await (const part of parts()) yield part;
      yield Buffer.from(`--${boundary}--\r\n`);
    }
    Readable.from(body())
      .on('error', () => undefined)
      .pipe(req);
  });
}

function field(name: string, value: string, boundary = 'probe-boundary-7d1f'): Buffer {
  return Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`);
}

function filePart(name: string, bytes: Buffer, boundary = 'probe-boundary-7d1f'): Buffer[] {
  return [
    Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${name}"; filename="a.png"\r\ncontent-type: image/png\r\n\r\n`),
    bytes,
    Buffer.from('\r\n'),
  ];
}

async function main(): Promise<void> {
  const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } })
    .png()
    .toBuffer();
  const gql = { 'apollo-require-preflight': '1' };
  const sparse = (index: string, arg: 'images' | 'masks'): Probe => ({
    name: `GraphQL map ${arg} index ${index}`,
    send: (base) =>
      postMultipart(`${base}/graphql`, gql, async function* () {
        const query =
          arg === 'images'
            ? 'mutation($i:[Upload!]!,$p:String!){editImages(images:$i,prompt:$p){id}}'
            : 'mutation($i:[Upload!]!,$m:[Upload!],$p:String!){editImages(images:$i,masks:$m,prompt:$p){id}}';
        const variables = arg === 'images' ? { i: [null], p: 'x' } : { i: [null], m: [null], p: 'x' };
        yield field('operations', JSON.stringify({ query, variables }));
        yield field('map', JSON.stringify(arg === 'images' ? { 0: [`variables.i.${index}`] } : { 0: ['variables.i.0'], 1: [`variables.m.${index}`] }));
        yield* filePart('0', png);
        if (arg === 'masks') yield* filePart('1', png);
      }),
  });
  const chunk = Buffer.alloc(MB, 0x41);
  const bigFile = (mb: number) =>
    async function* () {
      yield field('prompt', 'x');
      yield filePart('image', png)[0]!;
      for (let i = 0; i < mb; i++) yield chunk;
      yield Buffer.from('\r\n');
    };
  const probes: Probe[] = [
    sparse('99999999', 'images'),
    sparse('99999999', 'masks'),
    sparse('999999999', 'images'),
    {
      name: 'REST 1.84M tiny prompt fields (100 MiB)',
      send: (base) =>
        postMultipart(`${base}/v1/images/edits`, {}, async function* () {
          const one = field('prompt', 'x'.repeat(4));
          const batch = Buffer.concat(Array.from({ length: 4096 }, () => one));
          for (let sent = 0; sent < 100 * MB; sent += batch.length) yield batch;
        }),
    },
    { name: 'REST one 25 MiB file part', send: (base) => postMultipart(`${base}/v1/images/edits`, {}, bigFile(25)) },
    { name: 'REST six concurrent 100 MB uploads', copies: 6, send: (base) => postMultipart(`${base}/v1/images/edits`, {}, bigFile(100)) },
  ];

  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src/server/main.ts')], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'error', AUTH_FAIL_LIMIT: '0' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0; ; i++) {
      if (i > 600) throw new Error('server did not start');
      const ok = await fetch(`${base}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    console.log('| probe | status | answer ms | /healthz max ms | RSS after − before MB | peak RSS − before MB |');
    console.log('|---|---|---|---|---|---|');
    for (const probe of probes) {
      await new Promise((r) => setTimeout(r, 500));
      const before = procStatus(child.pid!);
      let slowest = 0;
      let polling = true;
      const poller = (async () => {
        while (polling) {
          const t = performance.now();
          await fetch(`${base}/healthz`).catch(() => undefined);
          slowest = Math.max(slowest, performance.now() - t);
          await new Promise((r) => setTimeout(r, 10));
        }
      })();
      const t0 = performance.now();
      const statuses = await Promise.all(Array.from({ length: probe.copies ?? 1 }, () => probe.send(base)));
      const ms = performance.now() - t0;
      polling = false;
      await poller;
      const after = procStatus(child.pid!);
      console.log(
        `| ${probe.name} | ${[...new Set(statuses)].join(', ')} | ${ms.toFixed(0)} | ${slowest.toFixed(1)} | ${(after.rss - before.rss).toFixed(0)} | ${(after.hwm - before.rss).toFixed(0)} |`,
      );
    }
  } finally {
    child.kill('SIGKILL');
  }
}

await main();
