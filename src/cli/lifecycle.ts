import type { Logger } from '../log/index.js';

/**
 * Keeps a long-running command alive until SIGINT or SIGTERM, then stops its parts in order (each
 * publishes a graceful death) and exits 0. A second signal exits at once.
 */
export function runUntilSignal(log: Logger, stop: () => Promise<void>): Promise<never> {
  return new Promise(() => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting without a clean stop');
        process.exit(1);
      }
      stopping = true;
      log.info({ signal }, 'stopping');
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
