import type { Logger } from '../log/index.js';

/** The most distinct (reason, source) pairs logged before further ones are only counted. */
const MAX_LOGGED_KEYS = 1_000;

/**
 * Named counters, reported in `status` replies. Bad input is logged the first time a (reason, source)
 * pair is seen and only counted afterwards, so a misbehaving device cannot flood the log.
 */
export class Counters {
  private readonly values = new Map<string, number>();
  private readonly logged = new Set<string>();

  inc(name: string, by = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + by);
  }

  get(name: string): number {
    return this.values.get(name) ?? 0;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.values);
  }

  /** Counts a rejected input and logs it once per (counter, source). */
  reject(log: Logger, counter: string, source: string, reason: string): void {
    this.inc(counter);
    const key = `${counter}\u0000${source}`;
    if (this.logged.has(key) || this.logged.size >= MAX_LOGGED_KEYS) return;
    this.logged.add(key);
    log.warn({ counter, source, reason }, `dropped input from ${source}: ${reason} (further ones are only counted in "${counter}")`);
  }
}
