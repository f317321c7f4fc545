import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { arch } from 'node:os';
import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { COMPRESSION_DICTIONARY, COMPRESSION_THRESHOLD } from './compression.js';
import { StoreError } from './errors.js';
import { DirectoryLock } from './lock.js';

/**
 * Bump when a table's layout changes incompatibly, and add the migration from the previous version.
 * 2: tables opened with `compress` hold LZ4-compressed values (compression.ts); version 1 values read as
 * they are, so no migration is needed, but a version 1 build must not open such a directory.
 * 3: a broker keeps the records of jobs in flight in a table of their own (broker/job-records.ts);
 * version 2 directories hold them with the finished ones, where they are still found, so no migration is
 * needed, but a version 2 build would not see the jobs in flight.
 * 4: a broker keeps the index of its replica's changes by origin in memory (broker/origin-index.ts),
 * rebuilt from the records at start, and empties the `meta_by_origin` table a version 3 build kept; a
 * version 3 build would answer its peers from that empty table and send them nothing.
 */
export const SCHEMA_VERSION = 4;

/** A typed LMDB table: values are encoded with msgpack, keys with LMDB's ordered-binary encoding. */
export type Table<V, K extends Key = string> = Database<V, K>;

export type StoreSync = 'commit' | 'flush';

/**
 * Address space reserved for the LMDB map up front. lmdb-js starts at 128 KiB and doubles the map as the
 * file grows, and never unmaps the maps it outgrew (readers may still hold them): the pages read through
 * each stay resident, so a broker whose file grew to 18 MiB held 36 MiB of it in RSS. Reserving is free
 * (nothing is allocated, the file does not grow); a store that outgrows it is remapped as before.
 */
const MAP_SIZE = arch().endsWith('64') ? 1 << 30 : 256 << 20;

export interface NodeStoreOptions {
  dir: string;
  /**
   * The node that owns the directory. A function instead picks the id of a directory that has none yet,
   * and keeps the one a directory already has (a client's identity belongs to its directory).
   */
  nodeId: string | (() => string);
  /**
   * 'commit': a write is durable once committed, which survives a killed process (the OS holds the pages
   * and writes them back in its own time, so repeated updates of a page reach the disk once). Nothing is
   * fsynced (LMDB's noSync): a power cut may lose the last writes.
   * 'flush': a write is durable only once fsynced, which also survives a power cut. Flushes overlap with
   * the next commits, so commits made while one is under way share the next flush.
   */
  sync?: StoreSync;
}

/** Directories open in this process: the lock file cannot tell two opens by the same pid apart. */
const OPEN_DIRS = new Set<string>();

const META = {
  nodeId: 'node_id',
  schema: 'schema_version',
  incarnation: 'incarnation',
} as const;

/**
 * One LMDB environment per node data directory, owned by exactly one node id. Every role keeps its state
 * here so that a node killed with SIGKILL comes back with everything it acknowledged.
 */
export class NodeStore {
  readonly dir: string;
  readonly nodeId: string;
  readonly sync: StoreSync;
  private readonly root: RootDatabase;
  private readonly meta: Table<unknown>;
  private readonly lock: DirectoryLock;
  private readonly tables = new Map<string, Table<unknown, Key>>();
  private closed = false;

  private constructor(dir: string, nodeId: string, sync: StoreSync, root: RootDatabase, lock: DirectoryLock) {
    this.dir = dir;
    this.nodeId = nodeId;
    this.sync = sync;
    this.root = root;
    this.lock = lock;
    this.meta = root.openDB<unknown, string>({ name: 'meta' });
  }

  static open(options: NodeStoreOptions): NodeStore {
    const dir = resolve(options.dir);
    if (OPEN_DIRS.has(dir)) throw new StoreError('store_locked', `data directory ${dir} is already open in this process; give each node its own --data-dir`);
    try {
      mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new StoreError('store_open_failed', `cannot create data directory ${dir}: ${(err as Error).message}`);
    }
    const lock = DirectoryLock.acquire(join(dir, 'node.lock'), typeof options.nodeId === 'string' ? options.nodeId : '(its own)', dir);
    let root: RootDatabase;
    try {
      root = open({ path: join(dir, 'ucp.mdb'), maxDbs: 64, noSubdir: true, mapSize: MAP_SIZE, ...((options.sync ?? 'commit') === 'commit' ? { noSync: true } : {}) });
    } catch (err) {
      lock.release();
      throw new StoreError('store_open_failed', `cannot open LMDB in ${dir}: ${(err as Error).message}`);
    }
    let nodeId: string;
    try {
      nodeId = typeof options.nodeId === 'string' ? options.nodeId : boundNodeId(root) ?? options.nodeId();
    } catch (err) {
      void root.close();
      lock.release();
      throw err;
    }
    const store = new NodeStore(dir, nodeId, options.sync ?? 'commit', root, lock);
    OPEN_DIRS.add(dir);
    try {
      store.claim();
    } catch (err) {
      store.abandon();
      throw err;
    }
    return store;
  }

  /** Binds the directory to this node id and checks the schema, before anything else reads a table. */
  private claim(): void {
    const owner = this.meta.get(META.nodeId);
    if (owner !== undefined && owner !== this.nodeId) {
      throw new StoreError(
        'store_owned_by_other_node',
        `data directory ${this.dir} belongs to node "${String(owner)}", not "${this.nodeId}"; pass --node-id ${String(owner)} or use another --data-dir`,
      );
    }
    const schema = this.meta.get(META.schema);
    if (typeof schema === 'number' && schema > SCHEMA_VERSION) {
      throw new StoreError(
        'store_schema_too_new',
        `data directory ${this.dir} has schema version ${schema}, newer than this ucp-edge supports (${SCHEMA_VERSION}); upgrade ucp-edge`,
      );
    }
    if (owner === undefined || schema !== SCHEMA_VERSION) {
      this.meta.transactionSync(() => {
        this.meta.putSync(META.nodeId, this.nodeId);
        this.meta.putSync(META.schema, SCHEMA_VERSION);
      });
    }
  }

  /**
   * Opens (once) and returns a named table. With `cache`, a read sees the table's own writes at once,
   * before they are committed (LMDB otherwise reads the last committed state): for tables whose next
   * write depends on the last, such as a replica merging change after change. The cache is validated
   * against the last commit: an unvalidated one kept the value a read found between a removal and its
   * commit, so a pruned job answered queries until the entry left the cache (more often once collections
   * ran while the process was quiet). With `compress`, values are stored LZ4-compressed against a fixed
   * dictionary (compression.ts): for tables of many small records alike, such as the broker's replica.
   */
  table<V, K extends Key = string>(name: string, options: { cache?: boolean; compress?: boolean } = {}): Table<V, K> {
    let table = this.tables.get(name);
    if (table === undefined) {
      table = this.root.openDB<unknown, Key>({
        name,
        ...(options.cache === true ? { cache: { validated: true } } : {}),
        // A table must be opened with the same setting every time: compressed values read as garbage otherwise.
        ...(options.compress === true ? { compression: { threshold: COMPRESSION_THRESHOLD, dictionary: COMPRESSION_DICTIONARY } } : {}),
      });
      this.tables.set(name, table);
    }
    return table as unknown as Table<V, K>;
  }

  /**
   * Increments and returns the node's incarnation. Called once per start, before the node says anything,
   * so every start is told apart from the previous one even after a SIGKILL.
   */
  nextIncarnation(): number {
    return this.meta.transactionSync(() => {
      const current = this.meta.get(META.incarnation);
      const next = (typeof current === 'number' ? current : 0) + 1;
      this.meta.putSync(META.incarnation, next);
      return next;
    });
  }

  /**
   * Reserves `count` values of a persistent counter and returns the first. A counter that must never go
   * backwards across a SIGKILL (a broker's vector clock entry) reserves blocks ahead of use, so one
   * synchronous write covers many increments.
   */
  reserve(name: string, count: number): number {
    const key = `counter:${name}`;
    return this.meta.transactionSync(() => {
      const current = this.meta.get(key);
      const start = typeof current === 'number' ? current : 0;
      this.meta.putSync(key, start + count);
      return start;
    });
  }

  schemaVersion(): number {
    return this.meta.get(META.schema) as number;
  }

  /**
   * Resolves once writes issued so far are as durable as the `sync` setting asks. Call it before
   * acknowledging anything that was written.
   */
  async durable(): Promise<void> {
    await this.root.committed;
    if (this.sync === 'flush') await this.root.flushed;
  }

  /**
   * Resolves once `written`, the promise of writes the caller issued (LMDB commits batches in order, so
   * also everything issued before them), has committed and is as durable as the `sync` setting asks.
   * Under load this is a commit sooner than durable(), which waits for the newest batch, opened perhaps
   * after the caller's writes.
   */
  async durableAfter<T>(written: Promise<T>): Promise<T> {
    const value = await written;
    if (this.sync === 'flush') await this.root.flushed;
    return value;
  }

  /** Gives the directory up at once after a refused open, so that a corrected open can follow. */
  private abandon(): void {
    this.closed = true;
    this.lock.release();
    OPEN_DIRS.delete(this.dir);
    void this.root.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.root.close();
    } finally {
      this.lock.release();
      OPEN_DIRS.delete(this.dir);
    }
  }
}

/** The node id a directory was claimed by, if any. */
function boundNodeId(root: RootDatabase): string | undefined {
  const owner = root.openDB<unknown, string>({ name: 'meta' }).get(META.nodeId);
  return typeof owner === 'string' ? owner : undefined;
}
