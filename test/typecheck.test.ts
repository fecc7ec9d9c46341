/** The whole project (server, browser page, models, tests, bench) compiles under strict TypeScript. */
import { it } from 'node:test';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';

it('type-checks with tsc --noEmit (strict)', () => {
  execFileSync(process.execPath, [join(PROJECT_ROOT, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', PROJECT_ROOT], { cwd: PROJECT_ROOT, stdio: 'pipe' });
});
