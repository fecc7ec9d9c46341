/** SIGTERM on the real `npm start` entry point with a job running: it finishes, streams end, exit 0. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';
import { freePort } from './support/net.js';
import { collect, postMultipart, wsClient } from './support/graphql.js';
import { twoColourPng } from './support/images.js';
import { EditImagesDocument, EditJobEventsDocument, type EditImagesMutation, type EditJobEventsSubscription } from './generated/graphql.js';


async function waitForHealth(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server did not become healthy');
}

describe('graceful shutdown', () => {
  it('lets the running job finish, ends its subscription with the terminal event, refuses new jobs, exits 0', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src/server/main.ts')], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', SHUTDOWN_GRACE_SECONDS: '60' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitForHealth(url);
      const img = await twoColourPng(256, 256, [200, 60, 30], [20, 120, 220]);
      const res = await postMultipart<EditImagesMutation>(url, EditImagesDocument, { prompt: 'sepia', size: '256x256', steps: 60 }, [{ bytes: img, name: 'a.png' }, { bytes: img, name: 'b.png' }]);
      const jobId = res.body.data!.editImages.id;
      const client = wsClient(`ws://127.0.0.1:${port}/graphql`);
      let signalled = false;
      const events = collect<EditJobEventsSubscription>(client, EditJobEventsDocument, { id: jobId });
      // Signal once the job is demonstrably running.
      const sub = wsClient(`ws://127.0.0.1:${port}/graphql`);
      await new Promise<void>((resolve) => {
        sub.subscribe<EditJobEventsSubscription>({ query: 'subscription($id: ID!) { editJobEvents(id: $id) { __typename } }', variables: { id: jobId } }, {
          next: (v) => {
            if (!signalled && v.data?.editJobEvents.__typename === 'EditProgress') {
              signalled = true;
              child.kill('SIGTERM');
              resolve();
            }
          },
          error: () => resolve(),
          complete: () => resolve(),
        });
      });
      await new Promise((r) => setTimeout(r, 100));
      const refused = await postMultipart(url, EditImagesDocument, { prompt: 'x', size: '32x32' }, [{ bytes: img, name: 'c.png' }]).catch(() => null);
      if (refused) assert.equal(refused.body.errors?.[0]?.extensions?.code, 'UNAVAILABLE');
      const all = (await events).map((e) => e.editJobEvents.__typename);
      assert.equal(all[all.length - 1], 'EditCompleted');
      assert.equal(all.filter((t) => t === 'EditCompleted').length, 1);
      assert.equal(await exited, 0);
      await client.dispose();
      await sub.dispose();
    } finally {
      child.kill('SIGKILL');
    }
  });
});
