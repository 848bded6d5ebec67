import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** pino level; `silent` turns logging off. @default 'info' */
  readonly level?: string;
  /** Bound to every line as `component`. */
  readonly component?: string;
}

/**
 * The process logger: one JSON line per meaningful event, on stderr so that
 * command output on stdout stays machine-readable.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const logger = pino(
    { level: options.level ?? 'info', base: { pid: process.pid } },
    pino.destination(2),
  );

  return options.component === undefined ? logger : logger.child({ component: options.component });
}

/** A logger that writes nothing, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
