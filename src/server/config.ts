/**
 * Server configuration from the environment. Every variable has a documented default
 * (docs/api.md, "Configuration"); invalid values stop the server at start with a clear message.
 */
import { LOG_FORMATS, type LogFormat, parseLogFormat } from './logging.js';
import { levels as pinoLevels } from 'pino';
import { defaultModelsDir, optimizedCacheDir } from '../config.js';
import { defaultMemoryBudget, DEFAULT_MAX_INPUT_PIXELS } from '../inference/engine.js';
import type { ExecutionProviderName } from '../inference/sessions.js';
import { DEFAULT_PNG_COMPRESSION_LEVEL } from '../inference/imageIO.js';

export interface ServerConfig {
  port: number;
  host: string;
  modelsDir: string;
  defaultModel: string | undefined;
  provider: ExecutionProviderName;
  intraOpThreads: number | undefined;
  /** ONNX Runtime pool threads busy-wait between operators. */
  ortAllowSpinning: boolean;
  /** ONNX Runtime's CPU memory arena (keeps the largest run's memory between jobs). */
  ortCpuMemArena: boolean;
  /** ONNX Runtime's optimized-model cache folder (ORT_OPTIMIZED_CACHE); null: off. */
  ortOptimizedCache: string | null;
  /** ONNX Runtime's memory pattern (ORT_MEM_PATTERN, default on; off: only a shape's first run is cold, less memory). */
  ortMemPattern: boolean;
  /** One small run of each large model component as it opens (ORT_WARM_UP). */
  ortWarmUp: boolean;
  /** Text encoders and VAEs on a thread of their own, beside the denoise loop (STAGE_THREAD). */
  stageThread: boolean;
  memoryBudgetBytes: number;
  /** PRELOAD_MODELS: opened at start (default: the default model); the others load on first use. */
  preloadModels: string[] | undefined;
  /** MODEL_MEMORY_MB: weights the loaded models may hold together; unbounded when unset. */
  modelMemoryBytes: number | undefined;
  maxImagesPerJob: number;
  maxFileBytes: number;
  maxTotalBytes: number;
  maxInputPixels: number;
  /** Declared pixels of all inputs of one job (and of jobs merged into one pipeline call). */
  maxJobInputPixels: number;
  /** Declared input pixels of unfinished jobs and submissions in progress in this process. */
  maxProcessInputPixels: number;
  /** zlib level 0–9 of PNG outputs. */
  pngCompressionLevel: number;
  retentionSeconds: number;
  maxQueuedJobs: number;
  jobTimeoutSeconds: number;
  /** Cross-request batching of compatible queued jobs. */
  mergeJobs: boolean;
  /** Redis for scale-out (BullMQ queue + pub/sub events); unset keeps everything in memory. */
  redisUrl: string | undefined;
  /** api: HTTP/WS only; worker: runs jobs only; all: both. */
  role: 'api' | 'worker' | 'all';
  jobAttempts: number;
  jobStallSeconds: number;
  shutdownGraceSeconds: number;
  authTokens: string[];
  authBasic: { user: string; pass: string }[];
  /** Bearer tokens that see and cancel every job (they are valid credentials too). */
  authAdminTokens: string[];
  /** Key of the HMAC that turns a credential into the owner id stored with jobs; unset: derived from the credentials. */
  ownerHashSecret: string | undefined;
  /** Failed authentications per IP within authFailWindowSeconds before 429; 0 turns this off. */
  authFailLimit: number;
  authFailWindowSeconds: number;
  /** First block after too many failures; each further failure while the IP has a strike doubles it (up to an hour). */
  authFailBlockSeconds: number;
  /** Unfinished (queued or running) jobs one principal may have; 0: no per-tenant bound. Only with auth on. */
  tenantMaxQueuedJobs: number;
  /** Output images (inputs × n) of one principal's unfinished jobs; 0: no bound. Only with auth on. */
  tenantMaxQueuedImages: number;
  allowAnonymous: boolean;
  production: boolean;
  logLevel: string;
  /** LOG_FORMAT: json, or pretty (pino-pretty); default pretty on a terminal, else json. */
  logFormat: LogFormat;
  /** GraphQL document limits (graphql-armor), see docs/security.md. */
  graphqlMaxDepth: number;
  graphqlMaxAliases: number;
  graphqlMaxTokens: number;
  graphqlMaxCost: number;
  graphqlMaxDirectives: number;
  /** Bound on a non-multipart (JSON, GraphQL string, form-urlencoded) body to /graphql. */
  graphqlMaxJsonBytes: number;
  introspection: boolean;
  fieldSuggestions: boolean;
  graphiql: boolean;
  wsInitTimeoutMs: number;
  wsMaxPayloadBytes: number;
  wsMaxSubscriptionsPerConnection: number;
  /** Requests per minute per credential (or per client IP when anonymous); 0 turns rate limiting off. */
  rateLimitPerMinute: number;
  /** Token-bucket size: how many requests may come at once. Defaults to rateLimitPerMinute. */
  rateLimitBurst: number;
  /** Take the client IP for anonymous rate limiting from the last X-Forwarded-For hop. */
  trustProxy: boolean;
  /** Origins allowed to call /graphql from a browser on another origin (CORS); empty: none. */
  corsOrigins: string[];
  /** Key of result URLs' HMAC; unset: a random key of this process (its URLs open on it alone). */
  resultUrlSecret: string | undefined;
  /** How long a result URL opens its image. */
  resultUrlTtlSeconds: number;
  /** The server's address as clients reach it (result URLs); unset: taken from each request's Host. */
  publicUrl: string | undefined;
  /** Results also put in an S3-compatible bucket, and their URLs presigned there (S3_BUCKET); null: served from the job store. */
  s3Results: S3ResultsConfig | null;
  /** Standard Webhooks secret (`whsec_…`); unset: webhooks are refused. */
  webhookSecret: string | undefined;
  /**
   * Per-tenant webhook secrets (WEBHOOK_SECRETS): a tenant named by its credential's identity
   * (`bearer:<token>` or `basic:<user>`, as src/server/auth.ts derives tenant ids) has its
   * deliveries signed with its own secret; every other tenant's with `webhookSecret`.
   */
  webhookTenantSecrets: { identity: string; secret: string }[];
  /** Webhooks to private, loopback and link-local addresses (tests, trusted networks). */
  webhookAllowPrivate: boolean;
  webhookMaxAttempts: number;
  /** First retry of a failed delivery after this long, doubling each time. */
  webhookRetrySeconds: number;
}

export class ConfigError extends Error {}

export interface S3ResultsConfig {
  bucket: string;
  /** An S3-compatible endpoint (S3_ENDPOINT); unset: AWS for `region`. */
  endpoint: string | undefined;
  region: string;
  /** `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`. */
  forcePathStyle: boolean;
  /** Object keys are `<prefix><jobId>/<index>.<ext>`. */
  prefix: string;
}

/** S3 caps a presigned URL's lifetime at seven days. */
const S3_MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

type Env = Record<string, string | undefined>;

/** Decimal digits only: no sign, fraction, exponent, hex or trailing text ("10abc", "1e3", "0x10"). */
function int(env: Env, name: string, fallback: number, min = 0): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = /^\d+$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new ConfigError(`${name} must be an integer ≥ ${min} (got "${raw}")`);
  return n;
}

function pngLevel(env: Env): number {
  const level = int(env, 'PNG_COMPRESSION_LEVEL', DEFAULT_PNG_COMPRESSION_LEVEL, 0);
  if (level > 9) throw new ConfigError(`PNG_COMPRESSION_LEVEL must be an integer in 0..9 (got "${env.PNG_COMPRESSION_LEVEL}")`);
  return level;
}

const TRUE_WORDS = ['1', 'true', 'yes', 'on'];
const FALSE_WORDS = ['0', 'false', 'no', 'off'];

/**
 * The one boolean parser for environment variables and command-line values: 1/true/yes/on and
 * 0/false/no/off, case-insensitive; anything else is a ConfigError naming `name` and the value.
 */
export function parseBoolean(name: string, raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (TRUE_WORDS.includes(v)) return true;
  if (FALSE_WORDS.includes(v)) return false;
  throw new ConfigError(`${name} must be a boolean: ${TRUE_WORDS.map((t, i) => `${t}/${FALSE_WORDS[i]}`).join(', ')} (got "${raw}")`);
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  return raw === undefined || raw === '' ? fallback : parseBoolean(name, raw);
}

/** pino's level names, and `silent`. */
const LOG_LEVELS = [...Object.keys(pinoLevels.values), 'silent'];

function logLevel(env: Env): string {
  const level = env.LOG_LEVEL || 'info';
  if (!LOG_LEVELS.includes(level)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${env.LOG_LEVEL}")`);
  return level;
}

function logFormat(env: Env): LogFormat {
  const format = parseLogFormat(env.LOG_FORMAT);
  if (!format) throw new ConfigError(`LOG_FORMAT must be ${LOG_FORMATS.join(' or ')} (got "${env.LOG_FORMAT}")`);
  return format;
}

const list = (raw: string | undefined): string[] =>
  (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

export function loadConfig(env: Env = process.env): ServerConfig {
  const provider = (env.EXECUTION_PROVIDER ?? 'cpu').toLowerCase();
  if (!['cpu', 'cuda', 'webgpu'].includes(provider)) throw new ConfigError(`EXECUTION_PROVIDER must be cpu, cuda or webgpu (got "${env.EXECUTION_PROVIDER}")`);
  const authBasic = list(env.AUTH_BASIC).map((pair) => {
    const i = pair.indexOf(':');
    if (i <= 0) throw new ConfigError('AUTH_BASIC must be comma-separated user:pass pairs');
    return { user: pair.slice(0, i), pass: pair.slice(i + 1) };
  });
  const mb = 1024 * 1024;
  const production = env.NODE_ENV === 'production';
  const rateLimitPerMinute = int(env, 'RATE_LIMIT_PER_MINUTE', 0, 0);
  return {
    port: int(env, 'PORT', 4000),
    host: env.HOST || '127.0.0.1',
    modelsDir: env.MODELS_DIR || defaultModelsDir(),
    defaultModel: env.DEFAULT_MODEL || undefined,
    provider: provider as ExecutionProviderName,
    intraOpThreads: env.ORT_INTRA_OP_THREADS ? int(env, 'ORT_INTRA_OP_THREADS', 0, 1) : undefined,
    ortAllowSpinning: bool(env, 'ORT_ALLOW_SPINNING', false),
    ortCpuMemArena: bool(env, 'ORT_CPU_MEM_ARENA', true),
    ortOptimizedCache: optimizedCacheDir(env),
    ortMemPattern: bool(env, 'ORT_MEM_PATTERN', true),
    ortWarmUp: bool(env, 'ORT_WARM_UP', true),
    stageThread: bool(env, 'STAGE_THREAD', true),
    memoryBudgetBytes: env.MEMORY_BUDGET_MB ? int(env, 'MEMORY_BUDGET_MB', 0, 1) * mb : defaultMemoryBudget(),
    preloadModels: env.PRELOAD_MODELS === undefined ? undefined : list(env.PRELOAD_MODELS),
    modelMemoryBytes: env.MODEL_MEMORY_MB ? int(env, 'MODEL_MEMORY_MB', 0, 1) * mb : undefined,
    maxImagesPerJob: int(env, 'MAX_IMAGES_PER_JOB', 16, 1),
    maxFileBytes: int(env, 'MAX_FILE_BYTES', 20 * mb, 1),
    maxTotalBytes: int(env, 'MAX_TOTAL_BYTES', 100 * mb, 1),
    maxInputPixels: int(env, 'MAX_INPUT_PIXELS', DEFAULT_MAX_INPUT_PIXELS, 1),
    maxJobInputPixels: int(env, 'MAX_JOB_INPUT_PIXELS', 200_000_000, 1),
    maxProcessInputPixels: int(env, 'MAX_PROCESS_INPUT_PIXELS', 800_000_000, 1),
    pngCompressionLevel: pngLevel(env),
    retentionSeconds: int(env, 'JOB_RETENTION_SECONDS', 900, 1),
    maxQueuedJobs: int(env, 'MAX_QUEUED_JOBS', 100, 1),
    jobTimeoutSeconds: int(env, 'JOB_TIMEOUT_SECONDS', 600, 0),
    mergeJobs: bool(env, 'MERGE_JOBS', true),
    redisUrl: env.REDIS_URL || undefined,
    role: parseRole(env.ROLE),
    jobAttempts: int(env, 'JOB_ATTEMPTS', 3, 1),
    jobStallSeconds: int(env, 'JOB_STALL_SECONDS', 30, 1),
    shutdownGraceSeconds: int(env, 'SHUTDOWN_GRACE_SECONDS', 30, 0),
    authTokens: list(env.AUTH_TOKENS),
    authBasic,
    authAdminTokens: list(env.AUTH_ADMIN_TOKENS),
    ownerHashSecret: env.OWNER_HASH_SECRET || undefined,
    authFailLimit: int(env, 'AUTH_FAIL_LIMIT', 10, 0),
    authFailWindowSeconds: int(env, 'AUTH_FAIL_WINDOW_SECONDS', 600, 1),
    authFailBlockSeconds: int(env, 'AUTH_FAIL_BLOCK_SECONDS', 30, 1),
    tenantMaxQueuedJobs: int(env, 'TENANT_MAX_QUEUED_JOBS', 20, 0),
    tenantMaxQueuedImages: int(env, 'TENANT_MAX_QUEUED_IMAGES', 320, 0),
    allowAnonymous: bool(env, 'ALLOW_ANONYMOUS', false),
    production,
    logLevel: logLevel(env),
    logFormat: logFormat(env),
    graphqlMaxDepth: int(env, 'GRAPHQL_MAX_DEPTH', 10, 1),
    graphqlMaxAliases: int(env, 'GRAPHQL_MAX_ALIASES', 15, 0),
    graphqlMaxTokens: int(env, 'GRAPHQL_MAX_TOKENS', 2000, 1),
    graphqlMaxCost: int(env, 'GRAPHQL_MAX_COST', 5000, 1),
    graphqlMaxDirectives: int(env, 'GRAPHQL_MAX_DIRECTIVES', 50, 0),
    graphqlMaxJsonBytes: int(env, 'GRAPHQL_MAX_JSON_BYTES', mb, 1),
    introspection: bool(env, 'GRAPHQL_INTROSPECTION', !production),
    fieldSuggestions: bool(env, 'GRAPHQL_SUGGESTIONS', !production),
    graphiql: bool(env, 'GRAPHIQL', !production),
    wsInitTimeoutMs: int(env, 'WS_INIT_TIMEOUT_MS', 10_000, 1),
    wsMaxPayloadBytes: int(env, 'WS_MAX_PAYLOAD_BYTES', mb, 1),
    wsMaxSubscriptionsPerConnection: int(env, 'WS_MAX_SUBSCRIPTIONS_PER_CONNECTION', 20, 1),
    rateLimitPerMinute,
    rateLimitBurst: int(env, 'RATE_LIMIT_BURST', rateLimitPerMinute, rateLimitPerMinute > 0 ? 1 : 0),
    trustProxy: bool(env, 'TRUST_PROXY', false),
    corsOrigins: list(env.CORS_ORIGINS),
    resultUrlSecret: env.RESULT_URL_SECRET || undefined,
    resultUrlTtlSeconds: int(env, 'RESULT_URL_TTL_SECONDS', 3600, 1),
    publicUrl: publicUrl(env.PUBLIC_URL),
    s3Results: s3Results(env),
    webhookSecret: webhookSecret(env.WEBHOOK_SECRET),
    webhookTenantSecrets: webhookTenantSecrets(env, authBasic),
    webhookAllowPrivate: bool(env, 'WEBHOOK_ALLOW_PRIVATE', false),
    webhookMaxAttempts: int(env, 'WEBHOOK_MAX_ATTEMPTS', 6, 1),
    webhookRetrySeconds: int(env, 'WEBHOOK_RETRY_SECONDS', 5, 1),
  };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

function publicUrl(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  let url: URL | null = null;
  try {
    url = new URL(raw);
  } catch {
    url = null;
  }
  if (!url || !['http:', 'https:'].includes(url.protocol) || url.search || url.hash)
    throw new ConfigError(`PUBLIC_URL must be an http(s) URL without query or fragment, e.g. https://images.example.com (got "${raw}")`);
  return raw.replace(/\/+$/, '');
}

/** S3_BUCKET and its companions, checked; null without S3_BUCKET (and then none of them may be set). */
function s3Results(env: Env): S3ResultsConfig | null {
  const bucket = env.S3_BUCKET ?? '';
  const companions = ['S3_ENDPOINT', 'S3_REGION', 'S3_FORCE_PATH_STYLE', 'S3_PREFIX'].filter((k) => env[k]);
  if (!bucket) {
    if (companions.length > 0) throw new ConfigError(`${companions.join(', ')} set without S3_BUCKET: set S3_BUCKET to store results in S3, or unset them`);
    return null;
  }
  // S3's bucket naming rules (3–63 lower-case letters, digits, dots and hyphens).
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
    throw new ConfigError(`S3_BUCKET must be an S3 bucket name (3–63 of a-z, 0-9, '.', '-'; got "${bucket}")`);
  let endpoint: string | undefined;
  if (env.S3_ENDPOINT) {
    let url: URL | null;
    try {
      url = new URL(env.S3_ENDPOINT);
    } catch {
      url = null;
    }
    if (!url || !['http:', 'https:'].includes(url.protocol) || url.search || url.hash || url.username || url.password)
      throw new ConfigError(
        `S3_ENDPOINT must be an http(s) URL without credentials, query or fragment, e.g. https://s3.example.com (got "${env.S3_ENDPOINT}")`,
      );
    endpoint = env.S3_ENDPOINT.replace(/\/+$/, '');
  }
  const region = env.S3_REGION || 'us-east-1';
  if (!/^[a-z0-9-]{1,32}$/.test(region)) throw new ConfigError(`S3_REGION must be a region name such as us-east-1 (got "${region}")`);
  const prefix = env.S3_PREFIX ?? 'results/';
  if (!/^[\w!\-.*'()/]{0,256}$/.test(prefix) || prefix.startsWith('/'))
    throw new ConfigError(`S3_PREFIX must be at most 256 of letters, digits and !-_.*'()/, not starting with / (got "${prefix}")`);
  const ttl = int(env, 'RESULT_URL_TTL_SECONDS', 3600, 1);
  if (ttl > S3_MAX_PRESIGN_SECONDS)
    throw new ConfigError(
      `RESULT_URL_TTL_SECONDS must be at most ${S3_MAX_PRESIGN_SECONDS} (7 days) with S3_BUCKET: S3 refuses longer presigned URLs (got ${ttl})`,
    );
  // Path style by default for a custom endpoint (most S3-compatible servers), virtual-hosted for AWS.
  return { bucket, endpoint, region, forcePathStyle: bool(env, 'S3_FORCE_PATH_STYLE', endpoint !== undefined), prefix };
}

const isWebhookSecret = (raw: string): boolean => {
  const key = raw.startsWith('whsec_') ? Buffer.from(raw.slice(6), 'base64') : Buffer.alloc(0);
  return key.length >= 24 && key.toString('base64') === raw.slice(6);
};

function webhookSecret(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  if (!isWebhookSecret(raw))
    throw new ConfigError('WEBHOOK_SECRET must be whsec_ followed by the base64 of at least 24 random bytes, e.g. whsec_$(openssl rand -base64 32)');
  return raw;
}

/**
 * WEBHOOK_SECRETS: comma-separated `bearer:<token>=whsec_…` or `basic:<user>=whsec_…`. Each must
 * name a configured credential (AUTH_TOKENS or AUTH_ADMIN_TOKENS; an AUTH_BASIC user) once, and
 * WEBHOOK_SECRET must be set (the other tenants' secret). Errors name entries by position, never
 * by their token or secret.
 */
function webhookTenantSecrets(env: Env, authBasic: { user: string }[]): { identity: string; secret: string }[] {
  const entries = list(env.WEBHOOK_SECRETS);
  if (entries.length === 0) return [];
  if (!env.WEBHOOK_SECRET)
    throw new ConfigError('WEBHOOK_SECRETS extends WEBHOOK_SECRET: set WEBHOOK_SECRET too (it signs the deliveries of every other tenant)');
  const tokens = new Set([...list(env.AUTH_TOKENS), ...list(env.AUTH_ADMIN_TOKENS)]);
  const users = new Set(authBasic.map((b) => b.user));
  const seen = new Map<string, number>();
  return entries.map((entry, i) => {
    const n = i + 1;
    const at = entry.lastIndexOf('=whsec_');
    const identity = at > 0 ? entry.slice(0, at) : '';
    const secret = at > 0 ? entry.slice(at + 1) : '';
    const match = /^(bearer|basic):(.+)$/.exec(identity);
    if (!match) throw new ConfigError(`WEBHOOK_SECRETS entry ${n} is not bearer:<token>=whsec_… or basic:<user>=whsec_… (entries are comma-separated)`);
    if (!isWebhookSecret(secret))
      throw new ConfigError(`WEBHOOK_SECRETS entry ${n}: the secret must be whsec_ followed by the base64 of at least 24 random bytes`);
    const [, scheme, name] = match as unknown as [string, 'bearer' | 'basic', string];
    if (scheme === 'bearer' && !tokens.has(name))
      throw new ConfigError(`WEBHOOK_SECRETS entry ${n} names a token that is not in AUTH_TOKENS or AUTH_ADMIN_TOKENS`);
    if (scheme === 'basic' && !users.has(name)) throw new ConfigError(`WEBHOOK_SECRETS entry ${n} names a user that is not in AUTH_BASIC`);
    const before = seen.get(identity);
    if (before !== undefined) throw new ConfigError(`WEBHOOK_SECRETS entry ${n} names the same credential as entry ${before}`);
    seen.set(identity, n);
    return { identity, secret };
  });
}

function parseRole(raw: string | undefined): 'api' | 'worker' | 'all' {
  const role = (raw || 'all').toLowerCase();
  if (role !== 'api' && role !== 'worker' && role !== 'all') throw new ConfigError(`ROLE must be api, worker or all (got "${raw}")`);
  return role;
}
