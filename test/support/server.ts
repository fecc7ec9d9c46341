/** Starts the real server in-process on a free loopback port for end-to-end tests. */
import { startServer, type RunningServer } from '../../src/server/app.js';
import { loadConfig } from '../../src/server/config.js';
import { createServices } from '../../src/server/services.js';
import { pino } from 'pino';

export interface TestServer {
  url: string;
  wsUrl: string;
  server: RunningServer;
  close(): Promise<void>;
}

/** `inference: false`: the engine reads the model catalogue and runs nothing (no worker thread, no sessions). */
export async function startTestServer(env: Record<string, string> = {}, options: { inference?: boolean } = {}): Promise<TestServer> {
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', ...env });
  const logger = pino({ level: env.LOG_LEVEL ?? 'silent' });
  const services = await createServices(config, { logger, inference: options.inference });
  const server = await startServer(config, { services });
  return { url: server.url, wsUrl: `${server.url.replace(/^http/, 'ws')}/graphql`, server, close: () => server.shutdown(1000) };
}
