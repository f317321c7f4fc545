import { MAX_APPEND_RECORDS, MAX_APPEND_SERIES, type BodyOf } from '../src/protocol/index.js';
import type { Buffered, ReadingBuffer, TakeBudget } from './reading-buffer.js';

export interface ForwarderOptions {
  readonly batchRecords: number;
  /** An append's records and series names take about this many bytes on the wire at most. */
  readonly batchBytes: number;
  /** Appends sent and not yet answered, at most. */
  readonly inFlight: number;
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
/** What a record adds to an append besides its line (CBOR map, seq, t), and a series besides its name. */
export const RECORD_WIRE_BYTES = 32;
export const SERIES_WIRE_BYTES = 64;

/**
 * Moves buffered readings to the platform, several appends in flight at a time, each as large as
 * `batchBytes` allows. Readings that arrived since the platform came back (live) go first; the backlog from
 * the outage drains behind them at up to `drainRate` per second, so a long outage never delays what
 * devices send now. Order is kept where it matters, in the stored series: records carry their sequence
 * numbers and the datastore keeps them in that order whichever append arrives first, storing a repeated
 * one once. A reading leaves the buffer only once the platform answered the append that carried it, so a
 * crash with appends in flight sends them again on restart, and the datastore counts them as duplicates.
 */
export class Forwarder {
  readonly stats: ForwardStats = { stored: 0, duplicate: 0, outsideRetention: 0, notSeries: 0, batches: 0, failures: 0, drained: 0, drainMs: 0 };
  /** Keys below this were buffered before the platform came back: the backlog. */
  private liveFrom = 0;
  /** Where the next batch looks first, in the backlog and among the live readings: what is before is sent. */
  private backlogCursor = 0;
  private liveCursor = 0;
  /** Keys of readings in appends not yet answered. */
  private readonly inFlight = new Set<number>();
  private sending = 0;
  /** Bumped when the platform comes back: answers to appends sent before are no longer waited for. */
  private generation = 0;
  private tokens = 0;
  private tokensAt = 0;
  private stopped = false;
  private retryMs = RETRY_MIN_MS;
  private retryAt = 0;
  private scheduled = false;
  private timer?: NodeJS.Timeout;
  private timerAt = Infinity;
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

  /**
   * The platform is back: everything buffered until now is backlog. Appends still in flight were most
   * likely sent into the outage (to a broker this bridge had not yet heard was gone) and are lost: their
   * readings go again now rather than after the request timeout; if one did arrive, its readings are
   * counted as duplicates.
   */
  platformUp(): void {
    this.generation++;
    this.inFlight.clear();
    this.sending = 0;
    this.liveFrom = this.buffer.tail;
    this.rewind();
    this.drainStartedAt = this.buffer.oldestKey < this.liveFrom ? performance.now() : undefined;
    this.stats.drained = 0;
    this.retryAt = 0;
    this.nudge();
  }

  /**
   * A reading arrived, or the platform may be reachable: look for work once this turn's readings are in,
   * so that the readings of one socket read share an append.
   */
  nudge(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  get backlog(): number {
    return Math.max(0, Math.min(this.liveFrom, this.buffer.tail) - this.buffer.oldestKey);
  }

  /** Appends in flight now (for tests and status). */
  get sendingNow(): number {
    return this.sending;
  }

  /** Sends batches until the window is full or nothing is due; otherwise looks again later. */
  private pump(): void {
    if (this.stopped) return;
    const now = performance.now();
    if (now < this.retryAt) return this.later(this.retryAt - now);
    if (this.buffer.records === 0) return;
    if (!this.ready()) return this.later(200);
    while (this.sending < this.options.inFlight) {
      const batch = this.batch();
      if (batch.length === 0) break;
      this.send(batch);
    }
    if (this.sending < this.options.inFlight && this.backlogWaiting()) this.later(this.backlogWaitMs());
  }

  private later(ms: number): void {
    const at = performance.now() + ms;
    if (this.timer !== undefined && this.timerAt <= at) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.pump();
    }, ms);
  }

  private send(batch: Array<{ key: number; value: Buffered }>): void {
    this.sending++;
    for (const b of batch) this.inFlight.add(b.key);
    const generation = this.generation;
    void this.append(group(batch.map((b) => b.value))).then(
      (results) => {
        // Stopping: the store may be closed. What stays buffered is sent again and counted as duplicate.
        if (this.stopped) return;
        // An answer to an append sent before the platform came back counts like any other (its readings
        // were stored, and their resend will be counted as duplicate), but its slot is no longer held.
        const current = generation === this.generation;
        if (current) this.retryMs = RETRY_MIN_MS;
        this.stats.batches++;
        for (const r of results) {
          this.stats.stored += r.stored;
          this.stats.duplicate += r.duplicate;
          this.stats.outsideRetention += r.outside_retention;
          if (r.outcome === 'not_series') this.stats.notSeries += r.outside_retention;
        }
        const removed = this.buffer.remove(batch.map((b) => b.key));
        if (current) this.done(batch);
        for (const key of removed) if (key < this.liveFrom) this.stats.drained++;
        if (this.drainStartedAt !== undefined) {
          this.stats.drainMs = performance.now() - this.drainStartedAt;
          if (this.backlog === 0) this.drainStartedAt = undefined;
        }
        for (const listener of this.listeners) listener(results);
        this.pump();
      },
      () => {
        if (generation !== this.generation) return;
        this.stats.failures++;
        this.done(batch);
        // Its readings are still buffered: the next batches start from the oldest again.
        this.rewind();
        this.retryAt = performance.now() + this.retryMs;
        this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
        this.pump();
      },
    );
  }

  private done(batch: ReadonlyArray<{ key: number }>): void {
    this.sending--;
    for (const b of batch) this.inFlight.delete(b.key);
  }

  private rewind(): void {
    this.backlogCursor = this.buffer.oldestKey;
    this.liveCursor = this.liveFrom;
  }

  /** Live readings first, then as much backlog as the drain rate allows now, within the batch's bounds. */
  private batch(): Array<{ key: number; value: Buffered }> {
    const max = Math.min(this.options.batchRecords, MAX_APPEND_RECORDS);
    // Records and series per append are bounded by the protocol too: past either, a record does not fit
    // (an append over them would be refused, again and again).
    const names = new Set<string>();
    const budget: TakeBudget = {
      left: this.options.batchBytes,
      taken: 0,
      cost: (r: Buffered) => {
        if (names.has(r.n)) return r.l.byteLength + RECORD_WIRE_BYTES;
        if (names.size >= MAX_APPEND_SERIES) return Infinity;
        names.add(r.n);
        return r.l.byteLength + RECORD_WIRE_BYTES + r.n.length + SERIES_WIRE_BYTES;
      },
    };
    const tail = this.buffer.tail;
    const live = this.buffer.take(this.liveCursor, tail, max, this.inFlight, budget);
    this.liveCursor = live.length < max && budget.left > 0 ? tail : live.at(-1)!.key + 1;
    const room = max - live.length;
    if (room <= 0 || budget.left <= 0 || this.backlog === 0) return live;
    const now = performance.now();
    this.tokens = Math.min(this.options.drainRate, this.tokens + ((now - this.tokensAt) / 1_000) * this.options.drainRate);
    this.tokensAt = now;
    const want = Math.min(room, Math.floor(this.tokens));
    const end = Math.min(this.liveFrom, tail);
    const backlog = this.buffer.take(this.backlogCursor, end, want, this.inFlight, budget);
    if (backlog.length < want && budget.left > 0) this.backlogCursor = end;
    else if (backlog.length > 0) this.backlogCursor = backlog.at(-1)!.key + 1;
    this.tokens -= backlog.length;
    return [...backlog, ...live];
  }

  /** Backlog readings not yet sent (they wait for the drain rate's tokens or a free slot). */
  private backlogWaiting(): boolean {
    return this.backlog > 0 && this.backlogCursor < Math.min(this.liveFrom, this.buffer.tail);
  }

  private backlogWaitMs(): number {
    return Math.max(5, Math.ceil(((1 - this.tokens) / this.options.drainRate) * 1_000));
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
