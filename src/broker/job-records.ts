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
 * A record is looked for among the jobs in flight first. Directories written before the split hold every
 * record in the finished table; those are found there, and move on their next write.
 */
export class JobRecords implements Records {
  private readonly inFlight: Table<Change>;
  private readonly finished: Table<Change>;

  constructor(store: NodeStore) {
    // Both cache: each merge reads what the last one wrote, and the tables answer with writes not yet
    // committed only from their cache.
    this.inFlight = store.table<Change>('meta_jobs_in_flight', { cache: true });
    this.finished = store.table<Change>('meta_jobs', { cache: true, compress: true });
  }

  get(key: string): Change | undefined {
    return this.inFlight.get(key) ?? this.finished.get(key);
  }

  put(key: string, change: Change): Promise<boolean> {
    const [to, from] = change.job !== undefined && isFinal(change.job.state) ? [this.finished, this.inFlight] : [this.inFlight, this.finished];
    if (from.get(key) !== undefined) void from.remove(key);
    return to.put(key, change);
  }

  remove(key: string): Promise<boolean> {
    void this.inFlight.remove(key);
    return this.finished.remove(key);
  }

  /** Every record, jobs in flight first. */
  *values(): Generator<Change> {
    for (const { value } of this.inFlight.getRange()) yield value;
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
