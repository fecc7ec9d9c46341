/** `npm start`: serve the API on the configured (default: built-in) models. */
import { pino } from 'pino';
import { ConfigError, isLoopback, loadConfig } from './config.js';
import { startServer } from './app.js';

const log = pino({ level: process.env.LOG_LEVEL || 'info' });

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      log.fatal(err.message);
      process.exit(2);
    }
    throw err;
  }
  const authOn = config.authTokens.length + config.authBasic.length > 0;
  if (!authOn) {
    if (!isLoopback(config.host) && !config.allowAnonymous) {
      log.fatal(`refusing to serve without auth on non-loopback HOST ${config.host}: set AUTH_TOKENS or AUTH_BASIC, or ALLOW_ANONYMOUS=1`);
      process.exit(2);
    }
    log.warn('no AUTH_TOKENS or AUTH_BASIC set: every operation is open to anyone who can reach the server');
  }
  const server = await startServer(config, { logger: log });
  log.info({ url: server.url, graphql: `${server.url}/graphql`, models: server.engine.models().map((m) => m.id), defaultModel: server.engine.defaultModelId, providers: server.engine.providers() }, 'image-edit-server listening');
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'signal received');
    server.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

await main();
