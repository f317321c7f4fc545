import type { BodyOf } from '../src/protocol/index.js';
import type { Buffered, ReadingBuffer } from './reading-buffer.js';

export interface ForwarderOptions {
  readonly batchRecords: number;
  /** Buffered (backlog) readings forwarded per second at most, after the live ones. */
  readonly drainRate: number;
}

export interface ForwardStats {
  stored: number;
  duplicate: number;
  outsideRetention: number;
  notSeries: number;
  batches: number;
  failures: number;
  /** Backlog readings forwarded since the last outage ended, and for how long (ms). */
  drained: number;
  drainMs: number;
}

type Append = (series: BodyOf<'data_append'>['series']) => Promise<BodyOf<'data_appended'>['results']>;

/** A failed batch is sent again after this long, doubling up to the maximum. */
const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 5_000;

/**
 * Moves buffered readings to the platform, one batch in flight at a time. Readings that arrived since the
 * platform came back (live) go first; the backlog from the outage drains behind them at up to
 * `drainRate` per second, so a long outage never delays what devices send now. Order is kept where it
 * matters, in the stored series: records carry their sequence numbers and the datastore keeps them in
 * that order, storing a repeated one once. A batch leaves the buffer only once the platform answered.
 */
export class Forwarder {
  readonly stats: ForwardStats = { stored: 0, duplicate: 0, outsideRetention: 0, notSeries: 0, batches: 0, failures: 0, drained: 0, drainMs: 0 };
  /** Keys below this were buffered before the platform came back: the backlog. */
  private liveFrom = 0;
  private tokens = 0;
  private tokensAt = 0;
  private running = false;
  private wake?: () => void;
  private stopped = false;
  private retryMs = RETRY_MIN_MS;
  private drainStartedAt?: number;
  private readonly listeners: Array<(results: BodyOf<'data_appended'>['results']) => void> = [];

  constructor(
    private readonly buffer: ReadingBuffer,
    private readonly append: Append,
    /** Whether the platform can take readings now (hub connected and a broker alive). */
    private readonly ready: () => boolean,
    private readonly options: ForwarderOptions,
  ) {}

  /** Called with each batch's results, e.g. to count what retention dropped. */
  onStored(listener: (results: BodyOf<'data_appended'>['results']) => void): void {
    this.listeners.push(listener);
  }

  /** The platform is back: everything buffered until now is backlog. */
  platformUp(): void {
    this.liveFrom = this.buffer.tail;
    this.drainStartedAt = this.buffer.oldestKey < this.liveFrom ? performance.now() : undefined;
    this.stats.drained = 0;
    this.nudge();
  }

  /** A reading arrived, or the platform may be reachable: look for work now. */
  nudge(): void {
    this.wake?.();
    if (!this.running && !this.stopped) {
      this.running = true;
      void this.loop().finally(() => (this.running = false));
    }
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  get backlog(): number {
    return Math.max(0, Math.min(this.liveFrom, this.buffer.tail) - this.buffer.oldestKey);
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      if (!this.ready() || this.buffer.records === 0) {
        await this.sleep(this.buffer.records === 0 ? 1_000 : 200);
        if (this.buffer.records === 0 || !this.ready()) continue;
      }
      const batch = this.batch();
      if (batch.length === 0) {
        await this.sleep(this.backlogWaitMs());
        continue;
      }
      try {
        const results = await this.append(group(batch.map((b) => b.value)));
        this.retryMs = RETRY_MIN_MS;
        this.stats.batches++;
        for (const r of results) {
          this.stats.stored += r.stored;
          this.stats.duplicate += r.duplicate;
          this.stats.outsideRetention += r.outside_retention;
          if (r.outcome === 'not_series') this.stats.notSeries += r.outside_retention;
        }
        this.buffer.remove(batch.map((b) => b.key));
        const drained = batch.filter((b) => b.key < this.liveFrom).length;
        this.stats.drained += drained;
        if (this.drainStartedAt !== undefined) {
          this.stats.drainMs = performance.now() - this.drainStartedAt;
          if (this.backlog === 0) this.drainStartedAt = undefined;
        }
        for (const listener of this.listeners) listener(results);
      } catch {
        this.stats.failures++;
        await this.sleep(this.retryMs);
        this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
      }
    }
  }

  /** Live readings first, then as much backlog as the drain rate allows now. */
  private batch(): Array<{ key: number; value: Buffered }> {
    const max = this.options.batchRecords;
    const live = this.buffer.take(this.liveFrom, this.buffer.tail, max, new Set());
    const room = max - live.length;
    if (room <= 0 || this.backlog === 0) return live;
    const now = performance.now();
    this.tokens = Math.min(this.options.drainRate, this.tokens + ((now - this.tokensAt) / 1_000) * this.options.drainRate);
    this.tokensAt = now;
    const backlog = this.buffer.take(this.buffer.oldestKey, this.liveFrom, Math.min(room, Math.floor(this.tokens)), new Set());
    this.tokens -= backlog.length;
    return [...backlog, ...live];
  }

  private backlogWaitMs(): number {
    if (this.backlog === 0) return 1_000;
    return Math.max(5, Math.ceil(((1 - this.tokens) / this.options.drainRate) * 1_000));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
    });
  }
}

/** One append request: the readings grouped by series, each series in sequence order. */
function group(records: readonly Buffered[]): BodyOf<'data_append'>['series'] {
  const bySeries = new Map<string, BodyOf<'data_append'>['series'][number] & { records: Array<{ seq: number; t: number; line: Uint8Array }> }>();
  const now = Date.now();
  for (const r of records) {
    let series = bySeries.get(r.n);
    if (series === undefined) {
      series = { name: r.n, records: [], ...(r.k !== undefined ? { keep_last: r.k } : {}), ...(r.a !== undefined ? { before_t: Math.max(0, now - r.a) } : {}) };
      bySeries.set(r.n, series);
    }
    series.records.push({ seq: r.s, t: r.t, line: r.l });
  }
  for (const series of bySeries.values()) series.records.sort((a, b) => a.seq - b.seq);
  return [...bySeries.values()];
}
