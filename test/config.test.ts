/** Environment parsing: one strict boolean parser, strict integers, and a server that refuses junk at start. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseBoolean } from '../src/server/config.js';
import { PROJECT_ROOT } from '../src/config.js';

describe('parseBoolean', () => {
  it('accepts the documented words in any case, and nothing else', () => {
    for (const word of ['1', 'true', 'yes', 'on', 'TRUE', 'Yes', ' on ']) assert.equal(parseBoolean('X', word), true, word);
    for (const word of ['0', 'false', 'no', 'off', 'FALSE', 'No', 'OFF']) assert.equal(parseBoolean('X', word), false, word);
    for (const junk of ['', 'y', 'n', '2', 'enabled', 'nope', 'true1', 'o n']) {
      assert.throws(
        () => parseBoolean('MERGE_JOBS', junk),
        (err: Error) => err instanceof ConfigError && err.message.includes('MERGE_JOBS') && err.message.includes(`"${junk}"`),
        junk,
      );
    }
  });

  it('reads every boolean variable, with its default when unset or empty', () => {
    assert.equal(loadConfig({}).mergeJobs, true);
    assert.equal(loadConfig({ MERGE_JOBS: '' }).mergeJobs, true);
    assert.equal(loadConfig({ MERGE_JOBS: 'off' }).mergeJobs, false);
    assert.equal(loadConfig({ MERGE_JOBS: 'no' }).mergeJobs, false);
    assert.equal(loadConfig({}).allowAnonymous, false);
    assert.equal(loadConfig({ ALLOW_ANONYMOUS: 'yes' }).allowAnonymous, true);
    assert.equal(loadConfig({ ALLOW_ANONYMOUS: 'On' }).allowAnonymous, true);
    for (const name of ['MERGE_JOBS', 'ALLOW_ANONYMOUS', 'ORT_ALLOW_SPINNING', 'GRAPHQL_INTROSPECTION', 'GRAPHQL_SUGGESTIONS', 'GRAPHIQL', 'TRUST_PROXY']) {
      assert.throws(() => loadConfig({ [name]: 'junk' }), new RegExp(`${name} must be a boolean.*"junk"`), name);
    }
  });
});

describe('integers and levels', () => {
  it('take decimal digits only', () => {
    assert.equal(loadConfig({ PORT: '8080' }).port, 8080);
    assert.equal(loadConfig({ MAX_QUEUED_JOBS: ' 7 ' }).maxQueuedJobs, 7);
    for (const junk of ['10abc', '1e3', '0x10', '1.5', '-1', '+5', 'ten', '99999999999999999999']) {
      assert.throws(
        () => loadConfig({ MAX_QUEUED_JOBS: junk }),
        (err: Error) => err instanceof ConfigError && err.message.includes('MAX_QUEUED_JOBS'),
        junk,
      );
    }
  });

  it('LOG_LEVEL is a pino level', () => {
    assert.equal(loadConfig({ LOG_LEVEL: 'debug' }).logLevel, 'debug');
    assert.throws(() => loadConfig({ LOG_LEVEL: 'loud' }), /LOG_LEVEL must be one of .*"loud"/);
  });

  it('WEBHOOK_SECRET is whsec_ and base64 of 24 bytes or more; PUBLIC_URL an http(s) URL', () => {
    const secret = `whsec_${Buffer.alloc(32, 1).toString('base64')}`;
    assert.equal(loadConfig({ WEBHOOK_SECRET: secret }).webhookSecret, secret);
    for (const bad of ['secret', `whsec_${Buffer.alloc(8).toString('base64')}`, 'whsec_not base64!'])
      assert.throws(() => loadConfig({ WEBHOOK_SECRET: bad }), /WEBHOOK_SECRET must be whsec_/, bad);
    assert.equal(loadConfig({ PUBLIC_URL: 'https://images.example.com/' }).publicUrl, 'https://images.example.com');
    for (const bad of ['images.example.com', 'ftp://x', 'https://x/?a=1'])
      assert.throws(() => loadConfig({ PUBLIC_URL: bad }), /PUBLIC_URL must be an http\(s\) URL/, bad);
  });
});

describe('npm start', () => {
  it('refuses junk at start: exit status 2 and a message naming the variable and the value', () => {
    const start = (env: Record<string, string>) =>
      spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src/server/main.ts')], {
        cwd: PROJECT_ROOT,
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, PORT: '0', ...env },
      });
    const junk = start({ MERGE_JOBS: 'nah' });
    assert.equal(junk.status, 2, junk.stdout + junk.stderr);
    assert.match(junk.stdout, /"level":60.*MERGE_JOBS must be a boolean.*\\"nah\\"/);
    const level = start({ LOG_LEVEL: 'loud' });
    assert.equal(level.status, 2, level.stdout + level.stderr);
    assert.match(level.stdout, /LOG_LEVEL must be one of/);
  });
});
