import { createHash } from 'node:crypto';
import { CHUNK_BYTES, isStagingName, resultArchiveName, stagingOwner, stagingPrefix, type AnyEnvelope, type BodyOf, type Envelope, type Kind } from '../protocol/index.js';
import type { NamePage, Table } from '../store/index.js';
import { RemoteError, type NodeRuntime } from '../transport/index.js';
import { budgetProblem, decideJobDelete, decideWrite, isRefused, type Grant, type Refused, type Requester } from './data-ownership.js';
import type { MetadataReplica } from './metadata-replica.js';
import { answering, Refusal } from './refusal.js';

/** Where a name lives, as the broker last learned it, and who owns it (absent for names from before owners). */
export interface Located {
  store: string;
  size: number;
  at: [number, number];
  owner?: string;
  /**
   * The bytes are in the record of the job the name belongs to, not on a datastore: a small result
   * archive its broker kept there (`store` is that broker).
   */
  inline?: boolean;
}

/** A located name's bytes are on the datastore `store` (not in a job's record). */
const onDatastore = (located: Located): boolean => located.inline !== true;

export type { Grant } from './data-ownership.js';
type Stamp = NonNullable<BodyOf<'data_put'>['stamp']>;

export interface DataRouterOptions {
  /** Bytes of named data one client may own (budgets.max_bytes_per_client). */
  readonly maxBytesPerClient: number;
}

/** Version fields a writer may not send any more: refused with this reason (PROTOCOL.md, "Data versions and owners"). */
const STAMPED_BY_WRITER = 'a write may not carry its own version or owner (stamp): the broker gives it one; upgrade this node';

type Item = BodyOf<'data_items'>['items'][number];

/** An upload relayed through this broker: the datastore its chunks go to. */
interface RelayedUpload {
  store: string;
  touched: number;
  /** Who the upload is for, decided at its first chunk. */
  grant: Grant;
  /** The chunk expected next, and the bytes of those before it: what the budget counts so far. */
  next: number;
  received: number;
}

/**
 * Says whether `writer` may write the staging name `name` (PROTOCOL.md, "Results larger than one
 * message"): undefined if it may, else why not.
 */
export type StagingGuard = (writer: string, name: string) => string | undefined;

/** A staged result object to publish under another name, if it is exactly this size and digest. */
export interface StagedMove {
  readonly from: string;
  readonly to: string;
  readonly size: number;
  readonly digest: string;
}

/**
 * A staged result that cannot be published as its reference says: it does not exist, is another size or
 * digest, or is not the sender's to publish. Unlike an unreachable datastore, asking again will not help.
 */
export class BadStagedReference extends Refusal {
  constructor(message: string) {
    super('bad_reference', message);
  }
}

/** Error codes with which a datastore refuses a move whose reference is wrong. */
const BAD_MOVE_CODES = new Set(['not_found', 'size_mismatch', 'digest_mismatch', 'bad_move']);

/** Uploads that stop sending for this long are forgotten (the datastore drops them too). */
const UPLOAD_IDLE_MS = 120_000;
/** How long a datastore gets to store one append (up to 20,000 records). */
const APPEND_TIMEOUT_MS = 30_000;

/**
 * The broker's part of named data: it places new data on the live datastore with the most free space,
 * keeps a name -> datastore index so that a get asks one store rather than all, and answers listings
 * from that index. The index is part of the replicated broker metadata: any broker can find any name.
 */
export class DataRouter {

  private readonly storedListeners: Array<(name: string) => void> = [];
  private readonly uploads = new Map<string, RelayedUpload>();
  private stagingGuard: StagingGuard = () => 'this broker manages no jobs';
  /**
   * `<datastore>\0<name>` -> the version of a deletion this broker owes a datastore that was out of reach
   * when the name was discarded: sent when that datastore is next seen alive, so its copy does not outlive
   * the job. Kept on disk, read only then: a long absence costs disk, not memory or timers.
   */
  private readonly owed: Table<Stamp>;
  /** Datastores whose owed deletions are being sent now. */
  private readonly paying = new Set<string>();

  constructor(
    private readonly node: NodeRuntime,
    private readonly index: MetadataReplica,
    private readonly options: DataRouterOptions,
  ) {
    importLegacyIndex(node, index);
    this.owed = node.store.table<Stamp>('data_owed_deletions');
    const link = node.link;
    link.onPresence((event) => {
      if (event.type === 'up' && event.peer.role === 'datastore') void this.payOwed(event.peer.id);
    });
    link.on('data_put', (msg) => answering(link, msg, () => this.put(msg)));
    link.on('data_get', (msg) => answering(link, msg, () => this.get(msg)));
    link.on('data_list', (msg) => answering(link, msg, () => this.list(msg)));
    link.on('data_delete', (msg) => answering(link, msg, () => this.delete(msg)));
    link.on('data_write', (msg) => answering(link, msg, () => this.write(msg)));
    link.on('data_read', (msg) => answering(link, msg, () => this.read(msg)));
    link.on('data_append', (msg) => answering(link, msg, () => this.append(msg)));
  }

  /** Live datastores, most free space first (ties by id, so every broker picks alike). */
  datastores(): Array<{ id: string; free: number }> {
    return this.node.link.peers
      .alive('datastore')
      .map((p) => ({ id: p.id, free: p.heartbeat?.free_bytes ?? 0 }))
      .sort((a, b) => b.free - a.free || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  private alive(store: string): boolean {
    const p = this.node.link.peers.get(store);
    return p?.alive === true && p.role === 'datastore';
  }

  /** Where the broker last placed `name`, with the version stored there. */
  locate(name: string): Readonly<Located> | undefined {
    return this.index.locate(name);
  }

  /** Sets who may write staging names (the job manager knows which executor runs which attempt). */
  guardStaging(guard: StagingGuard): void {
    this.stagingGuard = guard;
  }

  /**
   * Staging names are written only by the executor running that attempt: nobody can plant a result for
   * another attempt, nor overwrite data of others under the guise of staging.
   */
  private checkWritable(msg: Envelope, name: string): void {
    if (!isStagingName(name)) {
      // An executor's own writes are its attempts' staged results; what a job publishes, the broker does.
      if (msg.role !== 'executor') return;
      this.node.link.counters.reject(this.node.log, 'data_staging_refused', msg.from, `executor ${msg.from} may not write "${name}": executors write only their attempts' staged results`);
      throw new Refusal('reserved_name', `executor ${msg.from} may write only staged results of its attempts, not "${name}"`);
    }
    const why = this.stagingGuard(msg.from, name);
    if (why === undefined) return;
    this.node.link.counters.reject(this.node.log, 'data_staging_refused', msg.from, `${msg.from} may not write "${name}": ${why}`);
    throw new Refusal('reserved_name', `"${name}" is reserved for staging job results: ${why}`);
  }

  /** Called after a name was stored (not for stale writes), e.g. to start jobs that wait for it. */
  onStored(listener: (name: string) => void): void {
    this.storedListeners.push(listener);
  }

  /** The owner of a job this broker knows, for names in its `<jobId>/` tree. */
  private readonly jobOwnerOf = (jobId: string): string | undefined => this.index.job(jobId)?.owner;

  /**
   * What `who` may write to `name`, adding `adding` bytes: refused (and counted) if the name is another's
   * or the owner's budget would be passed.
   */
  private grant(who: Requester, name: string, adding: number): Grant {
    const known = this.index.locate(name);
    const decided = decideWrite(who, name, known?.owner, this.jobOwnerOf);
    if (isRefused(decided)) throw this.refused(who.id, decided);
    this.checkBudget(who, decided.owner, adding, known?.owner === decided.owner ? known.size : 0);
    return decided;
  }

  /**
   * As grant, but an attempt's staged results (which checkWritable let through: the executor running it)
   * are written for the job's submitter in its tree, like the results they become; the budget counts
   * them once they are published.
   */
  private grantFor(who: Requester, name: string, adding: number): Grant {
    const staged = stagingOwner(name);
    if (staged === undefined) return this.grant(who, name, adding);
    return { owner: this.jobOwnerOf(staged.jobId) ?? who.id, replace: true };
  }

  private checkBudget(who: Requester, owner: string, adding: number, replacing: number): void {
    const over = budgetProblem(who, owner, this.index.bytesOwned(owner), adding, replacing, this.options.maxBytesPerClient);
    if (over !== undefined) throw this.refused(who.id, over);
  }

  private refused(from: string, r: Refused): Refusal {
    this.node.link.counters.reject(this.node.log, r.code === 'not_owner' ? 'data_refused_not_owner' : 'data_refused_budget', from, r.message);
    return new Refusal(r.code, r.message);
  }

  /** The version the cluster gives a write or deletion now: this broker's clock, never the writer's. */
  private stamp(writer: string, grant: Grant): Stamp {
    const at = this.node.link.now();
    return { at: [at.wall, at.logical], writer, owner: grant.owner, replace: grant.replace };
  }

  /** A request to a datastore; a refusal of another's name is counted here too, where the writer asked. */
  private async ask<K extends Kind>(store: string, kind: K, body: BodyOf<K>, writer: string, timeoutMs?: number): Promise<AnyEnvelope> {
    try {
      return await this.node.link.request(store, kind, body, timeoutMs);
    } catch (err) {
      if (err instanceof RemoteError && err.code === 'not_owner') this.node.link.counters.reject(this.node.log, 'data_refused_not_owner', writer, err.message);
      throw err;
    }
  }

  /** Refuses a request that carries a version of its writer's choosing (older nodes did). */
  private unstamped(msg: AnyEnvelope, stamp: Stamp | undefined): void {
    if (stamp === undefined) return;
    this.node.link.counters.reject(this.node.log, 'data_refused_writer_version', msg.from, STAMPED_BY_WRITER);
    throw new Refusal('writer_version', STAMPED_BY_WRITER);
  }

  /**
   * Stores data on a datastore for `grant.owner` and indexes it durably, versioned by this broker's
   * clock. A name stays on the store that has it while that store is alive, so last-write-wins is decided
   * in one place; new names go where there is most room. The job manager publishes results this way.
   *
   * `withCaller`: the index entry is not waited for, and is written at the end of the turn, as the job
   * manager writes the accepted result that names it: lmdb-js closes a batch in the turn after its first
   * write, so both land in one LMDB batch, and in "flush" mode one flush instead of two (measured: 3.0
   * -> 2.0 fsyncs per job). The entry is queued first, so it is never committed after the record that
   * names it. Listeners hear of the name once it is durable, as they do otherwise.
   */
  async store(name: string, bytes: Uint8Array, writer: string, grant: Grant, options: { withCaller?: boolean } = {}): Promise<BodyOf<'data_put_result'> & { at: [number, number] }> {
    const store = this.placeFor(name);
    const stamp = this.stamp(writer, grant);
    const reply = await this.ask(store, 'data_put', { name, bytes, stamp }, writer);
    if (reply.kind !== 'data_put_result') throw new Refusal('bad_reply', `${store} answered ${reply.kind}`);
    if (reply.body.outcome !== 'stale') {
      const location = { store, size: bytes.byteLength, at: stamp.at, owner: grant.owner };
      if (options.withCaller !== true) await this.indexStored(name, location);
      else this.indexWithCaller(name, location);
    }
    return { ...reply.body, at: stamp.at };
  }

  /**
   * Indexes a small result archive that the accepting broker keeps in its job's record: no datastore
   * holds it, so accepting the result waits for none. The entry is queued before the record that holds
   * the bytes (indexWithCaller), so both commit in one LMDB batch and the name never points at a record
   * not yet written. A copy a datastore held under the name before is deleted there.
   */
  keepInRecord(name: string, size: number, writer: string, owner: string): { store: string; at: [number, number] } {
    const { at } = this.stamp(writer, { owner, replace: true });
    const before = this.index.locate(name);
    const location: Located = { store: this.node.link.id, size, at, owner, inline: true };
    this.indexWithCaller(name, location);
    if (before !== undefined && onDatastore(before)) void this.discard([{ name, location: before }]);
    return { store: location.store, at };
  }

  /**
   * Indexes a name at the end of this turn, where the job manager writes the record that names it
   * (store()'s `withCaller`): queued before that record, the entry lands in the same LMDB batch. Written
   * at once instead, it went in a batch of its own, and in "flush" mode a job's result took two fsyncs
   * instead of one (measured: 3.0 instead of 2.0 per job).
   */
  private indexWithCaller(name: string, location: Located): void {
    setImmediate(() => this.indexStored(name, location).catch((err: Error) => this.node.log.warn({ name, err: err.message }, 'indexing a published name failed')));
  }

  /**
   * The bytes of a name kept in its job's record (keepInRecord), as this broker's replica holds that
   * record: the name's and the record's version must agree, since both replicate on their own.
   */
  private fromRecord(name: string, known: Located): { bytes: Uint8Array; writer: string } {
    const jobId = name.slice(0, name.indexOf('/'));
    const result = this.index.job(jobId)?.result;
    const kept = result?.published?.[name];
    if (result === undefined || kept?.bytes === undefined || kept.at[0] !== known.at[0] || kept.at[1] !== known.at[1]) {
      throw new Refusal('store_unavailable', `"${name}" is kept in the record of job ${jobId}, and that version of the record has not reached ${this.node.link.id} yet`);
    }
    return { bytes: kept.bytes, writer: result.executor };
  }

  /**
   * The store a name lives on while it is alive, else the live one with the most room. An attempt's
   * staged results go together, so that publishing them is one transaction on one store.
   */
  private placeFor(name: string): string {
    const known = this.index.locate(name) ?? this.stagedSibling(name);
    const store = known !== undefined && onDatastore(known) && this.alive(known.store) ? known.store : this.datastores()[0]?.id;
    if (store === undefined) throw new Refusal('no_datastore', 'no datastore is alive to hold the data; start one (`ucp datastore`)');
    return store;
  }

  /** Where another object of the same attempt's staging lives, if any. */
  private stagedSibling(name: string): Located | undefined {
    const owner = stagingOwner(name);
    if (owner === undefined) return undefined;
    return this.index.namePage(stagingPrefix(owner.jobId, owner.attempt).slice(0, -1), 1).items[0]?.located;
  }

  private async indexStored(name: string, location: Located): Promise<void> {
    await this.node.store.durableAfter(this.index.setName(name, location));
    for (const listener of this.storedListeners) listener(name);
  }

  /**
   * Relays one chunk of an upload to the datastore chosen at its first chunk; the last chunk's answer
   * says whether the object was stored, and only then is the name indexed.
   */
  private async write(msg: Envelope<'data_write'>): Promise<void> {
    const { upload, name, index, last } = msg.body;
    // Every chunk: an attempt whose result is in may not change what it staged.
    this.checkWritable(msg, name);
    this.unstamped(msg, last?.stamp);
    const key = `${msg.from}/${upload}`;
    const now = Date.now();
    for (const [k, u] of this.uploads) if (u.touched < now - UPLOAD_IDLE_MS) this.uploads.delete(k);
    let relayed = this.uploads.get(key);
    const who = { id: msg.from, role: msg.role };
    if (relayed === undefined) {
      if (index !== 0) throw new Refusal('upload_unknown', `upload ${upload} of "${name}" is not known to ${this.node.link.id} (it restarted or the upload stalled); start it again`);
      // Ownership is decided once, at the first chunk: an upload nobody may finish is not relayed at all.
      relayed = { store: this.placeFor(name), touched: now, grant: this.grantFor(who, name, msg.body.bytes.byteLength), next: 0, received: 0 };
      this.uploads.set(key, relayed);
    }
    relayed.touched = now;
    // The budget is checked as the bytes arrive, not only once the whole object has been sent; a chunk
    // sent again (its reply was lost) is not counted twice.
    if (index === relayed.next) {
      relayed.received += msg.body.bytes.byteLength;
      relayed.next++;
      const known = this.index.locate(name);
      try {
        this.checkBudget(who, relayed.grant.owner, Math.max(relayed.received, last?.size ?? 0), known?.owner === relayed.grant.owner ? known.size : 0);
      } catch (err) {
        this.uploads.delete(key);
        throw err;
      }
    }
    if (!this.alive(relayed.store)) {
      this.uploads.delete(key);
      throw new Refusal('store_unavailable', `the datastore ${relayed.store} receiving "${name}" is not reachable now; start the upload again`);
    }
    const stamp = last === undefined ? undefined : this.stamp(msg.from, relayed.grant);
    const body = last === undefined || stamp === undefined ? msg.body : { ...msg.body, last: { size: last.size, digest: last.digest, stamp } };
    let reply;
    try {
      reply = await this.ask(relayed.store, 'data_write', body, msg.from);
    } catch (err) {
      this.uploads.delete(key);
      throw err;
    }
    if (last === undefined) {
      if (reply.kind !== 'data_written') throw new Refusal('bad_reply', `${relayed.store} answered ${reply.kind}`);
      this.node.link.reply(msg, 'data_written', reply.body);
      return;
    }
    this.uploads.delete(key);
    if (reply.kind !== 'data_put_result') throw new Refusal('bad_reply', `${relayed.store} answered ${reply.kind}`);
    if (reply.body.outcome !== 'stale') await this.indexStored(name, { store: relayed.store, size: last.size, at: stamp!.at, owner: relayed.grant.owner });
    this.node.link.reply(msg, 'data_put_result', reply.body);
  }

  private async read(msg: Envelope<'data_read'>): Promise<void> {
    const { name } = msg.body;
    const known = this.index.locate(name);
    if (known === undefined) throw new Refusal('not_found', `no data named "${name}"`);
    if (!onDatastore(known)) {
      const { bytes, writer } = this.fromRecord(name, known);
      const from = Math.min(msg.body.from, bytes.byteLength);
      const to = Math.min(bytes.byteLength, from + msg.body.max_bytes);
      const digest = createHash('sha256').update(bytes).digest('hex');
      this.node.link.reply(msg, 'data_chunk', { name, at: known.at, writer, size: bytes.byteLength, series: false, digest, from, bytes: bytes.subarray(from, to), ...(to < bytes.byteLength ? { next: to } : {}) });
      return;
    }
    if (!this.alive(known.store)) throw new Refusal('store_unavailable', `"${name}" is on ${known.store}, which is not reachable now`);
    const reply = await this.node.link.request(known.store, 'data_read', msg.body);
    if (reply.kind !== 'data_chunk') throw new Refusal('bad_reply', `${known.store} answered ${reply.kind}`);
    this.node.link.reply(msg, 'data_chunk', reply.body);
  }

  /** Appends to series, each on the store that holds it (new ones where there is most room). */
  private async append(msg: Envelope<'data_append'>): Promise<void> {
    this.unstamped(msg, msg.body.stamp);
    for (const series of msg.body.series) {
      if (!isStagingName(series.name) && msg.role !== 'executor') continue;
      // Staged results are objects, never series.
      this.node.link.counters.reject(this.node.log, 'data_staging_refused', msg.from, `${msg.from} may not append to "${series.name}"`);
      throw new Refusal('reserved_name', `"${series.name}" cannot be appended to by ${msg.from}: staging names are reserved for staged job results, and executors append nothing`);
    }
    const who = { id: msg.from, role: msg.role };
    // One datastore request per store and grant: a stamp covers every series of its message.
    const groups = new Map<string, { store: string; stamp: Stamp; series: BodyOf<'data_append'>['series'] }>();
    const refused: BodyOf<'data_appended'>['results'] = [];
    const adding = new Map<string, number>();
    for (const series of msg.body.series) {
      const known = this.index.locate(series.name);
      const decided = decideWrite(who, series.name, known?.owner, this.jobOwnerOf);
      if (isRefused(decided)) {
        this.refused(who.id, decided);
        refused.push({ name: series.name, outcome: 'not_owner', stored: 0, duplicate: 0, outside_retention: series.records.length, size: known?.size ?? 0, store: known?.store ?? this.node.link.id });
        continue;
      }
      // Records only add: what the append could store at most is what the budget counts.
      const bytes = (adding.get(decided.owner) ?? 0) + series.records.reduce((n, r) => n + r.line.byteLength, 0);
      adding.set(decided.owner, bytes);
      this.checkBudget(who, decided.owner, bytes, 0);
      const store = this.placeFor(series.name);
      const key = `${store}\0${decided.owner}\0${decided.replace}`;
      let group = groups.get(key);
      if (group === undefined) groups.set(key, (group = { store, stamp: this.stamp(msg.from, decided), series: [] }));
      group.series.push(series);
    }
    const replies = await Promise.all(
      [...groups.values()].map(async ({ store, stamp, series }) => {
        // A large append is one transaction per series on the datastore: give it longer than a request.
        const reply = await this.ask(store, 'data_append', { series, stamp }, msg.from, APPEND_TIMEOUT_MS);
        if (reply.kind !== 'data_appended') throw new Refusal('bad_reply', `${store} answered ${reply.kind}`);
        return reply.body.results.map((r) => ({ r, stamp }));
      }),
    );
    const results = [...refused];
    for (const { r, stamp } of replies.flat()) {
      results.push(r);
      if (r.outcome === 'not_owner') this.node.link.counters.reject(this.node.log, 'data_refused_not_owner', msg.from, `"${r.name}" is another node's series`);
      if (r.outcome !== 'appended' || (r.stored === 0 && this.index.locate(r.name)?.size === r.size)) continue;
      // Not awaited one by one: the index writes of one append commit together.
      void this.index.setName(r.name, { store: r.store, size: r.size, at: stamp.at, owner: stamp.owner });
    }
    await this.node.store.durable();
    for (const r of results) if (r.stored > 0) for (const listener of this.storedListeners) listener(r.name);
    this.node.link.reply(msg, 'data_appended', { results });
  }

  private async put(msg: Envelope<'data_put'>): Promise<void> {
    const { name, bytes, stamp } = msg.body;
    this.unstamped(msg, stamp);
    this.checkWritable(msg, name);
    const grant = this.grantFor({ id: msg.from, role: msg.role }, name, bytes.byteLength);
    const { at: _, ...result } = await this.store(name, bytes, msg.from, grant);
    this.node.link.reply(msg, 'data_put_result', result);
  }

  private async fetch(name: string): Promise<Item> {
    const known = this.index.locate(name);
    if (known === undefined) throw new Refusal('not_found', `no data named "${name}"`);
    if (!onDatastore(known)) {
      const { bytes, writer } = this.fromRecord(name, known);
      return { name, bytes, at: known.at, writer, size: bytes.byteLength };
    }
    if (!this.alive(known.store)) throw new Refusal('store_unavailable', `"${name}" is on ${known.store}, which is not reachable now`);
    if (known.size > CHUNK_BYTES) {
      // Too large for one message: the client reads it in chunks (data_read). One byte tells its version.
      const head = await this.node.link.request(known.store, 'data_read', { name, from: 0, max_bytes: 1 });
      if (head.kind !== 'data_chunk') throw new Refusal('not_found', `no data named "${name}" on ${known.store}`);
      return { name, bytes: new Uint8Array(0), at: head.body.at, writer: head.body.writer, size: head.body.size };
    }
    const reply = await this.node.link.request(known.store, 'data_get', { name, prefix: false, limit: 1 });
    const item = reply.kind === 'data_items' ? reply.body.items[0] : undefined;
    if (item === undefined) throw new Refusal('not_found', `no data named "${name}" on ${known.store}`);
    return item;
  }

  private async get(msg: Envelope<'data_get'>): Promise<void> {
    const { name, prefix, limit, after } = msg.body;
    if (!prefix) {
      this.node.link.reply(msg, 'data_items', { items: [await this.fetch(name)] });
      return;
    }
    const page = this.page(name, limit, after);
    const items = await Promise.all(page.items.map(({ name: n }) => this.fetch(n)));
    this.node.link.reply(msg, 'data_items', { items, ...(page.next !== undefined ? { next: page.next } : {}) });
  }

  private async list(msg: Envelope<'data_list'>): Promise<void> {
    const page = this.page(msg.body.prefix ?? '', msg.body.limit, msg.body.after);
    this.node.link.reply(msg, 'data_listing', {
      items: page.items.map(({ name, located }) => ({ name, size: located.size, store: located.store, at: located.at, ...(located.owner !== undefined ? { owner: located.owner } : {}) })),
      ...(page.next !== undefined ? { next: page.next } : {}),
    });
  }

  private async delete(msg: Envelope<'data_delete'>): Promise<void> {
    const { name, job_id: jobId } = msg.body;
    this.unstamped(msg, msg.body.stamp);
    if (name === undefined && jobId === undefined) throw new Refusal('bad_request', 'say which data to delete: a name or a job id');
    // Staged results are the broker's to delete (or publish); a job's data as a whole may go.
    if (name !== undefined && isStagingName(name)) {
      this.node.link.counters.reject(this.node.log, 'data_staging_refused', msg.from, `${msg.from} may not delete "${name}": staged results are deleted by their broker`);
      throw new Refusal('reserved_name', `"${name}" is reserved for staging job results; its broker deletes it`);
    }
    const who = { id: msg.from, role: msg.role };
    // Both are decided before anything is deleted: a refused half leaves the other half alone too.
    const forName = name !== undefined ? decideWrite(who, name, this.index.locate(name)?.owner, this.jobOwnerOf) : undefined;
    const forJob = jobId !== undefined ? decideJobDelete(who, jobId, this.jobOwnerOf) : undefined;
    for (const d of [forName, forJob]) if (isRefused(d)) throw this.refused(who.id, d);
    let count = 0;
    if (name !== undefined) {
      const known = this.index.locate(name);
      if (known !== undefined && !onDatastore(known)) {
        // Its bytes stay in the job's record, unnamed, until the record goes.
        count++;
        await this.index.setName(name, undefined);
      } else if (known !== undefined) {
        if (!this.alive(known.store)) throw new Refusal('store_unavailable', `"${name}" is on ${known.store}, which is not reachable now`);
        const reply = await this.ask(known.store, 'data_delete', { name, stamp: this.stamp(msg.from, forName as Grant) }, msg.from);
        if (reply.kind === 'data_deleted') count += reply.body.count;
        await this.index.setName(name, undefined);
      }
    }
    if (jobId !== undefined) {
      // A job's data may have been placed on several stores: ask each that holds some of it.
      const stores = new Set(this.names(jobId).flatMap(({ located }) => (onDatastore(located) ? [located.store] : [])));
      for (const store of stores) {
        if (!this.alive(store)) throw new Refusal('store_unavailable', `part of job ${jobId}'s data is on ${store}, which is not reachable now`);
        const reply = await this.ask(store, 'data_delete', { job_id: jobId, stamp: this.stamp(msg.from, forJob as Grant) }, msg.from);
        if (reply.kind === 'data_deleted') count += reply.body.count;
      }
      const keep = resultArchiveName(jobId);
      for (const { name: n } of this.names(jobId)) if (n !== keep && n !== jobId) await this.index.setName(n, undefined);
    }
    await this.node.store.durable();
    this.node.link.reply(msg, 'data_deleted', { count });
  }

  /**
   * Publishes staged result objects under their names: each is renamed on the datastore that holds it,
   * which first checks its size and SHA-256 against the reference (the bytes are not copied). The moves
   * on one store are one transaction; an attempt's staged objects are placed on one store, so normally
   * all of a result is published or none of it. A repeated call (after a crash or an unreachable store)
   * finds the moves already made and answers the same. Returns where each name was published.
   */
  async promote(moves: readonly StagedMove[], version: { at: [number, number]; writer: string; owner: string }): Promise<Record<string, Located>> {
    const byStore = new Map<string, StagedMove[]>();
    for (const move of moves) {
      // After a crash between the move and its indexing, the staged name may be indexed still or the
      // target already: the store holding either answers.
      const store = (this.index.locate(move.from) ?? this.index.locate(move.to))?.store;
      if (store === undefined) throw new BadStagedReference(`no staged object "${move.from}" is known`);
      if (!this.alive(store)) throw new Refusal('store_unavailable', `the staged object "${move.from}" is on ${store}, which is not reachable now`);
      let list = byStore.get(store);
      if (list === undefined) byStore.set(store, (list = []));
      list.push(move);
    }
    // Spread over several stores (one was lost while the attempt staged), one store's transaction cannot
    // cover all: check every object first, so that a bad reference publishes nothing.
    if (byStore.size > 1) await Promise.all([...byStore].flatMap(([store, list]) => list.map((m) => this.verifyStaged(store, m))));
    const published: Record<string, Located> = {};
    const replaced: Array<{ name: string; store: string }> = [];
    for (const [store, list] of byStore) {
      let reply;
      try {
        reply = await this.node.link.request(store, 'data_move', { moves: list.map((m) => ({ from: m.from, to: m.to, size: m.size, digest: m.digest })), at: version.at, writer: version.writer, owner: version.owner });
      } catch (err) {
        if (err instanceof RemoteError && BAD_MOVE_CODES.has(err.code)) throw new BadStagedReference(err.message);
        throw err;
      }
      if (reply.kind !== 'data_moved') throw new Refusal('bad_reply', `${store} answered ${reply.kind}`);
      for (const [i, move] of list.entries()) {
        const outcome = reply.body.results[i]?.outcome;
        const before = this.index.locate(move.to);
        const location: Located = outcome === 'unchanged' && before?.store === store ? before : { store, size: move.size, at: version.at, owner: version.owner };
        // A job's record names where each result went, not whose it is (that is the index's).
        published[move.to] = { store: location.store, size: location.size, at: location.at };
        if (outcome === 'stale') continue;
        if (before !== undefined && onDatastore(before) && before.store !== store) replaced.push({ name: move.to, store: before.store });
        // Not awaited one by one: the index writes of one result commit together.
        void this.index.setName(move.to, location);
        if (this.index.locate(move.from) !== undefined) void this.index.setName(move.from, undefined);
      }
    }
    await this.node.store.durable();
    // A name that lived on another store before now lives where its staged object was: the old copy goes.
    if (replaced.length > 0) void this.discard(replaced.map(({ name, store }) => ({ name, location: { store, size: 0, at: version.at } })));
    for (const name of Object.keys(published)) for (const listener of this.storedListeners) listener(name);
    return published;
  }

  /** Checks one staged object (or its target, if it was moved already) against its reference. */
  private async verifyStaged(store: string, move: StagedMove): Promise<void> {
    const head = async (name: string) => {
      try {
        const reply = await this.node.link.request(store, 'data_read', { name, from: 0, max_bytes: 1 });
        return reply.kind === 'data_chunk' ? reply.body : undefined;
      } catch (err) {
        if (err instanceof RemoteError && err.code === 'not_found') return undefined;
        throw err;
      }
    };
    const matches = (c: BodyOf<'data_chunk'> | undefined) => c !== undefined && !c.series && c.size === move.size && c.digest === move.digest;
    if (matches(await head(move.from)) || matches(await head(move.to))) return;
    throw new BadStagedReference(`"${move.from}" on ${store} is missing or is not the ${move.size} bytes with SHA-256 ${move.digest} its reference says`);
  }

  /**
   * Deletes every object staged under `prefix` (an attempt's, or all of a job's attempts'), from the
   * index and from the datastores holding them. Best effort: what is out of reach now goes with the job's
   * retention.
   */
  async discardStaged(prefix: string): Promise<number> {
    const names = this.names(prefix.replace(/\/+$/, '')).filter(({ name }) => isStagingName(name));
    if (names.length === 0) return 0;
    for (const { name } of names) void this.index.setName(name, undefined);
    await this.node.store.durable();
    return this.discard(names.map(({ name, located }) => ({ name, location: located })));
  }

  /**
   * Deletes data the index no longer names (a job retention or a removal dropped it) from the datastores
   * holding it. A deletion a datastore cannot take now (down, or not answering) is owed to it and sent
   * when it is back. Returns how many names were deleted now.
   */
  async discard(names: ReadonlyArray<{ name: string; location: Located }>): Promise<number> {
    let count = 0;
    for (const { name, location } of names) {
      // Bytes kept in a job's record go with the record.
      if (!onDatastore(location)) continue;
      // Retention acts for the cluster, on the names the replica found to be the job's.
      const stamp = this.stamp(this.node.link.id, { owner: location.owner ?? this.node.link.id, replace: true });
      if (!this.alive(location.store)) {
        this.owe(location.store, name, stamp);
        continue;
      }
      try {
        const reply = await this.node.link.request(location.store, 'data_delete', { name, stamp });
        if (reply.kind === 'data_deleted') count += reply.body.count;
      } catch (err) {
        this.node.log.warn({ name, store: location.store, err: (err as Error).message }, 'could not delete discarded data; owed to the datastore until it is back');
        this.owe(location.store, name, stamp);
      }
    }
    return count;
  }

  private owe(store: string, name: string, stamp: Stamp): void {
    this.node.link.counters.inc('data_deletions_owed');
    void this.owed.put(`${store}\0${name}`, stamp);
  }

  /**
   * Sends a datastore the deletions owed to it, one at a time in name order, until none is left or it
   * stops answering (the rest wait for its next return). A deletion is idempotent and carries its original
   * version, so a name written again since then is not touched.
   */
  private async payOwed(store: string): Promise<void> {
    if (this.paying.has(store)) return;
    this.paying.add(store);
    const counters = this.node.link.counters;
    try {
      for (;;) {
        const due = [...this.owed.getRange({ start: `${store}\0`, end: `${store}\u0001`, limit: 256 })];
        if (due.length === 0) return;
        for (const { key, value } of due) {
          if (!this.alive(store)) return;
          const name = String(key).slice(store.length + 1);
          try {
            const reply = await this.node.link.request(store, 'data_delete', { name, stamp: value });
            if (reply.kind === 'data_deleted') counters.inc('data_deletions_paid');
          } catch (err) {
            // Refused for good (a version it will never take): sending it again would not change that.
            if (!(err instanceof RemoteError)) {
              this.node.log.warn({ store, name, err: (err as Error).message }, 'an owed deletion failed; sent again when the datastore is back');
              return;
            }
            counters.reject(this.node.log, 'data_deletions_refused', store, `${store} refused the owed deletion of "${name}": ${err.message}`);
          }
          await this.owed.remove(key);
        }
      }
    } catch (err) {
      // The store closing under it (the broker stopping): what is left is sent after the next start.
      this.node.log.warn({ store, err: (err as Error).message }, 'sending owed deletions stopped');
    } finally {
      this.paying.delete(store);
    }
  }

  /** Indexed names at or below `prefix` (all when empty), in order. */
  private names(prefix: string): Array<{ name: string; located: Located }> {
    return this.page(prefix, Number.MAX_SAFE_INTEGER).items;
  }

  private page(prefix: string, limit: number, after?: string): NamePage<{ name: string; located: Located }> {
    return this.index.namePage(prefix, limit, after);
  }
}

/** Brokers from before metadata sync kept their name index in a table of their own: carry it over once. */
function importLegacyIndex(node: NodeRuntime, index: MetadataReplica): void {
  const legacy = node.store.table<Located>('data_index');
  for (const { key, value } of legacy.getRange()) {
    if (index.locate(String(key)) === undefined) void index.setName(String(key), value);
    void legacy.remove(key);
  }
}
