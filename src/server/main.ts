/** `npm start`: serve the API on the configured (default: built-in) models. */
import { ConfigError, isLoopback, loadConfig } from './config.js';
import { startServer } from './app.js';
import { engineConfig } from './services.js';
import { createLogger, parseLogFormat } from './logging.js';
import { InferenceEngine } from '../inference/engine.js';
import { createJobSystem, jobSystemModule } from '../jobs/jobSystem.js';
import { createResultUrls } from '../jobs/systemConfig.js';
import type { ServerConfig } from './config.js';

// At info until the configuration (which checks LOG_LEVEL and LOG_FORMAT) is read: a bad value is reported too.
const log = createLogger('info', parseLogFormat(process.env.LOG_FORMAT) ?? 'json');

/**
 * What an operator must act on about the models: each folder's warnings (one line per model; the
 * 'model loaded' lines come as models load, services.ts) and each folder that cannot be served.
 */
function logModels(engine: InferenceEngine): void {
  for (const m of engine.models()) {
    if (m.warnings.length > 0) log.warn({ model: m.id, warnings: m.warnings }, `model ${m.id}: ${m.warnings.join('; ')}`);
  }
  logFailures(engine);
}

/** Each model that cannot be served, and loudly when none can. */
function logFailures(engine: InferenceEngine): void {
  const failed = engine.failures();
  for (const { id, reason } of failed) log.error({ model: id, reason }, `model ${id} cannot be served (fix the folder, then send SIGHUP or use it)`);
  if (failed.length > 0 && failed.length === engine.catalogue.modelIds().length) {
    log.error(
      { modelsDir: engine.catalogue.modelsDir },
      'NO MODEL CAN BE SERVED: every folder under MODELS_DIR failed; every edit gets MODEL_UNAVAILABLE until one is fixed',
    );
  }
}

/** SIGHUP: read the folders that failed again (a folder fixed on disk is served without a restart). */
function reloadOnHangup(engine: InferenceEngine): void {
  process.on('SIGHUP', () => {
    const ready = engine.reload();
    log.info({ ready, stillFailing: engine.failures().map((f) => f.id) }, 'SIGHUP: model folders read again');
    for (const { id, reason } of engine.failures()) log.error({ model: id, reason }, `model ${id} cannot be served`);
  });
}

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
  log.level = config.logLevel;
  const authOn = config.authTokens.length + config.authBasic.length + config.authAdminTokens.length > 0;
  // A worker serves no port: auth does not concern it.
  if (!authOn && config.role !== 'worker') {
    if (!isLoopback(config.host) && !config.allowAnonymous) {
      log.fatal(`refusing to serve without auth on non-loopback HOST ${config.host}: set AUTH_TOKENS, AUTH_ADMIN_TOKENS or AUTH_BASIC, or ALLOW_ANONYMOUS=1`);
      process.exit(2);
    }
    log.warn('no AUTH_TOKENS or AUTH_BASIC set: every operation is open to anyone who can reach the server');
  }
  // Each job backend says which roles it runs (jobSystem.ts).
  const roleProblem = jobSystemModule(config).roleProblem(config);
  if (roleProblem) {
    log.fatal(roleProblem);
    process.exit(2);
  }
  if (config.role === 'worker') {
    await runWorkerOnly(config);
    return;
  }
  const server = await startServer(config, { logger: log });
  logModels(server.engine);
  reloadOnHangup(server.engine);
  log.info(
    {
      url: server.url,
      graphql: `${server.url}/graphql`,
      models: server.engine.models().map((m) => m.id),
      defaultModel: server.engine.defaultModelId,
      providers: server.engine.providers(),
    },
    'image-edit-server listening',
  );
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

/** ROLE=worker: the inference engine and the job system's worker, no HTTP. */
async function runWorkerOnly(config: ServerConfig): Promise<void> {
  const engine = await InferenceEngine.start(engineConfig(config, log, 'worker'));
  const system = await createJobSystem({
    config,
    log,
    engine,
    resultUrls: createResultUrls(config),
    tenantQuota: null,
  });
  const worker = system.worker;
  if (!worker) throw new Error(`the ${system.name} job system has no worker for ROLE=worker`);
  logModels(engine);
  reloadOnHangup(engine);
  log.info({ workerId: worker.workerId, models: engine.models().map((m) => m.id) }, 'image-edit worker ready');
  const stop = (signal: string): void => {
    log.info({ signal }, 'signal received: finishing the current job');
    const grace = setTimeout(() => process.exit(0), config.shutdownGraceSeconds * 1000).unref();
    void worker
      .close()
      .then(() => engine.close())
      .then(() => {
        clearTimeout(grace);
        process.exit(0);
      });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

await main();
