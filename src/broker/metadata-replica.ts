import { merge } from '../clock/index.js';
import { encodedSize, isDataName, isFinal, MAX_SYNC_CHANGES, type AnyEnvelope, type BodyOf } from '../protocol/index.js';
import { pageUnder, type NamePage, type Table } from '../store/index.js';
import type { NodeRuntime } from '../transport/index.js';
import { JobRecords, type Records } from './job-records.js';
import { OriginIndex } from './origin-index.js';
import { resolve, type Change } from './metadata-merge.js';
import { syncChangeProblem } from './sync-trust.js';
import { before, decodeFacts, encodeFacts, factsOf, pad, TIME_DIGITS, wantsPhase, type JobFacts, type ListQuery, type Position } from './job-listing.js';

export type { Change } from './metadata-merge.js';
export { newer, resolve } from './metadata-merge.js';
export type Location = NonNullable<Change['location']>;
export type SyncedJob = NonNullable<Change['job']>;
export type RegisteredNode = NonNullable<Change['peer']>;
type TableName = Change['table'];

export interface ReplicaOptions {
  /** Anti-entropy: how often each peer broker is sent this broker's digest. */
  readonly intervalMs: number;
  /** After a failed exchange, try that peer again after failureRetryMs instead of the next round. */
  readonly retryOnFailure: boolean;
  readonly failureRetryMs: number;
  /** How far ahead of this broker's clock a change may be stamped (protocol.max_clock_offset_ms); 0: no bound. */
  readonly maxClockLeadMs: number;
}

/** Digest answers that were cut short are continued at once, up to this many in a row. */
const MAX_CONTINUATIONS = 1_000;
const SEQ_DIGITS = 15;

/** A job retention removed, and the names it forgot with it (their data is still on the datastores). */
export interface PrunedJob {
  readonly job: SyncedJob;
  readonly names: ReadonlyArray<{ readonly name: string; readonly location: Location }>;
}

/** How long finished jobs are kept in the replica. */
export interface Retention {
  readonly maxAgeMs: number;
  readonly maxCount: number;
}

/**
 * The broker metadata every broker holds a replica of: jobs and where named data lives. Each change is
 * stamped with its origin broker, that broker's sequence number, vector clock and HLC time; a record's
 * newest change wins (causally later, else the later HLC, else the higher origin id), so every broker
 * that has seen the same changes holds the same records, whatever order they came in.
 *
 * Changes are pushed to the live peer brokers as they happen. Every `intervalMs` each broker sends each
 * peer its version vector (origin -> highest sequence held) and gets back only the changes it lacks; a
 * restarted broker catches up the same way, from the vector kept in LMDB.
 */
export class MetadataReplica {
  private readonly tables: Record<TableName, Records>;
  private readonly jobRecords: JobRecords;
  private readonly names: Table<Change>;
  private readonly nodesTable: Table<Change>;
  /** What each origin changed, by sequence number: the record each change held is. */
  private readonly byOrigin = new OriginIndex();
  private readonly versionTable: Table<number>;
  private readonly versions = new Map<string, number>();
  private seq: number;
  private ownVersionDue = false;
  private outgoing: Change[] = [];
  private pushScheduled = false;
  private timer?: NodeJS.Timeout;
  /** Peers an exchange is under way with: a second one at the same time would fetch the same changes. */
  private readonly exchanging = new Set<string>();
  private readonly jobListeners: Array<(job: SyncedJob, change: Change, previous: SyncedJob | undefined) => void> = [];
  /**
   * `<finished at>\0<job id>` for every finished job held, oldest first: retention reads only its head,
   * and listings its tail. The value holds the job's facts (job-listing.ts), so a listing filters on it.
   */
  private readonly finished: Table<string>;
  private finishedCount = 0;
  /** `<origin>\0<seq>` -> name, for every deleted name (a change with no location) still held. */
  private readonly tombstones: Table<string>;
  /** What each peer broker said it holds, in its last digest: a tombstone all of them hold can go. */
  private readonly peerVersions = new Map<string, Readonly<Record<string, number>>>();
  /** Per client, its jobs that have not ended: what its job budget counts. */
  private readonly unfinished = new Map<string, Set<string>>();
  /** Per owner, the bytes of the names it owns: what its bytes budget counts. */
  private readonly owned = new Map<string, number>();
  private readonly nameListeners: Array<(name: string) => void> = [];

  constructor(
    private readonly node: NodeRuntime,
    private readonly options: ReplicaOptions,
  ) {
    const store = node.store;
    // Each merge reads what the last one wrote: the tables answer with writes not yet committed.
    // Records are compressed, but for jobs in flight (job-records.ts): a finished job's takes a third of
    // the pages (retention keeps thousands).
    const records = { cache: true, compress: true };
    this.jobRecords = new JobRecords(store);
    this.names = store.table<Change>('meta_names', records);
    this.nodesTable = store.table<Change>('meta_nodes', records);
    this.tables = { jobs: this.jobRecords, names: this.names, nodes: this.nodesTable };
    this.tombstones = store.table<string>('meta_tombstones');
    this.versionTable = store.table<number>('meta_versions');
    // Retention asks whether an entry is still there, removals of this turn included.
    this.finished = store.table<string>('meta_finished', { cache: true });
    for (const { key, value } of this.versionTable.getRange()) this.versions.set(String(key), value);
    for (const _ of this.finished.getKeys()) this.finishedCount++;
    this.seq = this.versions.get(node.link.id) ?? 0;
    for (const value of this.jobRecords.values()) this.indexLoaded(value);
    for (const { value } of this.names.getRange()) this.indexLoaded(value);
    for (const { value } of this.nodesTable.getRange()) this.indexLoaded(value);
    // Schema 3 kept the index in LMDB; it is rebuilt above since, and its old table only takes room.
    const legacyIndex = store.table<string>('meta_by_origin');
    if (legacyIndex.getKeysCount({ limit: 1 }) > 0) void legacyIndex.clearAsync();

    const link = node.link;
    // Only brokers reach here (the permission table), and a push only from a broker seen alive.
    link.on('sync_delta', (msg) => {
      if (link.peers.get(msg.from)?.alive !== true) {
        link.counters.reject(node.log, 'sync_changes_refused', msg.from, `${msg.from} pushed metadata but is not a live broker here`);
        return;
      }
      this.receive(msg.body, msg.from, true);
    });
    link.on('sync_digest', (msg) => {
      this.answer(msg).catch((err: Error) => node.log.warn({ peer: msg.from, err: err.message }, 'could not answer a metadata digest'));
    });
    link.onPresence((event) => {
      if (event.peer.role === 'broker' && event.type === 'up' && event.peer.id !== link.id) void this.exchange(event.peer.id);
    });
    node.onConnected(() => {
      this.timer = setInterval(() => {
        for (const peer of this.peers()) void this.exchange(peer);
      }, options.intervalMs);
      this.timer.unref();
    });
    node.beforeStop(async () => clearInterval(this.timer));
  }

  /** Where the cluster last placed `name`, or undefined if it is unknown or deleted. */
  locate(name: string): Location | undefined {
    return this.names.get(name)?.location;
  }

  /** Live names at or below `prefix`, a page at a time. */
  namePage(prefix: string, limit: number, after?: string): NamePage<{ name: string; located: Location }> {
    return pageUnder(this.names, prefix, limit, after, (name, c) => ({ name, located: c.location! }), (c) => c.location !== undefined);
  }

  job(jobId: string): SyncedJob | undefined {
    return this.tables.jobs.get(jobId)?.job;
  }

  /** Job ids in order, after `after`. */
  jobIds(after?: string): Generator<string> {
    return this.jobRecords.keys(after);
  }

  /** How many jobs `owner` has in the cluster that have not ended. */
  unfinishedJobs(owner: string): number {
    return this.unfinished.get(owner)?.size ?? 0;
  }

  /** Bytes of named data `owner` owns in the cluster, as far as this replica knows. */
  bytesOwned(owner: string): number {
    return this.owned.get(owner) ?? 0;
  }

  /** The executors and datastores each broker last recorded seeing, as (broker, node) pairs. */
  *registry(): Generator<{ broker: string; node: RegisteredNode }> {
    for (const { value } of this.nodesTable.getRange()) if (value.peer !== undefined) yield { broker: value.origin, node: value.peer };
  }

  /** What this broker last recorded about `nodeId`. */
  registered(nodeId: string): RegisteredNode | undefined {
    return this.tables.nodes.get(`${this.node.link.id}/${nodeId}`)?.peer;
  }

  /** Records this broker's view of an executor or datastore. */
  setNode(peer: RegisteredNode): Promise<void> {
    return this.local('nodes', `${this.node.link.id}/${peer.node_id}`, { peer });
  }

  /** Called for every job record that changed by sync, with the record it replaced. */
  onJob(listener: (job: SyncedJob, change: Change, previous: SyncedJob | undefined) => void): void {
    this.jobListeners.push(listener);
  }

  /** Called for every name whose location changed by sync (a peer broker stored it). */
  onName(listener: (name: string) => void): void {
    this.nameListeners.push(listener);
  }

  /** The version vector: per origin broker, the highest sequence number held. */
  digest(): Record<string, number> {
    return Object.fromEntries(this.versions);
  }

  setName(name: string, location: Location | undefined): Promise<void> {
    return this.local('names', name, location !== undefined ? { location } : {});
  }

  setJob(job: SyncedJob): Promise<void> {
    // A snapshot: the tables hand back what was written (they cache it until committed), and the caller
    // goes on changing its own record. The job manager changes a job's fields and its attempts' fields in
    // place and replaces everything else (spec, result, conflicts) whole, so copying those two levels is
    // enough, at a tenth of the cost of a deep clone.
    return this.local('jobs', job.job_id, { job: { ...job, attempts: job.attempts.map((a) => ({ ...a })) } });
  }


  // ---- local changes -------------------------------------------------------------------------------

  private local(table: TableName, key: string, value: Pick<Change, 'job' | 'location' | 'peer'>): Promise<void> {
    const current = this.tables[table].get(key);
    const change = this.ownChange(table, key, value, current);
    // A local write merges like any other: it cannot undo an accepted result or drop a superseded one.
    const kept = current === undefined ? change : this.renumberMerged(resolve(change, current), change, current);
    // The number is used only by a change that is kept as this one. A peer's version for this broker
    // advances only along its numbers: a gap would hold it back, and the peer would be sent everything
    // after the gap again at its next exchange.
    if (kept?.origin === change.origin && kept.seq === change.seq) this.takeNumber(change.seq);
    if (kept === undefined) return Promise.resolve();
    const written = this.store(kept, current);
    this.push(kept);
    return written;
  }

  /** A change to `key` as this broker's next one, stamped after `replaced` (and `alsoAfter`, if given). */
  private ownChange(table: TableName, key: string, value: Pick<Change, 'job' | 'location' | 'peer'>, replaced: Change | undefined, alsoAfter?: Change): Change {
    const stamp = this.node.link.stamp();
    let vc = stamp.vc;
    let latest: [number, number] | undefined;
    for (const c of [replaced, alsoAfter]) {
      if (c === undefined) continue;
      vc = merge(vc, c.vc);
      if (latest === undefined || c.hlc[0] > latest[0] || (c.hlc[0] === latest[0] && c.hlc[1] > latest[1])) latest = c.hlc;
    }
    // The rule compares HLC times only between concurrent changes, and stays one order only while a
    // change's time is after the change it replaces. The HLC ensures that, except when it refused a
    // peer's clock as implausible: then the replaced change's time, plus one, stands in.
    const { wall, logical } = stamp.hlc;
    const hlc: [number, number] = latest !== undefined && (latest[0] > wall || (latest[0] === wall && latest[1] >= logical)) ? [latest[0], latest[1] + 1] : [wall, logical];
    return { table, key, origin: this.node.link.id, seq: this.seq + 1, vc, hlc, ...value };
  }

  private takeNumber(seq: number): void {
    this.seq = seq;
    this.versions.set(this.node.link.id, seq);
    this.saveOwnVersion();
  }

  /**
   * A merge that kept neither change as it came (a record with an acceptance added to its superseded
   * list) becomes a change of this broker's own, stamped after both. Stored under the number of the change
   * it was built on, it would reach no peer that already holds that change: an exchange sends a peer only
   * numbers it lacks, and this broker no longer holds the change of its own that the merge replaced.
   */
  private renumberMerged(kept: Change | undefined, incoming: Change, current: Change): Change | undefined {
    if (kept === undefined || kept === incoming || kept === current) return kept;
    if (kept.origin === this.node.link.id && kept.seq === this.seq + 1) return kept;
    const own = this.ownChange(kept.table, kept.key, { job: kept.job }, current, incoming);
    this.takeNumber(own.seq);
    return own;
  }

  /**
   * Writes this broker's own sequence number once for all the changes it made in this turn's synchronous
   * work: the microtask runs before LMDB closes the turn's batch, so the number commits with the changes.
   */
  private saveOwnVersion(): void {
    if (this.ownVersionDue) return;
    this.ownVersionDue = true;
    queueMicrotask(() => {
      this.ownVersionDue = false;
      void this.versionTable.put(this.node.link.id, this.versions.get(this.node.link.id)!);
    });
  }

  private push(change: Change): void {
    if (this.peers().length === 0) return;
    this.outgoing.push(change);
    if (this.pushScheduled) return;
    this.pushScheduled = true;
    setImmediate(() => {
      this.pushScheduled = false;
      const changes = this.outgoing;
      this.outgoing = [];
      const peers = this.peers();
      if (peers.length === 0) return;
      for (const part of this.messagesOf(changes)) {
        // Versions stay empty: a push says nothing about what else the receiver holds.
        for (const peer of peers) this.node.link.send(peer, 'sync_delta', { changes: part, versions: {}, complete: false });
      }
      this.node.link.counters.inc('sync_changes_pushed', changes.length);
    });
  }

  // ---- merging -------------------------------------------------------------------------------------

  /**
   * Applies changes from a peer broker; returns how many replaced what this broker held. `pushed`: the
   * peer sent them as they happened, so they must be its own.
   */
  receive(delta: BodyOf<'sync_delta'>, from: string, pushed = false): number {
    const counters = this.node.link.counters;
    let applied = 0;
    const touched = new Set<string>();
    const source = { sender: from, pushed, now: Date.now(), maxLeadMs: this.options.maxClockLeadMs };
    // Our own changes, coming back after this broker lost its state: never reuse their numbers, also not
    // for a merge made before the last of them is read.
    for (const change of delta.changes) if (change.origin === this.node.link.id && change.seq > this.seq) this.seq = change.seq;
    for (const change of delta.changes) {
      const problem = invalid(change) ?? syncChangeProblem(change, source);
      if (problem !== undefined) {
        counters.reject(this.node.log, 'sync_changes_refused', from, problem);
        continue;
      }
      counters.inc('sync_changes_received');
      counters.inc(`sync_${change.table}_received`);
      const current = this.tables[change.table].get(change.key);
      const kept = current === undefined ? change : this.renumberMerged(resolve(change, current), change, current);
      if (kept !== undefined) {
        void this.store(kept, current);
        if (kept !== change) this.push(kept);
        applied++;
        if (kept.table === 'jobs' && kept.job !== undefined) for (const listener of this.jobListeners) listener(kept.job, kept, current?.job);
        if (kept.table === 'names' && kept.location !== undefined) for (const listener of this.nameListeners) listener(kept.key);
      }
      if (change.seq === (this.versions.get(change.origin) ?? 0) + 1) {
        this.versions.set(change.origin, change.seq);
        touched.add(change.origin);
      }
    }
    for (const [origin, seq] of Object.entries(delta.versions)) {
      if (seq > (this.versions.get(origin) ?? 0)) {
        this.versions.set(origin, seq);
        touched.add(origin);
      }
    }
    for (const origin of touched) void this.versionTable.put(origin, this.versions.get(origin)!);
    counters.inc('sync_changes_applied', applied);
    return applied;
  }

  /** A record read at start: counted against its owner's budgets, and found by its change's origin. */
  private indexLoaded(change: Change): void {
    this.tally(undefined, change);
    this.byOrigin.set(change.origin, change.seq, change.table, change.key);
  }

  /** Keeps the per-client counts budgets are checked against in step with the records. */
  private tally(replaced: Change | undefined, change: Change): void {
    if (change.table === 'names') {
      this.own(replaced?.location, -1);
      this.own(change.location, 1);
      return;
    }
    if (change.table !== 'jobs') return;
    const before = replaced?.job;
    if (before !== undefined && !isFinal(before.state)) this.unfinished.get(before.owner)?.delete(before.job_id);
    const after = change.job;
    if (after !== undefined && !isFinal(after.state)) {
      let open = this.unfinished.get(after.owner);
      if (open === undefined) this.unfinished.set(after.owner, (open = new Set()));
      open.add(after.job_id);
    }
  }

  private own(location: Location | undefined, sign: 1 | -1): void {
    if (location?.owner === undefined) return;
    const left = (this.owned.get(location.owner) ?? 0) + sign * location.size;
    if (left > 0) this.owned.set(location.owner, left);
    else this.owned.delete(location.owner);
  }

  private store(change: Change, replaced: Change | undefined): Promise<void> {
    this.tally(replaced, change);
    if (replaced !== undefined) this.byOrigin.delete(replaced.origin, replaced.seq);
    this.byOrigin.set(change.origin, change.seq, change.table, change.key);
    if (change.table === 'jobs') this.indexFinished(replaced?.job, change.job);
    if (change.table === 'names') {
      if (replaced !== undefined && replaced.location === undefined) void this.tombstones.remove(originKey(replaced.origin, replaced.seq));
      if (change.location === undefined) void this.tombstones.put(originKey(change.origin, change.seq), change.key);
    }
    return this.tables[change.table].put(change.key, change).then(() => undefined);
  }

  /**
   * Drops deleted names every live peer broker has seen deleted (each one's last digest covers the
   * deletion), so deletions do not pile up. None of them can send the old location back: every version
   * vector covers the change that held it. A broker that was away during both the deletion and the drop
   * keeps the old location until the name is written again; it cannot spread it, for the same reason.
   * Returns how many went.
   */
  pruneTombstones(budget: number): number {
    const peers = this.peers();
    const held = (origin: string, seq: number) => peers.every((p) => (this.peerVersions.get(p)?.[origin] ?? 0) >= seq);
    const due: Array<[string, string]> = [];
    for (const { key, value } of this.tombstones.getRange()) {
      if (due.length >= budget) break;
      const index = String(key);
      if (held(index.slice(0, index.indexOf('\0')), seqOf(index))) due.push([index, value]);
    }
    let dropped = 0;
    for (const [index, name] of due) {
      void this.tombstones.remove(index);
      const change = this.names.get(name);
      // Only if the deletion is still what the name holds (a later write replaces it otherwise).
      if (change === undefined || change.location !== undefined || originKey(change.origin, change.seq) !== index) continue;
      this.forget('names', change);
      dropped++;
    }
    if (dropped > 0) this.node.link.counters.inc('tombstones_pruned', dropped);
    return dropped;
  }

  private indexFinished(before: SyncedJob | undefined, after: SyncedJob | undefined): void {
    const was = finishedKey(before);
    const is = finishedKey(after);
    if (was === is && (is === undefined || encodeFacts(factsOf(before!)) === encodeFacts(factsOf(after!)))) return;
    if (was !== undefined && was !== is) {
      void this.finished.remove(was);
      this.finishedCount--;
    }
    if (is !== undefined) {
      void this.finished.put(is, encodeFacts(factsOf(after!)));
      if (was !== is) this.finishedCount++;
    }
  }

  // ---- listing -------------------------------------------------------------------------------------

  /**
   * Every job in listing order (job-listing.ts) after `after`, with what the filters of `query` read. The
   * unfinished jobs are few (budgets bound them) and indexed in memory by owner; the finished ones are read
   * from the tail of the retention index, whose values carry what the filters need, down to `since`. The
   * caller stops reading when its page is full or it has read enough.
   */
  *listing(query: ListQuery, after?: Position): Generator<{ position: Position; jobId: string; facts: JobFacts | undefined }> {
    if ((after === undefined || after.phase === 'a') && wantsPhase('a', query)) {
      const owners = query.owner !== undefined ? [query.owner] : [...this.unfinished.keys()];
      const active: Array<{ position: Position; facts: JobFacts }> = [];
      for (const owner of owners) {
        for (const jobId of this.unfinished.get(owner) ?? []) {
          const job = this.job(jobId);
          if (job === undefined) continue;
          const position: Position = { phase: 'a', at: job.created_at, jobId };
          if (after === undefined || before(after, position)) active.push({ position, facts: factsOf(job) });
        }
      }
      active.sort((x, y) => (before(x.position, y.position) ? -1 : 1));
      for (const { position, facts } of active) yield { position, jobId: position.jobId, facts };
    }
    if (!wantsPhase('f', query)) return;
    const range = {
      reverse: true,
      ...(after?.phase === 'f' ? { start: `${pad(after.at)}\0${after.jobId}` } : {}),
      ...(query.since !== undefined ? { end: pad(query.since) } : {}),
    };
    for (const { key, value } of this.finished.getRange(range)) {
      const index = String(key);
      const position: Position = { phase: 'f', at: Number(index.slice(0, TIME_DIGITS)), jobId: index.slice(TIME_DIGITS + 1) };
      if (after?.phase === 'f' && !before(after, position)) continue;
      const facts = decodeFacts(value);
      const job = facts === undefined ? this.job(position.jobId) : undefined;
      yield { position, jobId: position.jobId, facts: facts ?? (job !== undefined ? factsOf(job) : undefined) };
    }
  }

  // ---- retention -----------------------------------------------------------------------------------

  /** Finished jobs held, whoever manages them. */
  get finishedJobs(): number {
    return this.finishedCount;
  }

  /**
   * Removes finished jobs older than the retention age, and the oldest beyond the retention count, with the
   * names they published (where the index still points at their copy) and every name under `<job>/`. Each
   * broker applies the same rule to its own replica, so no deletion needs to travel and a broker that was
   * away prunes the same jobs when it comes back, instead of handing them back to the others: its copies
   * are changes the others have already seen. At most `budget` jobs go per call, oldest first; the caller
   * deletes the data of the jobs it manages.
   */
  prune(now: number, retention: Retention, budget: number): PrunedJob[] {
    const cutoff = now - retention.maxAgeMs;
    const due: string[] = [];
    let left = this.finishedCount;
    for (const key of this.finished.getKeys()) {
      const index = String(key);
      // The key list is read from the last commit: entries an earlier pass removed may still be in it.
      // They are passed over, not counted against the budget: a pass that follows a full one at once
      // (before its removals are committed) would otherwise find only those and stop, leaving retention
      // 2,000 jobs per interval behind a broker finishing jobs faster than that.
      if (this.finished.get(index) === undefined) continue;
      if (due.length >= budget || (Number(index.slice(0, TIME_DIGITS)) >= cutoff && left <= retention.maxCount)) break;
      due.push(index);
      left--;
    }
    const pruned: PrunedJob[] = [];
    for (const index of due) {
      void this.finished.remove(index);
      this.finishedCount--;
      const dropped = this.dropRecord(index.slice(TIME_DIGITS + 1));
      if (dropped !== undefined) pruned.push(dropped);
    }
    if (pruned.length > 0) this.node.link.counters.inc('jobs_pruned', pruned.length);
    return pruned;
  }

  /**
   * Drops a finished job from this replica at once, with its names, as retention would: an operator or
   * its submitter removed it. Its final record has travelled; other brokers drop it when its retention
   * ends. Returns what went, for the caller to delete its data.
   */
  dropJob(jobId: string): PrunedJob | undefined {
    const job = this.tables.jobs.get(jobId)?.job;
    if (job === undefined || !isFinal(job.state)) return undefined;
    const index = finishedKey(job);
    if (index !== undefined && this.finished.get(index) !== undefined) {
      void this.finished.remove(index);
      this.finishedCount--;
    }
    return this.dropRecord(jobId);
  }

  /** Drops a job's record and its names from this replica (its retention index entry is the caller's). */
  private dropRecord(jobId: string): PrunedJob | undefined {
    const change = this.tables.jobs.get(jobId);
    if (change?.job === undefined) return undefined;
    this.forget('jobs', change);
    const names = new Map<string, Location>();
    for (const [name, at] of Object.entries(change.job.result?.published ?? {})) {
      const here = this.names.get(name)?.location;
      if (here !== undefined && here.store === at.store && here.at[0] === at.at[0] && here.at[1] === at.at[1]) names.set(name, here);
    }
    for (const { key, value } of this.names.getRange({ start: `${jobId}/`, end: `${jobId}0` })) {
      // A name in the tree that another node owns (written before the job's id was taken) is not the job's.
      if (value.location !== undefined && value.location.owner !== undefined && value.location.owner !== change.job.owner) continue;
      if (value.location !== undefined) names.set(String(key), value.location);
      else this.forget('names', value);
    }
    for (const name of names.keys()) this.forget('names', this.names.get(name)!);
    return { job: change.job, names: [...names].map(([name, location]) => ({ name, location })) };
  }

  /** Drops a record from this replica only: no change is made, so nothing travels. */
  private forget(table: TableName, change: Change): void {
    if (table === 'names') this.own(change.location, -1);
    this.byOrigin.delete(change.origin, change.seq);
    void this.tables[table].remove(change.key);
    if (table === 'names' && change.location === undefined) void this.tombstones.remove(originKey(change.origin, change.seq));
  }

  // ---- anti-entropy --------------------------------------------------------------------------------

  /** Sends a peer our digest and applies what it returns, continuing while its answer was cut short. */
  private async exchange(peer: string): Promise<void> {
    if (this.exchanging.has(peer)) return;
    this.exchanging.add(peer);
    const counters = this.node.link.counters;
    try {
      for (let i = 0; i < MAX_CONTINUATIONS; i++) {
        const reply = await this.node.link.request(peer, 'sync_digest', { versions: this.digest() });
        if (reply.kind !== 'sync_delta') throw new Error(`${peer} answered ${reply.kind} to a digest`);
        this.receive(reply.body, peer);
        counters.inc('sync_exchanges');
        if (reply.body.complete) break;
      }
      await this.node.store.durable();
    } catch (err) {
      counters.inc('sync_failures');
      this.node.log.warn({ peer, err: (err as Error).message }, 'metadata sync with a peer failed');
      if (this.options.retryOnFailure && this.node.link.peers.get(peer)?.alive === true) {
        setTimeout(() => void this.exchange(peer), this.options.failureRetryMs).unref();
      }
    } finally {
      this.exchanging.delete(peer);
    }
  }

  private async answer(msg: AnyEnvelope & { kind: 'sync_digest' }): Promise<void> {
    this.peerVersions.set(msg.from, msg.body.versions);
    const delta = await this.changesFor(msg.body.versions);
    this.node.link.counters.inc('sync_changes_sent', delta.changes.length);
    this.node.link.reply(msg, 'sync_delta', delta);
  }

  /**
   * What a peer whose version vector is `theirs` lacks: for each origin, the records whose newest change
   * came after the peer's sequence number. `versions` says up to where the answer covers each origin.
   */
  async changesFor(theirs: Readonly<Record<string, number>>): Promise<BodyOf<'sync_delta'>> {
    // The index is read in ranges, which LMDB answers from what is committed, while the version vector
    // already counts the changes of this turn. Claiming those without sending them would let the peer
    // skip them for good: answer once the changes counted so far are committed, and claim no more.
    const upTo = [...this.versions];
    await this.node.store.durable();
    const changes: Change[] = [];
    const covered: Record<string, number> = {};
    let complete = true;
    let bytes = 0;
    for (const [origin, mine] of upTo) {
      const since = theirs[origin] ?? 0;
      if (mine <= since) continue;
      let cutAt: number | undefined;
      for (const [seq, table, key] of this.byOrigin.after(origin, since)) {
        const change = this.tables[table].get(key);
        if (change === undefined) continue;
        const size = encodedSize(change);
        if (this.deltaFull(changes.length, bytes, size)) {
          cutAt = seq - 1;
          break;
        }
        changes.push(change);
        bytes += size;
      }
      covered[origin] = cutAt ?? mine;
      if (cutAt !== undefined) {
        complete = false;
        break;
      }
    }
    return { changes, versions: covered, complete };
  }

  /**
   * Whether a sync message holding `count` changes of `bytes` has no room for one of `size` bytes. It
   * carries at most MAX_SYNC_CHANGES, and at most half what a message may have (room for the envelope and
   * the bundle), unless the change is alone. A job's record can take most of a message (its spec alone
   * may), so 500 of them would not fit, and a message the hub refuses would stall that origin's sync.
   */
  private deltaFull(count: number, bytes: number, size: number): boolean {
    return count === MAX_SYNC_CHANGES || (count > 0 && bytes + size > Math.floor(this.node.link.limits.maxMessageBytes / 2));
  }

  /** Changes split into sync messages as deltaFull() allows. */
  private messagesOf(changes: readonly Change[]): Change[][] {
    const parts: Change[][] = [];
    let part: Change[] = [];
    let bytes = 0;
    for (const change of changes) {
      const size = encodedSize(change);
      if (this.deltaFull(part.length, bytes, size)) {
        parts.push(part);
        part = [];
        bytes = 0;
      }
      part.push(change);
      bytes += size;
    }
    if (part.length > 0) parts.push(part);
    return parts;
  }

  private peers(): string[] {
    return this.node.link.peers
      .alive('broker')
      .filter((p) => p.id !== this.node.link.id)
      .map((p) => p.id);
  }
}

function invalid(change: Change): string | undefined {
  if (change.table === 'jobs') {
    if (change.job === undefined) return `job change ${change.key} carries no job`;
    if (change.job.job_id !== change.key) return `job change ${change.key} carries job ${change.job.job_id}`;
  } else if (change.table === 'nodes') {
    // A broker speaks only for what it sees itself.
    if (change.peer === undefined || change.key !== `${change.origin}/${change.peer.node_id}`) return `node change ${change.key} is not ${change.origin}'s own view`;
  } else if (!isDataName(change.key)) {
    return `"${change.key}" is not a data name`;
  }
  return undefined;
}

/** Where a finished job sits in the retention index; undefined while it is not finished. */
function finishedKey(job: SyncedJob | undefined): string | undefined {
  if (job === undefined || !isFinal(job.state)) return undefined;
  return `${String(job.updated_at).padStart(TIME_DIGITS, '0')}\0${job.job_id}`;
}

function originKey(origin: string, seq: number): string {
  return `${origin}\0${String(seq).padStart(SEQ_DIGITS, '0')}`;
}

function seqOf(key: string): number {
  return Number(key.slice(key.indexOf('\0') + 1));
}
