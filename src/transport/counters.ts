import type { Logger } from '../log/index.js';

/** The most distinct (reason, source) pairs logged before further ones are only counted. */
const MAX_LOGGED_KEYS = 1_000;
/** Durations kept per timing: the percentiles describe the most recent ones. */
const TIMING_WINDOW = 1_024;

/** A timing as `status` reports it: how many were observed, and the recent window's percentiles. */
export interface TimingSummary {
  count: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
}

/** The last TIMING_WINDOW durations of one kind, in a ring. */
class TimingWindow {
  readonly samples = new Float64Array(TIMING_WINDOW);
  count = 0;

  add(ms: number): void {
    this.samples[this.count % TIMING_WINDOW] = ms;
    this.count++;
  }

  summary(): TimingSummary {
    const recent = this.samples.slice(0, Math.min(this.count, TIMING_WINDOW)).sort();
    const at = (q: number) => Math.round(recent[Math.min(recent.length - 1, Math.floor(q * recent.length))]! * 100) / 100;
    return { count: this.count, p50_ms: at(0.5), p99_ms: at(0.99), max_ms: at(1) };
  }
}

/**
 * Named counters, reported in `status` replies. Bad input is logged the first time a (reason, source)
 * pair is seen and only counted afterwards, so a misbehaving device cannot flood the log.
 */
export class Counters {
  private readonly values = new Map<string, number>();
  private readonly logged = new Set<string>();
  private readonly timings = new Map<string, TimingWindow>();

  inc(name: string, by = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + by);
  }

  get(name: string): number {
    return this.values.get(name) ?? 0;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.values);
  }

  /** Records how long one of a kind of operation took (e.g. a result decision, commit included). */
  time(name: string, ms: number): void {
    let window = this.timings.get(name);
    if (window === undefined) this.timings.set(name, (window = new TimingWindow()));
    window.add(ms);
  }

  timingSummaries(): Record<string, TimingSummary> {
    return Object.fromEntries([...this.timings].map(([name, window]) => [name, window.summary()]));
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
