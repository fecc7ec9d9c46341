/** The emitted schema.graphql matches the code, and keeps the public contract. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { buildSchema, findBreakingChanges, lexicographicSortSchema, printSchema } from 'graphql';
import { printableSchema } from '../src/schema/index.js';
import { PROJECT_ROOT } from '../src/config.js';

// The project's own copy of the public contract (never read from outside the repository).
const CONTRACT = join(PROJECT_ROOT, 'api', 'contract.graphql');
const emitted = readFileSync(join(PROJECT_ROOT, 'schema.graphql'), 'utf8');

describe('schema.graphql', () => {
  it('is what the Pothos schema prints (run `npm run codegen` after changing src/schema)', () => {
    const fromFile = printSchema(lexicographicSortSchema(buildSchema(emitted)));
    assert.equal(fromFile, printSchema(printableSchema()));
  });

  it('has no breaking changes against the public contract', () => {
    const contract = buildSchema(readFileSync(CONTRACT, 'utf8'));
    const breaks = findBreakingChanges(contract, buildSchema(emitted));
    assert.deepEqual(
      breaks.map((b) => `${b.type}: ${b.description}`),
      [],
    );
  });

  it('and the typed test documents are up to date with codegen', () => {
    // `graphql-codegen --check` exits non-zero when a generated file would change.
    execFileSync(
      process.execPath,
      ['--import', 'tsx', join(PROJECT_ROOT, 'node_modules/@graphql-codegen/cli/cjs/bin.js'), '--config', 'codegen.yml', '--check'],
      {
        cwd: PROJECT_ROOT,
        stdio: 'pipe',
      },
    );
  });
});
