/** One origin broker's changes held here: sequence number -> the record it is. */
interface OriginChanges {
  readonly refs: Map<number, string>;
  /** The sequence numbers added, in order once `sorted`; may still hold removed ones and repeats. */
  seqs: number[];
  sorted: boolean;
  /** Entries of `seqs` that are no longer in `refs` (or repeat one): compacted once they are many. */
  stale: number;
}

/** Stale entries an origin may gather before its list is compacted (and at least as many as live ones). */
const COMPACT_AFTER = 1_024;

/**
 * For each origin broker, the changes this replica holds, by sequence number, each naming the record it
 * is: what an exchange walks to send a peer the changes it lacks. A change replaced by a newer one of the
 * same record leaves the index.
 *
 * Held in memory and rebuilt from the records at start (every record carries its change's origin and
 * number). Kept in LMDB, it cost two writes per change, an entry added and the replaced one removed: a
 * third of the broker's LMDB writes per job, each a hand-off to lmdb-js's write thread.
 */
export class OriginIndex {
  private readonly origins = new Map<string, OriginChanges>();

  set(origin: string, seq: number, ref: string): void {
    let changes = this.origins.get(origin);
    if (changes === undefined) this.origins.set(origin, (changes = { refs: new Map(), seqs: [], sorted: true, stale: 0 }));
    if (changes.refs.has(seq)) {
      changes.refs.set(seq, ref);
      return;
    }
    const last = changes.seqs[changes.seqs.length - 1];
    // A broker's own changes, and a peer's as they are pushed, come in order: appending keeps the list sorted.
    if (last !== undefined && seq <= last) changes.sorted = false;
    changes.seqs.push(seq);
    changes.refs.set(seq, ref);
  }

  delete(origin: string, seq: number): void {
    const changes = this.origins.get(origin);
    if (changes === undefined || !changes.refs.delete(seq)) return;
    changes.stale++;
    if (changes.stale >= COMPACT_AFTER && changes.stale >= changes.refs.size) compact(changes);
  }

  /** The changes of `origin` with a sequence number above `since`, in order: [seq, ref]. */
  *after(origin: string, since: number): Generator<[number, string]> {
    const changes = this.origins.get(origin);
    if (changes === undefined) return;
    if (!changes.sorted) compact(changes);
    const { seqs, refs } = changes;
    let lo = 0;
    let hi = seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (seqs[mid]! <= since) lo = mid + 1;
      else hi = mid;
    }
    let previous = since;
    for (let i = lo; i < seqs.length; i++) {
      const seq = seqs[i]!;
      if (seq === previous) continue;
      previous = seq;
      const ref = refs.get(seq);
      if (ref !== undefined) yield [seq, ref];
    }
  }

  /** Changes held, over all origins. */
  get size(): number {
    let n = 0;
    for (const changes of this.origins.values()) n += changes.refs.size;
    return n;
  }
}

/** Sorts an origin's list and drops the numbers no longer held and the repeats. */
function compact(changes: OriginChanges): void {
  const seqs = changes.seqs.filter((seq) => changes.refs.has(seq)).sort((a, b) => a - b);
  changes.seqs = seqs.filter((seq, i) => i === 0 || seqs[i - 1] !== seq);
  changes.sorted = true;
  changes.stale = 0;
}
