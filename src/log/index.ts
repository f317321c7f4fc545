import { pino, type Logger, type LevelWithSilent } from 'pino';
import pretty from 'pino-pretty';

export type { Logger } from 'pino';
export type LogFormat = 'auto' | 'json' | 'pretty';

export interface LoggerOptions {
  level: LevelWithSilent;
  format: LogFormat;
  /** Where log lines go; stdout unless a test or the CLI needs otherwise. */
  destination?: NodeJS.WritableStream & { isTTY?: boolean };
}

/** The process's root logger. Components take `logger.child({ component })`, bound to their node id. */
export function createLogger(options: LoggerOptions): Logger {
  const destination = options.destination ?? process.stdout;
  const usePretty = options.format === 'pretty' || (options.format === 'auto' && destination.isTTY === true);
  if (usePretty) {
    // In-thread pretty printing: a worker-thread transport would lose the last lines of a node that exits at once.
    return pino({ level: options.level }, pretty({ destination, colorize: destination.isTTY === true, sync: true }));
  }
  return pino({ level: options.level, base: { pid: process.pid } }, destination);
}
