/**
 * The server: the services (services.ts) behind one node:http listener on one port — HTTP routes
 * (routes.ts), GraphQL over HTTP and SSE (yoga.ts) and graphql-ws (websocket.ts) — and its
 * shutdown.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { InferenceEngine } from '../inference/engine.js';
import type { EditService } from '../jobs/editService.js';
import type { JobBackend } from '../jobs/types.js';
import type { Authenticator } from './auth.js';
import type { ServerConfig } from './config.js';
import { createRoutes } from './routes.js';
import { createServices, type Services } from './services.js';
import { attachGraphQLWs } from './websocket.js';
import { createGraphQLServer } from './yoga.js';

export interface RunningServer {
  url: string;
  httpServer: Server;
  engine: InferenceEngine;
  jobs: JobBackend;
  edits: EditService;
  auth: Authenticator;
  log: Logger;
  /** SIGTERM behaviour: no new jobs, running ones finish within the grace period, then everything closes. */
  shutdown(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  /** Services built by the caller (tests: a catalogue-only engine); they are closed with the server. */
  services?: Services;
}

export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<RunningServer> {
  const services = options.services ?? (await createServices(config, { logger: options.logger }));
  const { log } = services;
  const { yoga, masker } = createGraphQLServer(services);
  const routes = createRoutes(services, yoga);
  const httpServer = createServer(routes.listener);
  const ws = attachGraphQLWs(httpServer, yoga, masker, services);

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(config.port, config.host, () => resolve());
  });
  const address = httpServer.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  let shuttingDown = false;
  return {
    url: `http://${host}:${address.port}`,
    httpServer,
    engine: services.engine,
    jobs: services.jobs,
    edits: services.edits,
    auth: services.auth,
    log,
    async shutdown(graceMs = config.shutdownGraceSeconds * 1000) {
      if (shuttingDown) return;
      shuttingDown = true;
      routes.shuttingDown();
      log.info({ graceMs }, 'shutting down: no new jobs; waiting for running ones');
      await services.drain(graceMs);
      // Terminal events are queued on the sockets; give them a moment to flush before closing.
      await new Promise((r) => setTimeout(r, 200));
      await ws.close();
      httpServer.closeIdleConnections();
      // A client that stops reading (or a slow upload) must not hold the process open: responses
      // still in flight after a short delay are cut.
      const forceClose = setTimeout(() => httpServer.closeAllConnections(), 2000);
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
      clearTimeout(forceClose);
      await services.close();
      log.info('shut down');
    },
  };
}
