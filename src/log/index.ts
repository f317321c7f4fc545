import { createRequire } from 'node:module';
import { pino, type Logger, type LevelWithSilent } from 'pino';
import type PinoPretty from 'pino-pretty';

/**
 * pino-pretty and what it pulls in are loaded only for a terminal: a service logs JSON and would carry them
 * in memory for nothing. It is CommonJS, so a synchronous require keeps createLogger synchronous.
 */
const requirePretty = () => createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;

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
    return pino({ level }, requirePretty()({ destination, colorize: destination.isTTY === true, sync: true }));
  }
  return pino({ level, base: { pid: process.pid } }, destination);
}
