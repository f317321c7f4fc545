import type { NodeRuntime } from '../transport/index.js';
import { DataStoreError, NamedDataStore, type Version } from './named-data.js';

const version = (at: readonly [number, number], writer: string): Version => ({ at: { wall: at[0], logical: at[1] }, writer });

/**
 * The datastore role: answers named-data requests (normally from its broker) out of its LMDB store, and
 * advertises its free space in heartbeats so brokers can place new data where there is room.
 */
export class DatastoreNode {
  readonly data: NamedDataStore;

  constructor(
    private readonly node: NodeRuntime,
    maxObjectBytes: number,
  ) {
    this.data = new NamedDataStore(node.store, maxObjectBytes);
    const link = node.link;
    link.setHeartbeatFields(() => ({ free_bytes: this.data.freeSpace() }));

    link.on('data_put', async (msg) => {
      const { name, bytes, at, writer } = msg.body;
      try {
        const outcome = await this.data.put(name, bytes, version(at, writer));
        await node.store.durable();
        link.reply(msg, 'data_put_result', { name, outcome, store: link.id });
      } catch (err) {
        if (!(err instanceof DataStoreError)) throw err;
        link.reply(msg, 'error', { code: err.code, message: err.message });
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
        const done = await this.data.write(upload, name, index, bytes, last !== undefined ? { size: last.size, digest: last.digest, version: version(last.at, last.writer) } : undefined);
        if ('written' in done) {
          link.reply(msg, 'data_written', { upload, index: done.written });
          return;
        }
        await node.store.durable();
        link.counters.inc('uploads_completed');
        link.reply(msg, 'data_put_result', { name, outcome: done.outcome, store: link.id });
      } catch (err) {
        if (!(err instanceof DataStoreError)) throw err;
        link.counters.inc(`uploads_refused_${err.code}`);
        link.reply(msg, 'error', { code: err.code, message: err.message });
      }
    });

    link.on('data_move', async (msg) => {
      try {
        const results = await this.data.move(msg.body.moves, version(msg.body.at, msg.body.writer));
        await node.store.durable();
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
      const results = await this.data.append(msg.body.series, version(msg.body.at, msg.body.writer));
      await node.store.durable();
      link.reply(msg, 'data_appended', { results: results.map((r) => ({ ...r, store: link.id })) });
    });

    link.on('data_list', (msg) => {
      const page = this.data.list(msg.body.prefix ?? '', msg.body.limit, msg.body.after);
      link.reply(msg, 'data_listing', {
        items: page.items.map((m) => ({ name: m.name, size: m.size, store: link.id, at: [m.at.wall, m.at.logical] })),
        ...(page.next !== undefined ? { next: page.next } : {}),
      });
    });

    link.on('data_delete', async (msg) => {
      const { name, job_id, at, writer } = msg.body;
      const v = version(at, writer);
      let count = 0;
      if (name !== undefined && (await this.data.delete(name, v))) count++;
      if (job_id !== undefined) count += await this.data.deleteJobData(job_id, v);
      await node.store.durable();
      link.reply(msg, 'data_deleted', { count });
    });
  }
}
