import { pino, type Logger, type LevelWithSilent } from 'pino';
import pretty from 'pino-pretty';

export type { Logger } from 'pino';
export type LogFormat = 'auto' | 'json' | 'pretty';
/** `auto`: info for a person at a terminal, warn for a service (journald, a file, a pipe). */
export type LogLevelSetting = LevelWithSilent | 'auto';

export interface LoggerOptions {
  level: LogLevelSetting;
  format: LogFormat;
  /** Where log lines go; stdout unless a test or the CLI needs otherwise. */
  destination?: NodeJS.WritableStream & { isTTY?: boolean };
}

/**
 * The level `auto` stands for. A unit that runs for months logs to journald on an SD card: a line per job
 * at info is most of what it would write, so only a terminal gets info by default.
 */
export function effectiveLevel(level: LogLevelSetting, destination: { isTTY?: boolean }): LevelWithSilent {
  if (level !== 'auto') return level;
  return destination.isTTY === true ? 'info' : 'warn';
}

/** The process's root logger. Components take `logger.child({ component })`, bound to their node id. */
export function createLogger(options: LoggerOptions): Logger {
  const destination = options.destination ?? process.stdout;
  const level = effectiveLevel(options.level, destination);
  const usePretty = options.format === 'pretty' || (options.format === 'auto' && destination.isTTY === true);
  if (usePretty) {
    // In-thread pretty printing: a worker-thread transport would lose the last lines of a node that exits at once.
    return pino({ level }, pretty({ destination, colorize: destination.isTTY === true, sync: true }));
  }
  return pino({ level, base: { pid: process.pid } }, destination);
}
