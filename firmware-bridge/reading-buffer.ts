import type { NodeStore, Table } from '../src/store/index.js';

/** A reading waiting to be forwarded: the series it goes to, its place there, and its record. */
export interface Buffered {
  /** Series name. */
  readonly n: string;
  /** Sequence number within the series. */
  readonly s: number;
  /** When the bridge received it (ms). */
  readonly t: number;
  /** The record line (JSON + newline). */
  readonly l: Uint8Array;
  /** Retention the series asks for: keep the last k, or drop what is older than a ms. */
  readonly k?: number;
  readonly a?: number;
}

/** What a batch may still take: `cost` says what a reading would use of `left`; `taken` counts. */
export interface TakeBudget {
  readonly cost: (value: Buffered) => number;
  left: number;
  taken: number;
}

export interface BufferLimits {
  readonly maxBytes: number;
  readonly maxAgeMs: number;
  /** The newest readings kept in memory too, in bytes (default MEMORY_BYTES). */
  readonly memoryBytes?: number;
}

/** Sequence numbers are reserved on disk this many at a time, so a restart never reuses one. */
const SEQ_BLOCK = 4_096;
/** Bytes counted per record besides its line: keys, name and numbers. */
const RECORD_OVERHEAD = 48;
/**
 * The newest readings are also kept in memory, up to this many bytes (as `size` counts them), so that
 * forwarding live readings never reads back and decodes what was just written. Older ones (a long
 * outage's backlog, or what a restart found) are read from LMDB.
 */
const MEMORY_BYTES = 8 * 1024 * 1024;

/**
 * The bridge's outbound buffer in LMDB: every accepted reading is written here first, in arrival order,
 * and leaves only once the platform has stored it. Bounded by bytes and by age: when a bound is hit the
 * oldest readings are dropped and counted. Each series gets consecutive sequence numbers, reserved on
 * disk in blocks, which is what makes forwarding exactly-once: the datastore keeps a record per number.
 */
export class ReadingBuffer {
  private readonly queue: Table<Buffered, number>;
  private readonly seqTable: Table<number>;
  private readonly next = new Map<string, { next: number; limit: number }>();
  private nextKey: number;
  private head: number;
  /**
   * LMDB shows a write only once its batch commits: readings written or removed since then are kept
   * here, so the buffer reads its own writes.
   */
  private readonly pending = new Map<number, Buffered>();
  private readonly gone = new Set<number>();
  /** Readings with keys in [memFrom, nextKey), at index key - memBase; removed ones are holes. */
  private memory: Array<Buffered | undefined> = [];
  private memBase: number;
  private memFrom: number;
  private memBytes = 0;
  private bytes = 0;
  private count = 0;
  droppedBytes = 0;
  droppedAge = 0;

  constructor(
    store: NodeStore,
    private readonly limits: BufferLimits,
  ) {
    this.queue = store.table<Buffered, number>('bridge_queue');
    this.seqTable = store.table<number>('bridge_series_seq');
    let first: number | undefined;
    let last = -1;
    for (const { key, value } of this.queue.getRange()) {
      first ??= key;
      last = key;
      this.count++;
      this.bytes += size(value);
    }
    this.head = first ?? 0;
    this.nextKey = last + 1;
    this.memBase = this.memFrom = this.nextKey;
  }

  get records(): number {
    return this.count;
  }

  get sizeBytes(): number {
    return this.bytes;
  }

  /** The key the next reading will get: everything below it is already buffered. */
  get tail(): number {
    return this.nextKey;
  }

  /** The next sequence number of `series`. */
  private seq(series: string): number {
    let entry = this.next.get(series);
    if (entry === undefined) {
      const reserved = this.seqTable.get(series) ?? 0;
      entry = { next: reserved, limit: reserved };
      this.next.set(series, entry);
    }
    if (entry.next >= entry.limit) {
      entry.limit = entry.next + SEQ_BLOCK;
      // Written in the same batch as the readings that use it, and before them.
      void this.seqTable.put(series, entry.limit);
    }
    return entry.next++;
  }

  /** Buffers a reading for `series`; returns its sequence number. */
  add(series: string, t: number, line: (seq: number) => Uint8Array, retention: { keepLast?: number; maxAgeMs?: number }): number {
    const s = this.seq(series);
    const l = line(s);
    const record: Buffered = { n: series, s, t, l, ...(retention.keepLast !== undefined ? { k: retention.keepLast } : {}), ...(retention.maxAgeMs !== undefined ? { a: retention.maxAgeMs } : {}) };
    const key = this.nextKey++;
    this.remember(record);
    this.pending.set(key, record);
    void this.queue.put(key, record).finally(() => this.pending.delete(key));
    this.count++;
    this.bytes += size(record);
    while (this.bytes > this.limits.maxBytes && this.count > 0) this.dropHead('bytes');
    return s;
  }

  private remember(record: Buffered): void {
    this.memory.push(record);
    this.memBytes += size(record);
    while (this.memBytes > (this.limits.memoryBytes ?? MEMORY_BYTES) && this.memFrom < this.nextKey) this.forget(this.memFrom++);
    // Drop the leading holes now and then, not at every reading.
    const lead = this.memFrom - this.memBase;
    if (lead > 4_096 && lead * 2 > this.memory.length) {
      this.memory = this.memory.slice(lead);
      this.memBase = this.memFrom;
    }
  }

  private forget(key: number): void {
    const i = key - this.memBase;
    const value = this.memory[i];
    if (value === undefined) return;
    this.memory[i] = undefined;
    this.memBytes -= size(value);
  }

  private get(key: number): Buffered | undefined {
    if (this.gone.has(key)) return undefined;
    if (key >= this.memFrom) return this.memory[key - this.memBase];
    return this.pending.get(key) ?? this.queue.get(key);
  }

  private delete(key: number): void {
    if (key >= this.memFrom) this.forget(key);
    this.gone.add(key);
    this.pending.delete(key);
    void this.queue.remove(key).finally(() => this.gone.delete(key));
  }

  /** Drops readings older than the age bound; returns how many. */
  expire(now: number): number {
    let n = 0;
    while (this.count > 0) {
      const oldest = this.get(this.head);
      if (oldest === undefined) {
        this.head++;
        continue;
      }
      if (oldest.t >= now - this.limits.maxAgeMs) break;
      this.dropHead('age');
      n++;
    }
    return n;
  }

  private dropHead(why: 'bytes' | 'age'): void {
    for (; this.head < this.nextKey; this.head++) {
      const value = this.get(this.head);
      if (value === undefined) continue;
      this.delete(this.head);
      this.count--;
      this.bytes -= size(value);
      if (why === 'bytes') this.droppedBytes++;
      else this.droppedAge++;
      this.head++;
      return;
    }
  }

  /**
   * Up to `limit` readings with keys in [from, to), oldest first, skipping those already taken; with
   * `budget`, also stops before the reading whose `cost` would take the total over it, unless the budget
   * has taken nothing yet (so that no reading can stall the buffer). A budget may span several takes.
   */
  take(from: number, to: number, limit: number, skip: ReadonlySet<number>, budget?: TakeBudget): Array<{ key: number; value: Buffered }> {
    const out: Array<{ key: number; value: Buffered }> = [];
    if (limit <= 0 || (budget !== undefined && budget.left <= 0)) return out;
    const start = Math.max(from, this.head);
    const fits = (value: Buffered): boolean => {
      if (budget === undefined) return true;
      const cost = budget.cost(value);
      if (cost > budget.left && budget.taken > 0) {
        budget.left = 0;
        return false;
      }
      budget.left -= cost;
      budget.taken++;
      return true;
    };
    // Older than what memory holds: from LMDB, then what is not committed yet.
    const diskEnd = Math.min(to, this.memFrom);
    if (start < diskEnd) {
      let seen: Set<number> | undefined;
      for (const entry of this.queue.getRange({ start, end: diskEnd })) {
        if (skip.has(entry.key) || this.gone.has(entry.key)) continue;
        // A committed reading may still be in `pending` (its put resolves later): not taken twice.
        if (this.pending.size > 0) (seen ??= new Set()).add(entry.key);
        if (!fits(entry.value)) return out;
        out.push(entry);
        if (out.length >= limit || (budget !== undefined && budget.left <= 0)) return out;
      }
      for (const [key, value] of this.pending) {
        if (key >= diskEnd) break;
        if (key < start || skip.has(key) || seen?.has(key) === true || this.gone.has(key)) continue;
        if (!fits(value)) return out;
        out.push({ key, value });
        if (out.length >= limit || (budget !== undefined && budget.left <= 0)) return out;
      }
    }
    for (let key = Math.max(start, this.memFrom); key < to; key++) {
      const value = this.memory[key - this.memBase];
      if (value === undefined || skip.has(key)) continue;
      if (!fits(value)) break;
      out.push({ key, value });
      if (out.length >= limit || (budget !== undefined && budget.left <= 0)) break;
    }
    return out;
  }

  /** The oldest key still buffered. */
  get oldestKey(): number {
    return this.head;
  }

  oldestTime(): number | undefined {
    return this.take(this.head, this.nextKey, 1, new Set())[0]?.value.t;
  }

  /** Forwarded and stored: they leave the buffer. Returns the keys that were still buffered. */
  remove(keys: readonly number[]): number[] {
    const removed: number[] = [];
    for (const key of keys) {
      const value = this.get(key);
      if (value === undefined) continue;
      this.delete(key);
      this.count--;
      this.bytes -= size(value);
      removed.push(key);
    }
    while (this.head < this.nextKey && this.count > 0 && this.get(this.head) === undefined) this.head++;
    if (this.count === 0) this.head = this.nextKey;
    return removed;
  }
}

function size(r: Buffered): number {
  return r.l.byteLength + r.n.length + RECORD_OVERHEAD;
}
