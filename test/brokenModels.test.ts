/**
 * One broken folder in MODELS_DIR does not take the service down: the good models are served, the
 * broken one is listed with state 'error' and its reason, /healthz says 'degraded' and names it, its
 * jobs get MODEL_UNAVAILABLE, and once fixed on disk it loads on next use or on SIGHUP.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';
import { startTestServer, type TestServer } from './support/server.js';
import { postGraphQL } from './support/graphql.js';
import { solidPng } from './support/images.js';
import { startServerProcess, waitFor } from './support/processes.js';
import { freePort } from './support/net.js';
import { GraphBuilder } from '../models/onnx/graph.js';

const TINY = join(PROJECT_ROOT, 'models/tiny-edit');
const MODELS = '{ models { id state error limits { maxN } } }';
type Models = { models: { id: string; state: string; error: string | null; limits: { maxN: number } }[] };

/** A models dir with a good copy of tiny-edit and, under `broken`, one whose unet/model.onnx is moved away. */
function modelsDir(broken: string[], good: string[] = ['good']): string {
  const root = mkdtempSync(join(tmpdir(), 'broken-models-'));
  for (const id of [...good, ...broken]) cpSync(TINY, join(root, id), { recursive: true });
  for (const id of broken) renameSync(join(root, id, 'unet/model.onnx'), join(root, id, 'unet/model.onnx.part'));
  return root;
}

const fix = (root: string, id: string): void => renameSync(join(root, id, 'unet/model.onnx.part'), join(root, id, 'unet/model.onnx'));

async function restEdit(url: string, model: string): Promise<{ status: number; body: { error?: { code: string; message: string }; data?: unknown[] } }> {
  const form = new FormData();
  form.set('image', new Blob([new Uint8Array(await solidPng(16, 16, [200, 60, 30]))]), 'a.png');
  form.set('prompt', 'invert');
  form.set('model', model);
  form.set('size', '16x16');
  const res = await fetch(`${url}/v1/images/edits`, { method: 'POST', body: form });
  return { status: res.status, body: (await res.json()) as never };
}

describe('a broken folder in MODELS_DIR', () => {
  let root: string;
  let server: TestServer;
  before(async () => {
    root = modelsDir(['half-copied']);
    server = await startTestServer({ MODELS_DIR: root, DEFAULT_MODEL: 'good' });
  });
  after(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('serves the good model and lists the broken one with state error and its reason', async () => {
    const { body } = await postGraphQL<Models>(server.url, MODELS);
    const byId = Object.fromEntries(body.data!.models.map((m) => [m.id, m]));
    assert.equal(byId.good!.error, null);
    assert.notEqual(byId.good!.state, 'error');
    assert.equal(byId['half-copied']!.state, 'error');
    assert.match(byId['half-copied']!.error!, /missing unet\/model\.onnx/);
    assert.equal(byId['half-copied']!.limits.maxN, 0, 'a model that cannot be served takes no edits');
    const ok = await restEdit(server.url, 'good');
    assert.equal(ok.status, 200, JSON.stringify(ok.body.error));
  });

  it('makes /healthz report degraded, naming the broken folder and why', async () => {
    const res = await fetch(`${server.url}/healthz`);
    assert.equal(res.status, 200, 'the good model is still served');
    const body = (await res.json()) as { status: string; failedModels: Record<string, string>; models: string[] };
    assert.equal(body.status, 'degraded');
    assert.deepEqual(Object.keys(body.failedModels), ['half-copied']);
    assert.match(body.failedModels['half-copied']!, /missing unet\/model\.onnx/);
  });

  it('answers its jobs with MODEL_UNAVAILABLE and the reason, on GraphQL and REST', async () => {
    const gql = await postGraphQL<unknown>(
      server.url,
      'mutation($u: [String!]!) { editImages(imageUrls: $u, prompt: "invert", model: "half-copied") { id } }',
      { u: [`data:image/png;base64,${(await solidPng(16, 16, [1, 2, 3])).toString('base64')}`] },
    );
    assert.equal(gql.body.errors?.[0]?.extensions?.code, 'MODEL_UNAVAILABLE');
    assert.match(gql.body.errors![0]!.message, /half-copied.*missing unet\/model\.onnx/);
    const rest = await restEdit(server.url, 'half-copied');
    assert.equal(rest.status, 503);
    assert.equal(rest.body.error?.code, 'MODEL_UNAVAILABLE');
    assert.match(rest.body.error!.message, /missing unet\/model\.onnx/);
  });

  it('loads the folder on its next use once it is fixed on disk, without a restart', async () => {
    fix(root, 'half-copied');
    const res = await restEdit(server.url, 'half-copied');
    assert.equal(res.status, 200, JSON.stringify(res.body.error));
    const { body } = await postGraphQL<Models>(server.url, MODELS);
    assert.equal(body.data!.models.find((m) => m.id === 'half-copied')!.error, null);
    const health = (await (await fetch(`${server.url}/healthz`)).json()) as { status: string };
    assert.equal(health.status, 'ok');
  });
});

describe('a server whose every folder is broken', () => {
  let root: string;
  after(() => rmSync(root, { recursive: true, force: true }));

  it('starts, says so loudly, and serves a folder fixed on disk after SIGHUP', async () => {
    root = modelsDir(['only'], []);
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const proc = startServerProcess({ MODELS_DIR: root, PORT: String(port), LOG_FORMAT: 'json' });
    try {
      await waitFor(async () => (await fetch(`${url}/healthz`)).ok, 'the server to listen', 120_000);
      assert.ok(
        proc.output.some((l) => /NO MODEL CAN BE SERVED/.test(l)),
        proc.output.join('\n'),
      );
      const before = await postGraphQL<Models>(url, MODELS);
      assert.equal(before.body.data!.models[0]!.state, 'error');
      fix(root, 'only');
      proc.child.kill('SIGHUP');
      await waitFor(async () => (await postGraphQL<Models>(url, MODELS)).body.data!.models[0]!.state !== 'error', 'SIGHUP to read the folder again');
      const health = (await (await fetch(`${url}/healthz`)).json()) as { status: string };
      assert.equal(health.status, 'ok');
    } finally {
      proc.child.kill('SIGTERM');
      await new Promise((r) => proc.child.once('exit', r));
    }
  });
});

describe('a folder that reads but whose sessions do not open', () => {
  let root: string;
  let server: TestServer;
  before(async () => {
    root = modelsDir([], ['good', 'bad-graph']);
    // Ports as the family expects, an operator ONNX Runtime does not have: the session fails to open.
    const g = new GraphBuilder('unet');
    const sample = g.input('sample', 'float32', ['batch_size', 8, 'height', 'width']);
    g.input('timestep', 'float32', ['batch_size']);
    g.input('encoder_hidden_states', 'float32', ['batch_size', 'sequence_length', 16]);
    g.output('out_sample', g.op1('NoSuchOperator', [sample]), 'float32', ['batch_size', 4, 'height', 'width']);
    writeFileSync(join(root, 'bad-graph', 'unet', 'model.onnx'), g.toBytes());
    server = await startTestServer({ MODELS_DIR: root, DEFAULT_MODEL: 'good', PRELOAD_MODELS: 'good,bad-graph' });
  });
  after(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('starts with the others served, the broken one in state error, and its jobs refused with MODEL_UNAVAILABLE', async () => {
    const { body } = await postGraphQL<Models>(server.url, MODELS);
    const byId = Object.fromEntries(body.data!.models.map((m) => [m.id, m]));
    assert.equal(byId.good!.state, 'loaded');
    assert.equal(byId['bad-graph']!.state, 'error');
    assert.match(byId['bad-graph']!.error!, /NoSuchOperator/);
    const health = (await (await fetch(`${server.url}/healthz`)).json()) as { status: string; failedModels: Record<string, string> };
    assert.equal(health.status, 'degraded');
    assert.deepEqual(Object.keys(health.failedModels), ['bad-graph']);
    const res = await restEdit(server.url, 'bad-graph');
    assert.equal(res.body.error?.code, 'MODEL_UNAVAILABLE', JSON.stringify(res.body));
    assert.match(res.body.error!.message, /bad-graph could not be loaded/);
    assert.equal((await restEdit(server.url, 'good')).status, 200);
  });
});
