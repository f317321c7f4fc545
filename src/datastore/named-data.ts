import { statfsSync } from 'node:fs';
import { compareEvents, type HlcTimestamp } from '../clock/index.js';
import { resultArchiveName } from '../protocol/index.js';
import { pageUnder, type NodeStore, type Table } from '../store/index.js';

/** A version of a name: who wrote it, and when in HLC time. Later (HLC, then writer id) wins. */
export interface Version {
  readonly at: HlcTimestamp;
  readonly writer: string;
}

export interface DataMeta extends Version {
  readonly name: string;
  readonly size: number;
}

export interface DataObject extends DataMeta {
  readonly bytes: Uint8Array;
}

export interface Page<T> {
  readonly items: readonly T[];
  /** Pass back to get the next page; absent on the last page. */
  readonly next?: string;
}

export type PutOutcome = 'stored' | 'unchanged' | 'stale';

export class DataStoreError extends Error {
  constructor(
    readonly code: 'object_too_large',
    message: string,
  ) {
    super(message);
    this.name = 'DataStoreError';
  }
}


interface StoredMeta {
  size: number;
  at: [number, number];
  writer: string;
}

interface Tombstone {
  at: [number, number];
  writer: string;
}

const toVersion = (v: { at: [number, number]; writer: string }): Version => ({ at: { wall: v.at[0], logical: v.at[1] }, writer: v.writer });
const newer = (a: Version, b: Version) => compareEvents({ hlc: a.at, node: a.writer }, { hlc: b.at, node: b.writer }) > 0;

/**
 * Named data in LMDB: hierarchical names (`fire/district-3/temps`), last-write-wins by HLC with the writer
 * id as tie-break, and deletions kept as tombstones so a delayed older write cannot bring data back.
 * Metadata and bytes live in separate tables, so listing never reads blobs.
 */
export class NamedDataStore {
  private readonly meta: Table<StoredMeta>;
  private readonly blobs: Table<Uint8Array>;
  private readonly tombstones: Table<Tombstone>;

  constructor(
    private readonly store: NodeStore,
    private readonly maxObjectBytes: number,
  ) {
    this.meta = store.table<StoredMeta>('data_meta');
    this.blobs = store.table<Uint8Array>('data_blobs');
    this.tombstones = store.table<Tombstone>('data_tombstones');
  }

  /** Stores `bytes` under `name` unless a newer version (or deletion) is already known. */
  async put(name: string, bytes: Uint8Array, version: Version): Promise<PutOutcome> {
    if (bytes.byteLength > this.maxObjectBytes) {
      throw new DataStoreError('object_too_large', `"${name}" is ${bytes.byteLength} bytes, over this datastore's ${this.maxObjectBytes}-byte limit`);
    }
    const outcome = await this.meta.transaction(() => {
      const current = this.meta.get(name);
      const tomb = this.tombstones.get(name);
      if (current !== undefined) {
        const cur = toVersion(current);
        if (!newer(version, cur)) return newer(cur, version) ? 'stale' : 'unchanged';
      }
      if (tomb !== undefined && !newer(version, toVersion(tomb))) return 'stale';
      this.meta.put(name, { size: bytes.byteLength, at: [version.at.wall, version.at.logical], writer: version.writer });
      this.blobs.put(name, bytes);
      if (tomb !== undefined) this.tombstones.remove(name);
      return 'stored';
    });
    return outcome as PutOutcome;
  }

  get(name: string): DataObject | undefined {
    const m = this.meta.get(name);
    if (m === undefined) return undefined;
    const bytes = this.blobs.get(name);
    if (bytes === undefined) return undefined;
    return { name, size: m.size, ...toVersion(m), bytes };
  }

  /** The name itself and every name below it (`name/...`), with their bytes, a page at a time. */
  getPrefix(prefix: string, limit: number, after?: string): Page<DataObject> {
    const page = this.list(prefix, limit, after);
    const items = page.items.flatMap((m) => {
      const bytes = this.blobs.get(m.name);
      return bytes === undefined ? [] : [{ ...m, bytes }];
    });
    return { items, ...(page.next !== undefined ? { next: page.next } : {}) };
  }

  /** Names at or below `prefix` (all names when empty), in name order, `limit` at a time after `after`. */
  list(prefix: string, limit: number, after?: string): Page<DataMeta> {
    return pageUnder(this.meta, prefix, limit, after, (name, m): DataMeta => ({ name, size: m.size, ...toVersion(m) }));
  }

  /** Deletes a name unless a newer version exists; the deletion itself is remembered as a tombstone. */
  async delete(name: string, version: Version): Promise<boolean> {
    return this.meta.transaction(() => {
      const current = this.meta.get(name);
      if (current !== undefined && !newer(version, toVersion(current))) return false;
      const tomb = this.tombstones.get(name);
      if (tomb === undefined || newer(version, toVersion(tomb))) this.tombstones.put(name, { at: [version.at.wall, version.at.logical], writer: version.writer });
      if (current === undefined) return false;
      this.meta.remove(name);
      this.blobs.remove(name);
      return true;
    });
  }

  /** Deletes everything under `<jobId>/` except the job's result archive; returns how many names went. */
  async deleteJobData(jobId: string, version: Version): Promise<number> {
    const keep = resultArchiveName(jobId);
    let deleted = 0;
    let after: string | undefined;
    for (;;) {
      const page = this.list(jobId, 500, after);
      for (const item of page.items) {
        if (item.name !== keep && item.name !== jobId && (await this.delete(item.name, version))) deleted++;
      }
      if (page.next === undefined) return deleted;
      after = page.next;
    }
  }

  /** Bytes free on the file system that holds this datastore. */
  freeSpace(): number {
    const fs = statfsSync(this.store.dir);
    return fs.bavail * fs.bsize;
  }
}
