/**
 * The server's logger: pino, human-readable (pino-pretty) when stdout is a terminal, one JSON
 * object a line otherwise (log collectors) or whenever LOG_FORMAT=json.
 */
import { type Logger, pino } from 'pino';
import PinoPretty from 'pino-pretty';

/** Fields pino replaces with [Redacted]: credentials never reach the logs. */
export const LOG_REDACT = ['authorization', '*.authorization'];

export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** LOG_FORMAT, else pretty on a terminal and JSON elsewhere; null for a value that is neither. */
export function parseLogFormat(raw: string | undefined, tty: boolean = process.stdout.isTTY === true): LogFormat | null {
  if (raw === undefined || raw === '') return tty ? 'pretty' : 'json';
  const format = raw.toLowerCase();
  return (LOG_FORMATS as readonly string[]).includes(format) ? (format as LogFormat) : null;
}

export function createLogger(level: string, format: LogFormat): Logger {
  const options = { level, redact: LOG_REDACT };
  // In-process and synchronous: lines written just before process.exit are not lost.
  return format === 'pretty'
    ? pino(options, PinoPretty({ sync: true, singleLine: true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' }))
    : pino(options);
}
