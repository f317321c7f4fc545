import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DataStoreError, NamedDataStore, type Version } from '../../src/datastore/named-data.js';
import { resultArchiveName } from '../../src/protocol/index.js';
import { NodeStore } from '../../src/store/index.js';
import { removeDir, tempDir } from '../helpers/processes.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));
const v = (wall: number, writer = 'client-a', logical = 0): Version => ({ at: { wall, logical }, writer });

/** Named data on real LMDB: last-write-wins by HLC, tombstones, prefixes, pagination, job cleanup. */
describe('named data store', () => {
  let dir: string;
  let store: NodeStore;
  let data: NamedDataStore;

  const reopen = async () => {
    await store.close();
    store = NodeStore.open({ dir, nodeId: 'ds-1' });
    data = new NamedDataStore(store, 1024);
  };

  beforeEach(() => {
    dir = tempDir();
    store = NodeStore.open({ dir, nodeId: 'ds-1' });
    data = new NamedDataStore(store, 1024);
  });
  afterEach(async () => {
    await store.close();
    removeDir(dir);
  });

  it('keeps the latest write by HLC, whatever order writes arrive in, and survives a restart', async () => {
    expect(await data.put('fire/d3/temps', bytes('new'), v(200))).toBe('stored');
    expect(await data.put('fire/d3/temps', bytes('old'), v(100))).toBe('stale');
    expect(await data.put('fire/d3/temps', bytes('new'), v(200))).toBe('unchanged');
    await reopen();
    expect(text(data.get('fire/d3/temps')?.bytes)).toBe('new');
    expect(data.get('fire/d3/temps')).toMatchObject({ size: 3, at: { wall: 200, logical: 0 }, writer: 'client-a' });
  });

  it('breaks an HLC tie by the logical counter, then by writer id', async () => {
    await data.put('x', bytes('a'), v(100, 'node-b', 1));
    expect(await data.put('x', bytes('b'), v(100, 'node-a', 2))).toBe('stored');
    expect(await data.put('x', bytes('c'), v(100, 'node-0', 2))).toBe('stale');
    expect(await data.put('x', bytes('d'), v(100, 'node-z', 2))).toBe('stored');
    expect(text(data.get('x')?.bytes)).toBe('d');
  });

  it('a deletion wins over older writes that arrive after it, and loses to newer ones', async () => {
    await data.put('a', bytes('1'), v(100));
    expect(await data.delete('a', v(150))).toBe(true);
    expect(data.get('a')).toBeUndefined();
    expect(await data.put('a', bytes('late'), v(120))).toBe('stale');
    expect(data.get('a')).toBeUndefined();
    expect(await data.put('a', bytes('2'), v(160))).toBe('stored');
    expect(text(data.get('a')?.bytes)).toBe('2');
    expect(await data.delete('a', v(155))).toBe(false);
  });

  it('gets a name with all its subkeys, not its siblings, a page at a time', async () => {
    for (const name of ['fire/d3', 'fire/d3/temps', 'fire/d3/wind/speed', 'fire/d3.backup', 'fire/d30', 'fire/d4/temps']) {
      await data.put(name, bytes(name), v(1));
    }
    const first = data.getPrefix('fire/d3', 2);
    expect(first.items.map((i) => i.name)).toEqual(['fire/d3', 'fire/d3/temps']);
    expect(text(first.items[1]!.bytes)).toBe('fire/d3/temps');
    const second = data.getPrefix('fire/d3', 2, first.next);
    expect(second.items.map((i) => i.name)).toEqual(['fire/d3/wind/speed']);
    expect(second.next).toBeUndefined();
    expect(data.list('', 100).items.length).toBe(6);
  });

  it('deletes a job\'s data but keeps its result archive', async () => {
    await data.put('job-7/input/a.txt', bytes('a'), v(1));
    await data.put('job-7/output/log', bytes('b'), v(1));
    await data.put(resultArchiveName('job-7'), bytes('zip'), v(1));
    await data.put('job-70/input', bytes('other job'), v(1));
    expect(await data.deleteJobData('job-7', v(5))).toBe(2);
    expect(data.list('job-7', 10).items.map((i) => i.name)).toEqual(['job-7/result.zip']);
    expect(data.get('job-70/input')).toBeDefined();
  });

  it('refuses an object over the size limit with a clear error, and reports free space', async () => {
    await expect(data.put('big', new Uint8Array(1025), v(1))).rejects.toThrow(DataStoreError);
    await expect(data.put('big', new Uint8Array(1025), v(1))).rejects.toThrow(/1025 bytes, over this datastore's 1024-byte limit/);
    expect(data.get('big')).toBeUndefined();
    expect(data.freeSpace()).toBeGreaterThan(0);
  });
});
