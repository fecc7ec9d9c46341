/**
 * SIGTERM with a job running, on the server run directly and on the real `npm start` entry point
 * (npm → sh → node: the script execs node, so npm's forwarded SIGTERM reaches the server, not a
 * shell that would die and leave the server running): the job finishes (or is cancelled with
 * reason SHUTDOWN when the grace period ends), its subscription ends with one terminal event, new
 * jobs are refused, and the process npm waits for exits 0.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';
import { freePort } from './support/net.js';
import { collect, postMultipart, wsClient } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { EditImagesDocument, type EditImagesMutation, type EditJobEventsSubscription } from './generated/graphql.js';

async function waitForHealth(url: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server did not become healthy');
}

const listening = (url: string): Promise<boolean> =>
  fetch(`${url}/healthz`).then(
    () => true,
    () => false,
  );

async function drainOnSigterm(
  spawnServer: (env: Record<string, string>) => ChildProcess,
  grace: string,
): Promise<{ terminal: { __typename: string; reason?: string }[]; code: number | null }> {
  const port = await freePort();
  const child = spawnServer({ PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', SHUTDOWN_GRACE_SECONDS: grace });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHealth(url);
    const img = await twoColourPng(256, 256, [200, 60, 30], [20, 120, 220]);
    const res = await postMultipart<EditImagesMutation>(url, EditImagesDocument, { prompt: 'sepia', size: '256x256', steps: 60 }, [
      { bytes: img, name: 'a.png' },
      { bytes: img, name: 'b.png' },
    ]);
    const jobId = res.body.data!.editImages.id;
    const client = wsClient(`ws://127.0.0.1:${port}/graphql`);
    let signalled = false;
    const events = collect<EditJobEventsSubscription>(
      client,
      'subscription($id: ID!) { editJobEvents(id: $id) { __typename ... on EditCancelled { reason } } }',
      { id: jobId },
    );
    // Signal once the job is demonstrably running.
    const sub = wsClient(`ws://127.0.0.1:${port}/graphql`);
    await new Promise<void>((resolve) => {
      sub.subscribe<EditJobEventsSubscription>(
        { query: 'subscription($id: ID!) { editJobEvents(id: $id) { __typename } }', variables: { id: jobId } },
        {
          next: (v) => {
            if (!signalled && v.data?.editJobEvents.__typename === 'EditProgress') {
              signalled = true;
              child.kill('SIGTERM');
              resolve();
            }
          },
          error: () => resolve(),
          complete: () => resolve(),
        },
      );
    });
    await new Promise((r) => setTimeout(r, 100));
    const refused = await postMultipart(url, EditImagesDocument, { prompt: 'x', size: '32x32' }, [{ bytes: img, name: 'c.png' }]).catch(() => null);
    if (refused) assert.equal(refused.body.errors?.[0]?.extensions?.code, 'UNAVAILABLE');
    const all = (await events) as unknown as { editJobEvents: { __typename: string; reason?: string } }[];
    const code = await exited;
    await client.dispose();
    await sub.dispose();
    // Nothing is left serving on the port (no orphaned server behind an exited npm).
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await listening(url), false, `something still serves ${url} after the process exited:\n${output}`);
    return { terminal: all.map((e) => e.editJobEvents).filter((e) => e.__typename !== 'EditProgress' && e.__typename !== 'EditQueued'), code };
  } finally {
    child.kill('SIGKILL');
  }
}

const direct = (env: Record<string, string>): ChildProcess =>
  spawn(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src/server/main.ts')], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });

/** `npm start` exactly as an operator (or a container's CMD) runs it; SIGTERM goes to npm's pid. */
const viaNpm = (env: Record<string, string>): ChildProcess =>
  spawn('npm', ['start', '--silent'], { cwd: PROJECT_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });

describe('graceful shutdown', { timeout: 120_000 }, () => {
  it('lets the running job finish, ends its subscription with the terminal event, refuses new jobs, exits 0', async () => {
    const { terminal, code } = await drainOnSigterm(direct, '60');
    assert.deepEqual(
      terminal.map((e) => e.__typename),
      ['EditCompleted'],
    );
    assert.equal(code, 0);
  });

  it('drains when SIGTERM is sent to the `npm start` process (the job completes), and npm exits 0', async () => {
    const { terminal, code } = await drainOnSigterm(viaNpm, '60');
    assert.deepEqual(
      terminal.map((e) => e.__typename),
      ['EditCompleted'],
    );
    assert.equal(code, 0);
  });

  it('cancels the running job with reason SHUTDOWN when the grace period ends, via `npm start`, and exits 0', async () => {
    const { terminal, code } = await drainOnSigterm(viaNpm, '0');
    assert.deepEqual(terminal, [{ __typename: 'EditCancelled', reason: 'SHUTDOWN' }]);
    assert.equal(code, 0);
  });
});
