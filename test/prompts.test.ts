/**
 * An empty or whitespace-only prompt is refused with BAD_USER_INPUT on GraphQL and REST (such a job
 * would change nothing), unless the model declares that it takes none (edit-server.json
 * `promptOptional`).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';
import { startTestServer, type TestServer } from './support/server.js';
import { postGraphQL } from './support/graphql.js';
import { solidPng } from './support/images.js';

const EDIT = `mutation($u: [String!]!, $p: String!, $ps: [String!], $m: String) {
  editImages(imageUrls: $u, prompt: $p, prompts: $ps, model: $m, size: "16x16", steps: 2) { id }
}`;

describe('empty prompts', () => {
  let root: string;
  let server: TestServer;
  let url: string;
  let png: Buffer;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'prompts-'));
    cpSync(join(PROJECT_ROOT, 'models/tiny-edit'), join(root, 'tiny-edit'), { recursive: true });
    cpSync(join(PROJECT_ROOT, 'models/tiny-edit'), join(root, 'no-prompt'), { recursive: true });
    const config = join(root, 'no-prompt', 'edit-server.json');
    writeFileSync(config, JSON.stringify({ ...JSON.parse(readFileSync(config, 'utf8')), promptOptional: true }));
    server = await startTestServer({ MODELS_DIR: root });
    png = await solidPng(16, 16, [200, 60, 30]);
    url = `data:image/png;base64,${png.toString('base64')}`;
  });
  after(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  });

  const graphql = (variables: Record<string, unknown>) => postGraphQL<{ editImages: { id: string } }>(server.url, EDIT, { u: [url], ...variables });

  it('refuses an empty or whitespace-only prompt on GraphQL with BAD_USER_INPUT', async () => {
    for (const p of ['', '   ', '\n\t']) {
      const { body } = await graphql({ p });
      assert.equal(body.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', `prompt ${JSON.stringify(p)}: ${JSON.stringify(body)}`);
      assert.match(body.errors![0]!.message, /^prompt is empty/);
    }
  });

  it('refuses an empty entry of prompts, naming it', async () => {
    const { body } = await postGraphQL(server.url, EDIT, { u: [url, url], p: 'invert', ps: ['invert', ' '] });
    assert.equal(body.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.match(body.errors![0]!.message, /^prompts\[1\] is empty/);
  });

  it('refuses an empty prompt on REST with a 400 naming the field', async () => {
    const form = new FormData();
    form.set('image', new Blob([new Uint8Array(png)]), 'a.png');
    form.set('prompt', ' ');
    const res = await fetch(`${server.url}/v1/images/edits`, { method: 'POST', body: form });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: { code: string; param: string | null; message: string } };
    assert.equal(body.error.code, 'BAD_USER_INPUT');
    assert.equal(body.error.param, 'prompt');
  });

  it('accepts an empty prompt for a model that declares it takes none, and says which models need one', async () => {
    const { body } = await graphql({ p: '', m: 'no-prompt' });
    assert.equal(body.errors, undefined, JSON.stringify(body.errors));
    assert.ok(body.data?.editImages.id);
    const models = await postGraphQL<{ models: { id: string; promptRequired: boolean }[] }>(server.url, '{ models { id promptRequired } }');
    assert.deepEqual(Object.fromEntries(models.body.data!.models.map((m) => [m.id, m.promptRequired])), { 'no-prompt': false, 'tiny-edit': true });
  });
});
