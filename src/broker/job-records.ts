import { isFinal } from '../protocol/index.js';
import type { NodeStore, Table } from '../store/index.js';
import type { Change } from './metadata-merge.js';

/** What the replica asks of a table of records, whichever table it is. */
export interface Records {
  get(key: string): Change | undefined;
  put(key: string, change: Change): Promise<boolean>;
  remove(key: string): Promise<boolean>;
}

/**
 * The replica's job records, in two LMDB tables. A finished job's record is kept for the retention time,
 * so it is stored compressed (compression.ts): a third of the pages. A job in flight is written two or
 * three times within a second and then replaced by its finished record, so it is stored as it is:
 * lmdb-js compresses each value on a thread of libuv's pool and hands it back to the write thread, a
 * round trip between threads per write that cost the broker more CPU than anything else it did per job
 * (measured: 29% of its busy time under load on a 2-core VM).
 *
 * The records of jobs in flight are also held in memory, where every read and merge finds them: the
 * replica reads a record back before each change to it, and lmdb-js's cache had often let it go between
 * two changes a few hundred milliseconds apart, so the read decoded it from LMDB again (measured: 7% of a
 * loaded broker's busy time). They are few: client budgets bound the jobs that have not ended.
 *
 * A record is looked for among the jobs in flight first. Directories written before the split hold every
 * record in the finished table; those are found there, and move on their next write.
 */
export class JobRecords implements Records {
  private readonly inFlight: Table<Change>;
  /** What `inFlight` holds, its writes not yet committed included. */
  private readonly inFlightHeld = new Map<string, Change>();
  private readonly finished: Table<Change>;

  constructor(store: NodeStore) {
    this.inFlight = store.table<Change>('meta_jobs_in_flight');
    for (const { key, value } of this.inFlight.getRange()) this.inFlightHeld.set(String(key), value);
    // Each merge reads what the last one wrote, and the table answers with writes not yet committed only
    // from its cache.
    this.finished = store.table<Change>('meta_jobs', { cache: true, compress: true });
  }

  get(key: string): Change | undefined {
    return this.inFlightHeld.get(key) ?? this.finished.get(key);
  }

  put(key: string, change: Change): Promise<boolean> {
    if (change.job !== undefined && isFinal(change.job.state)) {
      if (this.inFlightHeld.delete(key)) void this.inFlight.remove(key);
      return this.finished.put(key, change);
    }
    if (!this.inFlightHeld.has(key) && this.finished.get(key) !== undefined) void this.finished.remove(key);
    this.inFlightHeld.set(key, change);
    return this.inFlight.put(key, change);
  }

  remove(key: string): Promise<boolean> {
    if (this.inFlightHeld.delete(key)) void this.inFlight.remove(key);
    return this.finished.remove(key);
  }

  /** Every record, jobs in flight first. */
  *values(): Generator<Change> {
    yield* this.inFlightHeld.values();
    for (const { value } of this.finished.getRange()) yield value;
  }

  /** Job ids in order, after `after` (both tables merged). */
  *keys(after?: string): Generator<string> {
    const range = after !== undefined ? { start: after } : {};
    const a = this.inFlight.getKeys(range)[Symbol.iterator]();
    const b = this.finished.getKeys(range)[Symbol.iterator]();
    let x = a.next();
    let y = b.next();
    let last = after;
    while (!x.done || !y.done) {
      const takeA = y.done || (!x.done && String(x.value) <= String(y.value));
      const key = String(takeA ? x.value : y.value);
      if (takeA) x = a.next();
      else y = b.next();
      // A record that just moved is in both until the move commits.
      if (key !== last) yield key;
      last = key;
    }
  }
}
