import { CHUNK_BYTES, resultArchiveName, type BodyOf, type Envelope } from '../protocol/index.js';
import type { NamePage } from '../store/index.js';
import type { NodeRuntime } from '../transport/index.js';
import type { MetadataReplica } from './metadata-replica.js';
import { answering, Refusal } from './refusal.js';

/** Where a name lives, as the broker last learned it. */
export interface Located {
  store: string;
  size: number;
  at: [number, number];
}

type Item = BodyOf<'data_items'>['items'][number];

/** An upload relayed through this broker: the datastore its chunks go to. */
interface RelayedUpload {
  store: string;
  touched: number;
}

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

  constructor(
    private readonly node: NodeRuntime,
    private readonly index: MetadataReplica,
  ) {
    importLegacyIndex(node, index);
    const link = node.link;
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

  /** Called after a name was stored (not for stale writes), e.g. to start jobs that wait for it. */
  onStored(listener: (name: string) => void): void {
    this.storedListeners.push(listener);
  }

  /**
   * Stores data on a datastore and indexes it durably. A name stays on the store that has it while that
   * store is alive, so last-write-wins is decided in one place; new names go where there is most room.
   */
  async store(put: BodyOf<'data_put'>): Promise<BodyOf<'data_put_result'>> {
    const known = this.index.locate(put.name);
    const store = known !== undefined && this.alive(known.store) ? known.store : this.datastores()[0]?.id;
    if (store === undefined) throw new Refusal('no_datastore', 'no datastore is alive to hold the data; start one (`ucp datastore`)');
    const reply = await this.node.link.request(store, 'data_put', put);
    if (reply.kind !== 'data_put_result') throw new Refusal('bad_reply', `${store} answered ${reply.kind}`);
    if (reply.body.outcome !== 'stale') {
      await this.index.setName(put.name, { store, size: put.bytes.byteLength, at: put.at });
      await this.node.store.durable();
      for (const listener of this.storedListeners) listener(put.name);
    }
    return reply.body;
  }

  /** The store a name lives on while it is alive, else the live one with the most room. */
  private placeFor(name: string): string {
    const known = this.index.locate(name);
    const store = known !== undefined && this.alive(known.store) ? known.store : this.datastores()[0]?.id;
    if (store === undefined) throw new Refusal('no_datastore', 'no datastore is alive to hold the data; start one (`ucp datastore`)');
    return store;
  }

  private async indexStored(name: string, location: Located): Promise<void> {
    await this.index.setName(name, location);
    await this.node.store.durable();
    for (const listener of this.storedListeners) listener(name);
  }

  /**
   * Relays one chunk of an upload to the datastore chosen at its first chunk; the last chunk's answer
   * says whether the object was stored, and only then is the name indexed.
   */
  private async write(msg: Envelope<'data_write'>): Promise<void> {
    const { upload, name, index, last } = msg.body;
    const key = `${msg.from}/${upload}`;
    const now = Date.now();
    for (const [k, u] of this.uploads) if (u.touched < now - UPLOAD_IDLE_MS) this.uploads.delete(k);
    let relayed = this.uploads.get(key);
    if (relayed === undefined) {
      if (index !== 0) throw new Refusal('upload_unknown', `upload ${upload} of "${name}" is not known to ${this.node.link.id} (it restarted or the upload stalled); start it again`);
      relayed = { store: this.placeFor(name), touched: now };
      this.uploads.set(key, relayed);
    }
    relayed.touched = now;
    if (!this.alive(relayed.store)) {
      this.uploads.delete(key);
      throw new Refusal('store_unavailable', `the datastore ${relayed.store} receiving "${name}" is not reachable now; start the upload again`);
    }
    let reply;
    try {
      reply = await this.node.link.request(relayed.store, 'data_write', msg.body);
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
    if (reply.body.outcome !== 'stale') await this.indexStored(name, { store: relayed.store, size: last.size, at: last.at });
    this.node.link.reply(msg, 'data_put_result', reply.body);
  }

  private async read(msg: Envelope<'data_read'>): Promise<void> {
    const { name } = msg.body;
    const known = this.index.locate(name);
    if (known === undefined) throw new Refusal('not_found', `no data named "${name}"`);
    if (!this.alive(known.store)) throw new Refusal('store_unavailable', `"${name}" is on ${known.store}, which is not reachable now`);
    const reply = await this.node.link.request(known.store, 'data_read', msg.body);
    if (reply.kind !== 'data_chunk') throw new Refusal('bad_reply', `${known.store} answered ${reply.kind}`);
    this.node.link.reply(msg, 'data_chunk', reply.body);
  }

  /** Appends to series, each on the store that holds it (new ones where there is most room). */
  private async append(msg: Envelope<'data_append'>): Promise<void> {
    const byStore = new Map<string, BodyOf<'data_append'>['series']>();
    for (const series of msg.body.series) {
      const store = this.placeFor(series.name);
      let list = byStore.get(store);
      if (list === undefined) byStore.set(store, (list = []));
      list.push(series);
    }
    const replies = await Promise.all(
      [...byStore].map(async ([store, series]) => {
        // A large append is one transaction per series on the datastore: give it longer than a request.
        const reply = await this.node.link.request(store, 'data_append', { series, at: msg.body.at, writer: msg.body.writer }, APPEND_TIMEOUT_MS);
        if (reply.kind !== 'data_appended') throw new Refusal('bad_reply', `${store} answered ${reply.kind}`);
        return reply.body.results;
      }),
    );
    const results = replies.flat();
    for (const r of results) {
      if (r.outcome !== 'appended' || (r.stored === 0 && this.index.locate(r.name)?.size === r.size)) continue;
      // Not awaited one by one: the index writes of one append commit together.
      void this.index.setName(r.name, { store: r.store, size: r.size, at: msg.body.at });
    }
    await this.node.store.durable();
    for (const r of results) if (r.stored > 0) for (const listener of this.storedListeners) listener(r.name);
    this.node.link.reply(msg, 'data_appended', { results });
  }

  private async put(msg: Envelope<'data_put'>): Promise<void> {
    this.node.link.reply(msg, 'data_put_result', await this.store(msg.body));
  }

  private async fetch(name: string): Promise<Item> {
    const known = this.index.locate(name);
    if (known === undefined) throw new Refusal('not_found', `no data named "${name}"`);
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
      items: page.items.map(({ name, located }) => ({ name, size: located.size, store: located.store, at: located.at })),
      ...(page.next !== undefined ? { next: page.next } : {}),
    });
  }

  private async delete(msg: Envelope<'data_delete'>): Promise<void> {
    const { name, job_id: jobId } = msg.body;
    if (name === undefined && jobId === undefined) throw new Refusal('bad_request', 'say which data to delete: a name or a job id');
    let count = 0;
    if (name !== undefined) {
      const known = this.index.locate(name);
      if (known !== undefined) {
        if (!this.alive(known.store)) throw new Refusal('store_unavailable', `"${name}" is on ${known.store}, which is not reachable now`);
        const reply = await this.node.link.request(known.store, 'data_delete', { name, at: msg.body.at, writer: msg.body.writer });
        if (reply.kind === 'data_deleted') count += reply.body.count;
        await this.index.setName(name, undefined);
      }
    }
    if (jobId !== undefined) {
      // A job's data may have been placed on several stores: ask each that holds some of it.
      const stores = new Set(this.names(jobId).map(({ located }) => located.store));
      for (const store of stores) {
        if (!this.alive(store)) throw new Refusal('store_unavailable', `part of job ${jobId}'s data is on ${store}, which is not reachable now`);
        const reply = await this.node.link.request(store, 'data_delete', { job_id: jobId, at: msg.body.at, writer: msg.body.writer });
        if (reply.kind === 'data_deleted') count += reply.body.count;
      }
      const keep = resultArchiveName(jobId);
      for (const { name: n } of this.names(jobId)) if (n !== keep && n !== jobId) await this.index.setName(n, undefined);
    }
    await this.node.store.durable();
    this.node.link.reply(msg, 'data_deleted', { count });
  }

  /**
   * Deletes data the index no longer names (a job retention removed) from the datastores holding it.
   * A datastore out of reach keeps its copy: the index no longer leads there, and its own bounds apply.
   */
  async discard(names: ReadonlyArray<{ name: string; location: Located }>): Promise<number> {
    let count = 0;
    const at = this.node.link.now();
    for (const { name, location } of names) {
      if (!this.alive(location.store)) continue;
      try {
        const reply = await this.node.link.request(location.store, 'data_delete', { name, at: [at.wall, at.logical], writer: this.node.link.id });
        if (reply.kind === 'data_deleted') count += reply.body.count;
      } catch (err) {
        this.node.log.warn({ name, store: location.store, err: (err as Error).message }, 'could not delete expired data');
      }
    }
    return count;
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
