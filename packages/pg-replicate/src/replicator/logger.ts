/**
 * The replicator's logs: pino, one JSON object per line on stderr (what log collectors expect),
 * or human-readable lines when stderr is a terminal. Every line carries the pipeline's name. The
 * last step before stderr replaces every known secret (password, connection URL) with `********`,
 * whatever library put it in a message, so no secret is ever written.
 */
import { type Logger as PinoLogger, pino, stdTimeFunctions } from 'pino';
import { prettyFactory } from 'pino-pretty';
import type { Logger } from '../pipeline/progress.js';
import type { LOG_LEVELS } from './config-schema.js';

export type ServiceLogger = PinoLogger;

/** Where log lines go (stderr by default). */
export interface LogOutput {
  write(line: string): unknown;
  readonly isTTY?: boolean | undefined;
}

export interface LoggerOptions {
  level: (typeof LOG_LEVELS)[number];
  /** `auto`: pretty on a terminal, JSON otherwise. */
  format: 'auto' | 'json' | 'pretty';
  /** The pipeline's name, on every line. */
  pipeline: string;
  /** Strings that must never be written. */
  secrets?: readonly string[];
  output?: LogOutput;
}

const MASK = '********';

/** A pino logger writing synchronously to stderr (nothing is lost when the process exits). */
export function createLogger(options: LoggerOptions): ServiceLogger {
  const output = options.output ?? process.stderr;
  const pretty = options.format === 'pretty' || (options.format === 'auto' && output.isTTY === true);
  const redact = redactor(options.secrets ?? []);
  const prettify = pretty
    ? prettyFactory({
        colorize: output.isTTY === true,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname,pipeline,issues',
        messageFormat: '[{pipeline}] {msg}',
        hideObject: false,
      })
    : null;
  return pino(
    {
      level: options.level,
      base: { pid: process.pid, pipeline: options.pipeline },
      timestamp: stdTimeFunctions.isoTime,
      // Labels ("info") read better in log search than numbers; pino-pretty wants the numbers.
      formatters: pretty ? {} : { level: (label) => ({ level: label }) },
    },
    {
      write(line: string) {
        output.write(redact(prettify === null ? line : prettify(line)));
      },
    },
  );
}

/** The {@link Logger} a `Pipeline` takes, on top of the service's logger. */
export function pipelineLogger(logger: ServiceLogger): Logger {
  return {
    debug: (message) => logger.debug(message),
    info: (message) => logger.info(message),
    warn: (message) => logger.warn(message),
  };
}

/** Replaces each secret (as written, JSON-escaped and URL-encoded) with a mask. */
export function redactor(secrets: readonly string[]): (text: string) => string {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (secret === '') continue;
    forms.add(secret);
    forms.add(JSON.stringify(secret).slice(1, -1));
    forms.add(encodeURIComponent(secret));
  }
  // Longest first, so a URL is masked whole before the password inside it.
  const ordered = [...forms].sort((a, b) => b.length - a.length);
  if (ordered.length === 0) return (text) => text;
  return (text) => {
    let result = text;
    for (const form of ordered) if (result.includes(form)) result = result.split(form).join(MASK);
    return result;
  };
}
