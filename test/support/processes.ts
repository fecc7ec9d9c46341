/** Server processes for tests that need several (Redis scale-out, tenants, faults). */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../src/config.js';

export interface Proc {
  child: ChildProcess;
  /** Complete log lines so far (chunks are joined first: a line may arrive in pieces). */
  readonly output: string[];
}

/** `src/server/main.ts` in a child process with `env` on top of this one's. */
export function startServerProcess(env: Record<string, string>): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src/server/main.ts')], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  return {
    child,
    get output() {
      return text.split('\n').filter(Boolean);
    },
  };
}

/** Polls `check` every 100 ms until it holds (errors count as "not yet"), or fails after `ms`. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      if (await check()) return;
    } catch {
      // not ready yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}
