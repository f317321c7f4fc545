import type { AnyEnvelope, BodyOf } from '../protocol/index.js';
import type { NodeRuntime } from '../transport/index.js';
import { DataStoreError, NamedDataStore, type Stamp } from './named-data.js';

/** How often tombstones past their TTL are dropped (more often for a TTL under four hours). */
const TOMBSTONE_PRUNE_MS = 3_600_000;

type WireStamp = NonNullable<BodyOf<'data_put'>['stamp']>;

/**
 * The stamp a broker put on a write or deletion (PROTOCOL.md, "Data versions and owners"). Without one
 * nobody gave the write a version; one later than the message that carries it was not made by the
 * broker's clock when it sent it, which only a broker choosing versions by hand would do.
 */
function stampOf(msg: AnyEnvelope, stamp: WireStamp | undefined): Stamp {
  if (stamp === undefined) throw new DataStoreError('unstamped', `${msg.from} sent a write with no version; a broker stamps every write it relays`);
  const [wall, logical] = stamp.at;
  if (wall > msg.hlc.wall || (wall === msg.hlc.wall && logical > msg.hlc.logical)) {
    throw new DataStoreError('version_ahead', `${msg.from} stamped a write at ${wall}.${logical}, after the message carrying it (${msg.hlc.wall}.${msg.hlc.logical})`);
  }
  return { at: { wall, logical }, writer: stamp.writer, owner: stamp.owner, replace: stamp.replace };
}

/**
 * The datastore role: answers named-data requests (normally from its broker) out of its LMDB store, and
 * advertises its free space in heartbeats so brokers can place new data where there is room.
 */
export class DatastoreNode {
  readonly data: NamedDataStore;

  /**
   * `tombstoneTtlMs`: how long a deletion keeps its own tombstone (transport.dedup_ttl_s, how long the
   * transport itself remembers a handled message); after that the store's floor orders the name.
   */
  constructor(
    private readonly node: NodeRuntime,
    maxObjectBytes: number,
    tombstoneTtlMs: number,
  ) {
    this.data = new NamedDataStore(node.store, maxObjectBytes);
    const link = node.link;
    link.setHeartbeatFields(() => ({ free_bytes: this.data.freeSpace() }));
    // Every deletion, and every published staging name, leaves a tombstone: without pruning they would
    // pile up for as long as the unit runs. Hourly is plenty against a TTL of a day.
    const pruneTimer = setInterval(() => {
      this.data
        .pruneTombstones(Date.now() - tombstoneTtlMs)
        .then((count) => {
          if (count > 0) link.counters.inc('tombstones_pruned', count);
        })
        .catch((err: Error) => node.log.warn({ err: err.message }, 'pruning tombstones failed'));
    }, Math.min(TOMBSTONE_PRUNE_MS, Math.max(1_000, Math.floor(tombstoneTtlMs / 4))));
    pruneTimer.unref();
    node.beforeStop(async () => clearInterval(pruneTimer));

    /** Refusals of a write are counted by rule (`data_refused_not_owner`...) and answered with the reason. */
    const refuse = (msg: AnyEnvelope, err: unknown): void => {
      if (!(err instanceof DataStoreError)) throw err;
      if (err.code === 'not_owner' || err.code === 'unstamped' || err.code === 'version_ahead') link.counters.reject(node.log, `data_refused_${err.code}`, msg.from, err.message);
      link.reply(msg, 'error', { code: err.code, message: err.message });
    };

    link.on('data_put', async (msg) => {
      const { name, bytes, stamp } = msg.body;
      try {
        // Its transaction has committed when it resolves: the answer waits for no later batch.
        const outcome = await node.store.durableAfter(this.data.put(name, bytes, stampOf(msg, stamp)));
        link.counters.inc(`puts_${outcome}`);
        link.reply(msg, 'data_put_result', { name, outcome, store: link.id });
      } catch (err) {
        refuse(msg, err);
      }
    });

    link.on('data_get', (msg) => {
      const { name, prefix, limit, after } = msg.body;
      if (prefix) {
        const page = this.data.getPrefix(name, limit, after);
        link.reply(msg, 'data_items', {
          items: page.items.map((o) => ({ name: o.name, bytes: o.bytes, at: [o.at.wall, o.at.logical], writer: o.writer, ...(o.whole ? {} : { size: o.size }) })),
          ...(page.next !== undefined ? { next: page.next } : {}),
        });
        return;
      }
      try {
        const o = this.data.get(name);
        if (o === undefined) link.reply(msg, 'error', { code: 'not_found', message: `no data named "${name}" on ${link.id}` });
        else link.reply(msg, 'data_items', { items: [{ name: o.name, bytes: o.bytes, at: [o.at.wall, o.at.logical], writer: o.writer }] });
      } catch (err) {
        if (!(err instanceof DataStoreError)) throw err;
        link.reply(msg, 'error', { code: err.code, message: err.message });
      }
    });

    link.on('data_write', async (msg) => {
      const { upload, name, index, bytes, last } = msg.body;
      try {
        const done = await this.data.write(upload, name, index, bytes, last !== undefined ? { size: last.size, digest: last.digest, version: stampOf(msg, last.stamp) } : undefined);
        if ('written' in done) {
          link.reply(msg, 'data_written', { upload, index: done.written });
          return;
        }
        await node.store.durable();
        link.counters.inc('uploads_completed');
        link.reply(msg, 'data_put_result', { name, outcome: done.outcome, store: link.id });
      } catch (err) {
        if (err instanceof DataStoreError) link.counters.inc(`uploads_refused_${err.code}`);
        refuse(msg, err);
      }
    });

    link.on('data_move', async (msg) => {
      try {
        const { at, writer, owner } = msg.body;
        const results = await node.store.durableAfter(this.data.move(msg.body.moves, { at: { wall: at[0], logical: at[1] }, writer, ...(owner !== undefined ? { owner } : {}) }));
        link.counters.inc('objects_moved', results.filter((r) => r.outcome === 'stored').length);
        link.reply(msg, 'data_moved', { results, store: link.id });
      } catch (err) {
        if (!(err instanceof DataStoreError)) throw err;
        link.counters.inc(`moves_refused_${err.code}`);
        link.reply(msg, 'error', { code: err.code, message: err.message });
      }
    });

    link.on('data_read', (msg) => {
      const { name, from, max_bytes: maxBytes } = msg.body;
      const piece = this.data.read(name, from, maxBytes);
      if (piece === undefined) {
        link.reply(msg, 'error', { code: 'not_found', message: `no data named "${name}" on ${link.id}` });
        return;
      }
      link.reply(msg, 'data_chunk', {
        name,
        at: [piece.at.wall, piece.at.logical],
        writer: piece.writer,
        size: piece.size,
        series: piece.series,
        ...(piece.digest !== undefined ? { digest: piece.digest } : {}),
        from,
        bytes: piece.bytes,
        ...(piece.next !== undefined ? { next: piece.next } : {}),
      });
    });

    link.on('data_append', async (msg) => {
      try {
        const results = await this.data.append(msg.body.series, stampOf(msg, msg.body.stamp));
        await node.store.durable();
        for (const r of results) if (r.outcome === 'not_owner') link.counters.reject(node.log, 'data_refused_not_owner', msg.from, `"${r.name}" is another node's series`);
        link.reply(msg, 'data_appended', { results: results.map((r) => ({ ...r, store: link.id })) });
      } catch (err) {
        refuse(msg, err);
      }
    });

    link.on('data_list', (msg) => {
      const page = this.data.list(msg.body.prefix ?? '', msg.body.limit, msg.body.after);
      link.reply(msg, 'data_listing', {
        items: page.items.map((m) => ({ name: m.name, size: m.size, store: link.id, at: [m.at.wall, m.at.logical], owner: m.owner })),
        ...(page.next !== undefined ? { next: page.next } : {}),
      });
    });

    link.on('data_delete', async (msg) => {
      const { name, job_id } = msg.body;
      try {
        const v = stampOf(msg, msg.body.stamp);
        let count = 0;
        if (name !== undefined && (await this.data.delete(name, v))) count++;
        if (job_id !== undefined) count += await this.data.deleteJobData(job_id, v);
        await node.store.durable();
        link.reply(msg, 'data_deleted', { count });
      } catch (err) {
        refuse(msg, err);
      }
    });
  }
}
