import { resultArchiveName, type BodyOf, type Envelope } from '../protocol/index.js';
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


/**
 * The broker's part of named data: it places new data on the live datastore with the most free space,
 * keeps a name -> datastore index so that a get asks one store rather than all, and answers listings
 * from that index. The index is part of the replicated broker metadata: any broker can find any name.
 */
export class DataRouter {

  private readonly storedListeners: Array<(name: string) => void> = [];

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

  private async put(msg: Envelope<'data_put'>): Promise<void> {
    this.node.link.reply(msg, 'data_put_result', await this.store(msg.body));
  }

  private async fetch(name: string): Promise<Item> {
    const known = this.index.locate(name);
    if (known === undefined) throw new Refusal('not_found', `no data named "${name}"`);
    if (!this.alive(known.store)) throw new Refusal('store_unavailable', `"${name}" is on ${known.store}, which is not reachable now`);
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
