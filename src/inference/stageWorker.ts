/**
 * The stage thread (stageThread.ts): opens models' text encoders and VAEs and runs them on request,
 * most urgent first (stagePriority), in arrival order within a priority.
 */
import type { EngineLogLevel } from './log.js';
import { parentPort, workerData } from 'node:worker_threads';
import { ModelFolderError, readModelFolder } from './modelFolder.js';
import { openComponentSessions } from './sessions.js';
import type { ComponentSessions } from './sessions.js';
import { stagePriority } from './stageThread.js';
import type { ComponentPorts, StageRequest, StageResponse, StageSettings } from './stageThread.js';
import type { Component } from './components.js';
import { InferenceError } from './errors.js';

const port = parentPort!;
const settings = workerData as StageSettings;
const post = (message: StageResponse, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);
const log = (message: string, level: EngineLogLevel): void => post({ type: 'log', message, level });

const models = new Map<string, ComponentSessions>();
const queue: Exclude<StageRequest, { type: 'close' }>[] = [];
let running = false;
let closing = false;

async function serve(request: Exclude<StageRequest, { type: 'close' }>): Promise<void> {
  switch (request.type) {
    case 'open': {
      await models.get(request.modelId)?.release();
      const spec = readModelFolder(request.dir, request.modelId);
      const sessions = await openComponentSessions(spec, request.components, { ...settings, log });
      models.set(request.modelId, sessions);
      const ports: [Component, ComponentPorts][] = [...sessions.ports].map(([c, p]) => [
        c,
        { inputs: [...p.inputs.values()], outputs: [...p.outputs.values()] },
      ]);
      return post({ type: 'opened', id: request.id, provider: sessions.provider, ports });
    }
    case 'release':
      await models.get(request.modelId)?.release();
      models.delete(request.modelId);
      return post({ type: 'released', id: request.id });
    case 'run': {
      const sessions = models.get(request.modelId);
      if (!sessions) throw new InferenceError('INTERNAL', `model ${request.modelId} is not open on the encoder thread`);
      const { outputs, ms } = await sessions.exec(request.component, request.feeds, request.outputNames);
      // Distinct buffers (ONNX Runtime's own, or converted from fp16) go over without a copy; the
      // feeds' buffers go back for reuse.
      const feeds = [...new Set(Object.values(request.feeds).map((f) => f.data.buffer as ArrayBuffer))];
      return post({ type: 'result', id: request.id, outputs, ms, feeds }, [...new Set([...outputs.map((o) => o.buffer as ArrayBuffer), ...feeds])]);
    }
  }
}

async function drain(): Promise<void> {
  running = true;
  while (queue.length > 0) {
    // Messages that arrived during the last run are all queued by now: the most urgent goes first.
    const next = queue.reduce((best, r, i) => (stagePriority(r) < stagePriority(queue[best]!) ? i : best), 0);
    const request = queue.splice(next, 1)[0]!;
    try {
      await serve(request);
    } catch (err) {
      const code = err instanceof InferenceError ? err.code : null;
      post({ type: 'error', id: request.id, code, message: (err as Error).message, folder: err instanceof ModelFolderError });
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  running = false;
  if (closing) await close();
}

async function close(): Promise<void> {
  await Promise.all([...models.values()].map((s) => s.release()));
  process.exit(0);
}

port.on('message', (message: StageRequest) => {
  if (message.type === 'close') {
    closing = true;
    if (!running) void close();
    return;
  }
  queue.push(message);
  if (!running) void drain();
});
