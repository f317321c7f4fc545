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
   * fsynced (LMDB's noSync): a power cut may lose the last writes. A turn's writes commit together on the
   * event loop's thread (see TurnTransaction).
   * 'flush': a write is durable only once fsynced, which also survives a power cut. Flushes overlap with
   * the next commits, so commits made while one is under way share the next flush.
   */
  sync?: StoreSync;
  /**
   * Called when a turn's commit fails: what the turn decided is not stored, so the caller must not let
   * anything of it leave the process. Node processes stop (the default throws the error where the commit
   * was asked for).
   */
  onCommitFailed?: (err: Error) => void;
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
  private readonly turn: TurnTransaction | undefined;
  private closed = false;

  private constructor(dir: string, nodeId: string, sync: StoreSync, root: RootDatabase, lock: DirectoryLock, onCommitFailed?: (err: Error) => void) {
    this.dir = dir;
    this.nodeId = nodeId;
    this.sync = sync;
    this.root = root;
    this.lock = lock;
    this.meta = root.openDB<unknown, string>({ name: 'meta' });
    // A commit that must reach the disk waits for its fsync: on the event loop's thread it would stop the
    // node for as long, so flush mode keeps lmdb-js's write thread.
    if (sync === 'commit') this.turn = new TurnTransaction(root, onCommitFailed);
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
    const store = new NodeStore(dir, nodeId, options.sync ?? 'commit', root, lock, options.onCommitFailed);
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
      this.turn?.join(table);
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
    await this.turn?.pending();
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

  /**
   * Commits the writes of this turn now, if any are open (commit mode). Every publish to the hub calls it
   * first, so nothing is said that a killed process would not remember.
   */
  commitTurn(): void {
    this.turn?.commit();
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
    this.commitTurn();
    this.closed = true;
    try {
      await this.root.close();
    } finally {
      this.lock.release();
      OPEN_DIRS.delete(this.dir);
    }
  }
}

/**
 * Group commit on the event loop's thread, for commit mode. The first write of a turn of the event loop
 * opens an LMDB write transaction; every write until the end of the turn joins it, and it commits when the
 * turn ends (setImmediate) or sooner, when something is about to leave the process (NodeStore.commitTurn).
 *
 * Why not lmdb-js's own batching: it hands each turn's batch to its write thread, and compresses each value
 * of a compressed table on a thread of libuv's pool on the way. On a 2-core VM, waking those threads took a
 * quarter of a loaded broker's busy time (measured: 13.7% handing batches over, 11.7% handing values to
 * be compressed), more than writing the pages itself. Here the pages are written by the thread that made
 * them, with no fsync to wait for in commit mode.
 *
 * As with lmdb-js's batches, a write's promise resolves once the write is committed, and reads inside the
 * turn see its writes. Whatever leaves the process commits the turn first (every publish to the hub), so
 * a message never speaks of a write that a kill could still undo, even one nobody awaited.
 */
class TurnTransaction {
  /** The transaction open for this turn: how to commit it, and the promise its writes resolve with. */
  private open: { finish: (result: unknown) => unknown; committed: Promise<void>; resolve: () => void; reject: (err: Error) => void; timer: NodeJS.Immediate } | undefined;

  constructor(
    private readonly root: RootDatabase,
    private readonly onCommitFailed: ((err: Error) => void) | undefined,
  ) {}

  /** Makes the table's writes join the turn's transaction, and resolve once it commits. */
  join(table: Table<unknown, Key>): void {
    const writes = table as unknown as Record<'put' | 'remove' | 'transaction' | 'clearAsync', (...args: unknown[]) => unknown>;
    for (const method of ['put', 'remove', 'transaction', 'clearAsync'] as const) {
      const write = writes[method].bind(table);
      writes[method] = (...args: unknown[]) => {
        const committed = this.begin();
        const result = write(...args);
        return committed === undefined ? result : committed.then(() => result);
      };
    }
  }

  /** The commit of the writes made so far, if any are waiting for it. */
  pending(): Promise<void> | undefined {
    return this.open?.committed;
  }

  /** The commit the next write joins; undefined inside a transaction of someone else's (putSync, transactionSync). */
  private begin(): Promise<void> | undefined {
    if (this.open !== undefined) return this.open.committed;
    if ((this.root as unknown as { env: { writeTxn?: unknown } }).env.writeTxn) return undefined;
    // lmdb-js keeps a synchronous transaction open while the promise its callback returned is pending, and
    // commits when it settles; a thenable that hands over its callback lets the commit happen at once,
    // synchronously, instead of a microtask later.
    let finish: ((result: unknown) => unknown) | undefined;
    this.root.transactionSync(() => ({ then: (onDone: (result: unknown) => unknown) => void (finish = onDone) }) as unknown as Promise<void>);
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const committed = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
    // Nobody may be waiting: a failure is handled in commit(), not as an unhandled rejection.
    committed.catch(() => undefined);
    this.open = { finish: finish!, committed, resolve, reject, timer: setImmediate(() => this.commit()) };
    return committed;
  }

  commit(): void {
    const open = this.open;
    if (open === undefined) return;
    this.open = undefined;
    clearImmediate(open.timer);
    try {
      open.finish(undefined);
    } catch (err) {
      open.reject(err as Error);
      if (this.onCommitFailed === undefined) throw err;
      this.onCommitFailed(err as Error);
      return;
    }
    open.resolve();
  }
}

/** The node id a directory was claimed by, if any. */
function boundNodeId(root: RootDatabase): string | undefined {
  const owner = root.openDB<unknown, string>({ name: 'meta' }).get(META.nodeId);
  return typeof owner === 'string' ? owner : undefined;
}
