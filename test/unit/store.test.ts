import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { open } from 'lmdb';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NodeStore, SCHEMA_VERSION, StoreError, type StoreErrorCode } from '../../src/store/index.js';
import { Proc, ROOT, removeDir } from '../helpers/processes.js';

/**
 * The node store on real LMDB files in temp directories, and its directory lock against a real second
 * process. No mocks: what is tested is what a node started from the CLI does with its --data-dir.
 */

const COMPILED_STORE = join(ROOT, 'dist', 'src', 'store', 'index.js');

const dirs: string[] = [];
const stores: NodeStore[] = [];
const procs: Proc[] = [];

function freshDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ucp-store-test-'));
  dirs.push(dir);
  return dir;
}

function openStore(dir: string, nodeId: string, sync?: 'commit' | 'flush'): NodeStore {
  const store = NodeStore.open({ dir, nodeId, ...(sync !== undefined ? { sync } : {}) });
  stores.push(store);
  return store;
}

/** Opens the store's LMDB file directly, the way another (newer) ucp-edge would see it. */
function rawMeta<T>(dir: string, use: (meta: ReturnType<typeof openRaw>['meta']) => T): Promise<T> {
  const raw = openRaw(dir);
  return Promise.resolve()
    .then(() => use(raw.meta))
    .finally(() => raw.root.close());
}

function openRaw(dir: string) {
  const root = open({ path: join(dir, 'ucp.mdb'), noSubdir: true, maxDbs: 64 });
  const meta = root.openDB<unknown, string>({ name: 'meta' });
  return { root, meta };
}

/** Runs `fn` and returns the StoreError it throws; fails the test if it throws anything else or nothing. */
function storeError(fn: () => unknown): StoreError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(StoreError);
    return err as StoreError;
  }
  throw new Error('expected a StoreError, but the call succeeded');
}

function expectCode(err: StoreError, code: StoreErrorCode): void {
  expect(err.code, err.message).toBe(code);
}

afterEach(async () => {
  for (const p of procs.splice(0)) {
    p.kill('SIGKILL');
    await p.exited;
  }
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) removeDir(d);
});

describe('NodeStore identity and incarnation', () => {
  it('a fresh directory records the node id and SCHEMA_VERSION', async () => {
    const dir = freshDir();
    const store = openStore(dir, 'node-a');
    expect(store.nodeId).toBe('node-a');
    expect(store.dir).toBe(dir);
    expect(store.schemaVersion()).toBe(SCHEMA_VERSION);
    expect(existsSync(join(dir, 'ucp.mdb'))).toBe(true);
    await store.close();

    // What is on disk, not only what the object remembers.
    const meta = await rawMeta(dir, (m) => ({ nodeId: m.get('node_id'), schema: m.get('schema_version') }));
    expect(meta).toEqual({ nodeId: 'node-a', schema: SCHEMA_VERSION });
  });

  it('incarnation starts at 1, increments per call and survives close and reopen', async () => {
    const dir = freshDir();
    const first = openStore(dir, 'node-a');
    expect(first.nextIncarnation()).toBe(1);
    expect(first.nextIncarnation()).toBe(2);
    await first.close();

    const second = openStore(dir, 'node-a');
    expect(second.nextIncarnation()).toBe(3);
    await second.close();

    const third = openStore(dir, 'node-a');
    expect(third.nextIncarnation()).toBe(4);
  });

  it('refuses a directory owned by another node id, in one line naming both ids and the directory', async () => {
    const dir = freshDir();
    const owner = openStore(dir, 'node-a');
    owner.nextIncarnation();
    await owner.close();

    const err = storeError(() => openStore(dir, 'node-b'));
    expectCode(err, 'store_owned_by_other_node');
    expect(err.message).not.toContain('\n');
    expect(err.message).toContain('"node-a"');
    expect(err.message).toContain('"node-b"');
    expect(err.message).toContain(dir);

    // The refused open changed nothing: the owner still opens it, with its incarnation intact.
    await new Promise((r) => setTimeout(r, 100));
    const again = openStore(dir, 'node-a');
    expect(again.nextIncarnation()).toBe(2);
  });

  it('refuses a directory whose schema version is newer than this build supports, and leaves it as it was', async () => {
    const dir = freshDir();
    const store = openStore(dir, 'node-a');
    await store.close();
    const newer = SCHEMA_VERSION + 1;
    await rawMeta(dir, (meta) => meta.putSync('schema_version', newer));

    const err = storeError(() => openStore(dir, 'node-a'));
    expectCode(err, 'store_schema_too_new');
    expect(err.message).not.toContain('\n');
    expect(err.message).toContain(dir);
    expect(err.message).toContain(String(newer));
    await new Promise((r) => setTimeout(r, 100));

    // It must not have "fixed" the version down to its own, which would corrupt the newer layout.
    expect(await rawMeta(dir, (meta) => meta.get('schema_version'))).toBe(newer);
  });
});

describe('NodeStore directory lock', () => {
  beforeAll(() => {
    if (!existsSync(COMPILED_STORE)) throw new Error(`${COMPILED_STORE} is missing; run npx tsc -p tsconfig.json first`);
  });

  /** A real second process that opens the store, writes, says "open" and then waits to be killed. */
  function holder(dir: string, nodeId: string): Proc {
    const script = `
      import { NodeStore } from ${JSON.stringify(pathToFileURL(COMPILED_STORE).href)};
      const store = NodeStore.open({ dir: ${JSON.stringify(dir)}, nodeId: ${JSON.stringify(nodeId)} });
      const items = store.table('items');
      items.putSync('synced', { by: process.pid, how: 'putSync' });
      await items.put('awaited', { by: process.pid, how: 'put' });
      await store.durable();
      console.log('open');
      setInterval(() => {}, 60_000);
    `;
    const proc = new Proc(process.execPath, ['--input-type=module', '-e', script]);
    procs.push(proc);
    return proc;
  }

  it('a directory held by a live process fails with store_locked naming its pid; after SIGKILL the lock is reclaimed and its writes are there', async () => {
    const dir = freshDir();
    const child = holder(dir, 'node-a');
    await child.waitForLine(/^open$/, 20_000);

    const err = storeError(() => openStore(dir, 'node-a'));
    expectCode(err, 'store_locked');
    expect(err.message).not.toContain('\n');
    expect(err.message).toContain(`process ${child.pid}`);
    expect(err.message).toContain(dir);
    // The refused open must not have disturbed the holder's lock.
    expect(JSON.parse(readFileSync(join(dir, 'node.lock'), 'utf8'))).toMatchObject({ pid: child.pid, nodeId: 'node-a' });

    child.kill('SIGKILL');
    const exit = await child.exited;
    expect(exit.signal).toBe('SIGKILL');
    // SIGKILL leaves the lock file behind; the next start must take it over rather than refuse forever.
    expect(existsSync(join(dir, 'node.lock'))).toBe(true);

    const store = openStore(dir, 'node-a');
    expect(JSON.parse(readFileSync(join(dir, 'node.lock'), 'utf8'))).toMatchObject({ pid: process.pid, nodeId: 'node-a' });
    const items = store.table<{ by: number; how: string }>('items');
    expect(items.get('synced')).toEqual({ by: child.pid, how: 'putSync' });
    expect(items.get('awaited')).toEqual({ by: child.pid, how: 'put' });
  });

  it.each([
    ['empty', ''],
    ['torn', '{"pid":12'],
    ['not a lock', 'hello'],
  ])('a %s node.lock file is taken over', async (_what, content) => {
    const dir = freshDir();
    writeFileSync(join(dir, 'node.lock'), content);
    const store = openStore(dir, 'node-a');
    expect(store.nextIncarnation()).toBe(1);
    expect(JSON.parse(readFileSync(join(dir, 'node.lock'), 'utf8'))).toMatchObject({ pid: process.pid, nodeId: 'node-a' });
    await store.close();
    expect(existsSync(join(dir, 'node.lock'))).toBe(false);
  });

  // A refused open releases its lock asynchronously, after closing LMDB. That late release must not delete
  // the lock of whatever open of the same directory came next in this process.
  it('a refused open leaves the lock of the next successful open in place', async () => {
    const dir = freshDir();
    await openStore(dir, 'node-a').close();
    expectCode(storeError(() => openStore(dir, 'node-b')), 'store_owned_by_other_node');
    openStore(dir, 'node-a');
    await new Promise((r) => setTimeout(r, 300));
    expect(existsSync(join(dir, 'node.lock'))).toBe(true);
  });
});

describe('NodeStore tables and durability', () => {
  interface Reading {
    sensor: string;
    value: number;
  }

  it('tables are typed, ordered by key and persist across reopen', async () => {
    const dir = freshDir();
    const store = openStore(dir, 'node-a');
    const readings = store.table<Reading, number>('readings');
    const names = store.table<string>('names');
    expect(store.table<Reading, number>('readings')).toBe(readings);
    await readings.put(3, { sensor: 's3', value: 0.5 });
    await readings.put(1, { sensor: 's1', value: -2 });
    await readings.put(20, { sensor: 's20', value: 1e6 });
    await names.put('a', 'alpha');
    // @ts-expect-error a table declared with Reading values must not accept other values
    if (false as boolean) await readings.put(4, 'not a reading');
    await store.close();

    const reopened = openStore(dir, 'node-a');
    const again = reopened.table<Reading, number>('readings');
    // Numeric keys sort as numbers (1, 3, 20), not as strings ("1", "20", "3").
    expect([...again.getKeys()]).toEqual([1, 3, 20]);
    expect(again.get(20)).toEqual({ sensor: 's20', value: 1e6 });
    expect(again.get(1)).toEqual({ sensor: 's1', value: -2 });
    expect(reopened.table<string>('names').get('a')).toBe('alpha');
    // Tables are separate namespaces.
    expect(reopened.table<unknown, number>('names').get(1)).toBeUndefined();
    expect(reopened.table<string>('other').get('a')).toBeUndefined();
  });

  it.each(['commit', 'flush'] as const)("durable() with sync '%s' resolves after the writes issued before it", async (sync) => {
    const dir = freshDir();
    const store = openStore(dir, 'node-a', sync);
    expect(store.sync).toBe(sync);
    const table = store.table<number, number>('writes');
    const done: boolean[] = [];
    for (let i = 0; i < 50; i++) {
      done.push(false);
      void table.put(i, i * i).then((ok) => {
        expect(ok).toBe(true);
        done[i] = true;
      });
    }
    await store.durable();
    expect(done.every(Boolean)).toBe(true);
    expect(table.get(49)).toBe(49 * 49);

    // A second batch after the first durable() is covered by the next one too.
    let late = false;
    void table.put(100, 1).then(() => (late = true));
    await store.durable();
    expect(late).toBe(true);
    await store.close();

    const reopened = openStore(dir, 'node-a');
    const writes = reopened.table<number, number>('writes');
    expect([...writes.getKeys()]).toHaveLength(51);
    expect(writes.get(7)).toBe(49);
    expect(writes.get(100)).toBe(1);
  });
});

describe('commit mode: one transaction per turn', () => {
  const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
  /** The id of the last transaction LMDB committed. */
  const lastTxn = (table: { getStats(): object }) => (table.getStats() as { lastTxnId: number }).lastTxnId;

  it('a turn\'s writes to plain, cached and compressed tables commit together at its end, and the turn reads them back', async () => {
    const dir = freshDir();
    const store = openStore(dir, 'turns');
    const plain = store.table<number>('plain');
    const cached = store.table<{ n: number }>('cached', { cache: true });
    const packed = store.table<{ text: string }>('packed', { compress: true });
    const before = lastTxn(plain);
    const written: Array<Promise<unknown>> = [];
    for (let i = 0; i < 20; i++) {
      written.push(plain.put(`k${i}`, i), cached.put(`k${i}`, { n: i }), packed.put(`k${i}`, { text: 'a record long enough to be compressed '.repeat(8) + i }));
    }
    written.push(plain.remove('k0'));
    const moved = plain.transaction(() => {
      const value = plain.get('k1');
      void plain.put('moved', value!);
      return value;
    });
    // Nothing is committed yet, and the turn reads what it wrote.
    expect(lastTxn(plain)).toBe(before);
    expect(plain.get('moved')).toBe(1);
    expect(plain.get('k19')).toBe(19);
    expect(plain.get('k0')).toBeUndefined();
    expect(packed.get('k7')?.text.endsWith('7')).toBe(true);
    // Every write resolves once the turn has committed, all in one transaction.
    expect(await moved).toBe(1);
    await Promise.all(written);
    expect(lastTxn(plain)).toBe(before + 1);

    // The next turn's write is a commit of its own.
    void plain.put('later', 1);
    await nextTurn();
    expect(lastTxn(plain)).toBe(before + 2);
    // A turn without writes commits nothing.
    await nextTurn();
    expect(lastTxn(plain)).toBe(before + 2);
    await store.close();

    const reopened = openStore(dir, 'turns');
    expect(reopened.table<number>('plain').get('moved')).toBe(1);
    expect(reopened.table<{ n: number }>('cached', { cache: true }).get('k5')).toEqual({ n: 5 });
    expect(reopened.table<{ text: string }>('packed', { compress: true }).get('k19')?.text).toBe('a record long enough to be compressed '.repeat(8) + '19');
    expect(reopened.table<number>('plain').get('k0')).toBeUndefined();
  });

  it('a write resolves, and durable() too, once the turn has committed; in flush mode lmdb-js commits on its own thread as before', async () => {
    const store = openStore(freshDir(), 'soon');
    const table = store.table<number>('t');
    const before = lastTxn(table);
    const seen: number[] = [];
    const written = table.put('a', 1).then(() => seen.push(lastTxn(table)));
    await store.durable();
    await written;
    expect(seen).toEqual([before + 1]);
    expect(lastTxn(table)).toBe(before + 1);

    const flushing = openStore(freshDir(), 'flushing', 'flush');
    const other = flushing.table<number>('t');
    const start = lastTxn(other);
    void other.put('a', 1);
    // Not committed on this thread: the write thread commits it, and durable() waits for that and its fsync.
    expect(lastTxn(other)).toBe(start);
    await flushing.durable();
    expect(lastTxn(other)).toBe(start + 1);
  });

  it('a write of a turn that a kill cuts short is not stored; one the turn acknowledged is', async () => {
    const dir = freshDir();
    const script = `
      import { NodeStore } from ${JSON.stringify(pathToFileURL(COMPILED_STORE).href)};
      const store = NodeStore.open({ dir: ${JSON.stringify(dir)}, nodeId: 'cut' });
      const t = store.table('t');
      void t.put('acknowledged', 1);
      await store.durable();
      void t.put('cut short', 2);
      process.kill(process.pid, 'SIGKILL');
    `;
    const proc = new Proc(process.execPath, ['--input-type=module', '-e', script]);
    procs.push(proc);
    expect((await proc.exited).signal).toBe('SIGKILL');
    const store = openStore(dir, 'cut');
    expect(store.table<number>('t').get('acknowledged')).toBe(1);
    expect(store.table<number>('t').get('cut short')).toBeUndefined();
  });
});

describe('a commit that fails', () => {
  it('stops a node with one line saying why; a restart finds what was committed before, and nothing of the failed turn', async () => {
    const dir = freshDir();
    const dist = (path: string) => JSON.stringify(pathToFileURL(join(ROOT, 'dist', 'src', path)).href);
    const script = `
      import { loadConfig } from ${dist('config/index.js')};
      import { createLogger } from ${dist('log/index.js')};
      import { NodeRuntime } from ${dist('transport/index.js')};
      const config = loadConfig({ env: {}, overrides: { 'hub.url': 'mqtt://127.0.0.1:9' } });
      const node = NodeRuntime.create({ config, nodeId: 'full', role: 'datastore', dataDir: ${JSON.stringify(dir)}, logger: createLogger({ level: 'info', format: 'json', destination: process.stdout }) });
      const t = node.store.table('t');
      await t.put('small', 1);
      console.log('small stored');
      // More than the file may grow by (ulimit -f): the commit's page writes fail with EFBIG.
      t.put('big', 'x'.repeat(8 << 20)).then(() => console.log('big stored'), (err) => console.log('big refused: ' + err.message));
      setInterval(() => {}, 60000);
    `;
    // The file size limit makes writes past it fail instead of killing the process (SIGXFSZ is ignored).
    const proc = new Proc('bash', ['-c', `trap '' XFSZ; ulimit -f 4096; exec "${process.execPath}" --input-type=module -e "$0"`, script]);
    procs.push(proc);
    const exit = await proc.exited;
    expect(exit.code, proc.stderr).toBe(1);
    expect(proc.lines).toContain('small stored');
    expect(proc.lines.some((l) => l.startsWith('big stored'))).toBe(false);
    const fatal = proc.logs.find((l) => l.level === 60);
    expect(fatal?.msg).toBe('cannot commit to the data directory; stopping the process');
    expect(String(fatal?.['err'])).not.toContain('\n');

    const store = openStore(dir, 'full');
    expect(store.table<number>('t').get('small')).toBe(1);
    expect(store.table<string>('t').get('big')).toBeUndefined();
  });
});

describe('NodeStore within one process', () => {
  it('refuses a second open of a directory that is already open here, and allows it once closed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ucp-store-twice-'));
    const first = NodeStore.open({ dir, nodeId: 'n1' });
    try {
      expect(() => NodeStore.open({ dir, nodeId: 'n1' })).toThrow(/already open in this process/);
      expect(first.nextIncarnation()).toBe(1);
    } finally {
      await first.close();
    }
    const again = NodeStore.open({ dir, nodeId: 'n1' });
    expect(again.nextIncarnation()).toBe(2);
    await again.close();
    removeDir(dir);
  });
});

describe('cached tables', () => {
  it('read their own uncommitted writes, and a read between a removal and its commit does not bring the value back', async () => {
    const store = openStore(freshDir(), 'cache-node');
    const table = store.table<{ job: string }>('cached', { cache: true });
    void table.put('j', { job: 'j' });
    // Before the commit, from the cache.
    expect(table.get('j')).toEqual({ job: 'j' });
    await table.committed;
    void table.remove('j');
    // A read while the removal is not committed yet, as a query arriving mid-prune makes.
    expect(table.get('j')).toBeUndefined();
    await table.committed;
    expect(table.get('j')).toBeUndefined();
    void table.put('j', { job: 'again' });
    expect(table.get('j')).toEqual({ job: 'again' });
    await table.committed;
    expect(table.get('j')).toEqual({ job: 'again' });
  });
});

describe('compressed tables', () => {
  /** The first stored byte of a value, read without decompressing. */
  async function firstByte(dir: string, table: string, key: string): Promise<number | undefined> {
    const raw = openRaw(dir);
    try {
      return raw.root.openDB<unknown, string>({ name: table }).getBinary(key)?.[0];
    } finally {
      await raw.root.close();
    }
  }

  /** A record shaped like a finished job's, different per key as real ones are. */
  const record = (i: number) => ({
    table: 'jobs',
    key: `plan-${i}`,
    origin: 'broker-a',
    seq: i,
    vc: { 'broker-a': i * 3 },
    hlc: [1_760_000_000_000 + i, 1],
    job: { job_id: `plan-${i}`, state: 'succeeded', owner: 'client-a', attempts: [{ attempt: 1, executor: 'exec-a', outcome: 'accepted' }], spec: { argv: ['x.wasm', String(i)], env: {} }, digest: `${i}`.padStart(64, 'a') },
  });

  it('store records in fewer pages, read them back whole, after a reopen too', async () => {
    const dir = freshDir();
    const store = openStore(dir, 'compress-node');
    const plain = store.table<ReturnType<typeof record>>('plain');
    const packed = store.table<ReturnType<typeof record>>('packed', { compress: true });
    for (let i = 0; i < 2_000; i++) {
      void plain.put(`plan-${i}`, record(i));
      void packed.put(`plan-${i}`, record(i));
    }
    await store.durable();
    const pages = (t: typeof plain) => {
      const s = t.getStats() as { treeLeafPageCount: number; treeBranchPageCount: number; overflowPages: number };
      return s.treeLeafPageCount + s.treeBranchPageCount + s.overflowPages;
    };
    // Measured: about 40% of the pages; a table that stopped compressing would fail here.
    expect(pages(packed)).toBeLessThan(pages(plain) * 0.6);
    expect(packed.get('plan-1234')).toEqual(record(1234));
    await store.close();
    // What is on disk is compressed: lmdb-js marks such a value with a first byte of 254 or 255.
    expect(await firstByte(dir, 'packed', 'plan-7')).toBeGreaterThanOrEqual(254);
    expect(await firstByte(dir, 'plain', 'plan-7')).toBeLessThan(250);

    const again = openStore(dir, 'compress-node');
    const reread = again.table<ReturnType<typeof record>>('packed', { compress: true });
    expect(reread.get('plan-1999')).toEqual(record(1999));
    expect([...reread.getRange({ start: 'plan-10', end: 'plan-11' })].length).toBe(111);
  });

  it('read values written before the table was compressed (a directory of schema version 1)', async () => {
    const dir = freshDir();
    const old = openStore(dir, 'compress-node');
    const table = old.table<ReturnType<typeof record>>('records');
    for (let i = 0; i < 50; i++) void table.put(`plan-${i}`, record(i));
    await old.durable();
    await old.close();

    const store = openStore(dir, 'compress-node');
    const packed = store.table<ReturnType<typeof record>>('records', { compress: true });
    expect(packed.get('plan-3')).toEqual(record(3));
    void packed.put('plan-3', record(3_000));
    await store.durable();
    expect(packed.get('plan-3')).toEqual(record(3_000));
    expect([...packed.getRange()].length).toBe(50);
    await store.close();
    expect(await firstByte(dir, 'records', 'plan-3')).toBeGreaterThanOrEqual(254);
    expect(await firstByte(dir, 'records', 'plan-4')).toBeLessThan(250);
  });
});
