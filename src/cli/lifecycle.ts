import type { Logger } from '../log/index.js';
import { trimWhenQuiet } from './idle-trim.js';

/** A clean stop that takes longer than this is abandoned: a stuck disk must not keep a unit from exiting. */
const STOP_DEADLINE_MS = 10_000;

/**
 * Keeps a long-running command alive until SIGINT or SIGTERM, then stops its parts in order (each
 * publishes a graceful death) and exits 0. A second signal exits at once.
 */
export function runUntilSignal(log: Logger, stop: () => Promise<void>): Promise<never> {
  return new Promise(() => {
    const stopTrimming = trimWhenQuiet();
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting without a clean stop');
        process.exit(1);
      }
      stopping = true;
      stopTrimming();
      log.info({ signal }, 'stopping');
      setTimeout(() => {
        log.error({ deadlineMs: STOP_DEADLINE_MS }, 'clean stop took too long; exiting');
        process.exit(1);
      }, STOP_DEADLINE_MS).unref();
      stop().then(
        () => process.exit(0),
        (err: Error) => {
          log.error({ err: err.message }, 'clean stop failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
