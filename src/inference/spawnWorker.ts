import { Worker } from 'node:worker_threads';

/**
 * A worker thread running the module `name` (e.g. 'worker') next to this file. Run from TypeScript
 * sources, the worker registers tsx's loader before importing it (Node 20 ignores --import in a
 * worker's execArgv).
 */
export function spawnModuleWorker(name: string, workerData: unknown): Worker {
  const isTs = import.meta.url.endsWith('.ts');
  const url = new URL(`${name}.${isTs ? 'ts' : 'js'}`, import.meta.url).href;
  return isTs
    ? new Worker(`import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(url)}); });`, {
        eval: true,
        workerData,
      })
    : new Worker(new URL(url), { workerData });
}
