import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DataStoreError, NamedDataStore, type ReadPiece, type Stamp } from '../../src/datastore/named-data.js';
import { CHUNK_BYTES, resultArchiveName } from '../../src/protocol/index.js';
import { NodeStore } from '../../src/store/index.js';
import { removeDir, tempDir } from '../helpers/processes.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));
/** A write as a broker stamps it for client-a, the owner of every name here unless a test says otherwise. */
const v = (wall: number, writer = 'client-a', logical = 0, owner = 'client-a', replace = false): Stamp => ({ at: { wall, logical }, writer, owner, replace });

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

  it('prunes tombstones past their TTL and still refuses the older writes they refused, across a restart', async () => {
    await data.put('a', bytes('1'), v(100));
    await data.put('b', bytes('1'), v(100));
    expect(await data.delete('a', v(150))).toBe(true);
    expect(await data.delete('b', v(300))).toBe(true);
    expect(data.tombstoneCount()).toBe(2);
    // Only the deletion before the cutoff goes.
    expect(await data.pruneTombstones(200)).toBe(1);
    expect(data.tombstoneCount()).toBe(1);
    await reopen();
    // The pruned deletion still orders "a": a write older than it stays out, a newer one is stored.
    expect(await data.put('a', bytes('late'), v(120))).toBe('stale');
    expect(await data.append([{ name: 'a', records: [{ seq: 0, t: 1, line: bytes('r') }] }], v(140))).toEqual([expect.objectContaining({ stored: 0 })]);
    // So does every name without a tombstone: a write stamped before the floor is as late as it can be.
    expect(await data.put('never-held', bytes('late'), v(149))).toBe('stale');
    expect(await data.put('a', bytes('2'), v(160))).toBe('stored');
    expect(text(data.get('a')?.bytes)).toBe('2');
    // The kept tombstone goes on ordering its own name.
    expect(await data.put('b', bytes('late'), v(250))).toBe('stale');
    expect(await data.put('b', bytes('2'), v(310))).toBe('stored');
    // A second pass with nothing due changes nothing, the floor included.
    expect(await data.pruneTombstones(200)).toBe(0);
    expect(await data.put('c', bytes('1'), v(151))).toBe('stored');
  });

  it('prunes at most a budget of tombstones per pass', async () => {
    for (let i = 0; i < 5; i++) {
      await data.put(`n${i}`, bytes('1'), v(100));
      await data.delete(`n${i}`, v(110 + i));
    }
    expect(await data.pruneTombstones(1_000, 3)).toBe(3);
    expect(data.tombstoneCount()).toBe(2);
    expect(await data.pruneTombstones(1_000, 3)).toBe(2);
    expect(data.tombstoneCount()).toBe(0);
    // The floor is the newest deletion pruned, whichever pass pruned it.
    expect(await data.put('n0', bytes('late'), v(114))).toBe('stale');
    expect(await data.put('n0', bytes('2'), v(115))).toBe('stored');
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

  it('keeps a name its owner\'s: another node neither replaces, appends to nor deletes it, however late its stamp, unless granted replace', async () => {
    await data.put('victim/bin/echo.wasm', bytes('genuine'), v(100, 'victim', 0, 'victim'));
    const mallory = (wall: number) => v(wall, 'mallory', 0, 'mallory');
    await expect(data.put('victim/bin/echo.wasm', bytes('evil'), mallory(2 ** 48))).rejects.toThrow(/owned by victim/);
    await expect(data.delete('victim/bin/echo.wasm', mallory(2 ** 48))).rejects.toMatchObject({ code: 'not_owner' });
    await data.append([{ name: 'victim/series', records: [{ seq: 0, t: 1, line: bytes('x') }] }], v(101, 'victim', 0, 'victim'));
    const [r] = await data.append([{ name: 'victim/series', records: [{ seq: 1, t: 2, line: bytes('evil') }] }], mallory(102));
    expect(r).toMatchObject({ outcome: 'not_owner', stored: 0 });
    expect(text(data.get('victim/bin/echo.wasm')?.bytes)).toBe('genuine');
    expect(data.list('victim', 10).items.map((i) => i.owner)).toEqual(['victim', 'victim']);
    // The owner's own later write is stored, not "stale"; an operator (replace) takes the name over.
    expect(await data.put('victim/bin/echo.wasm', bytes('v2'), v(200, 'victim', 0, 'victim'))).toBe('stored');
    expect(await data.put('victim/bin/echo.wasm', bytes('fixed'), v(300, 'ops', 0, 'ops', true))).toBe('stored');
    expect(data.get('victim/bin/echo.wasm')).toMatchObject({ owner: 'ops', writer: 'ops' });
    // A deleted name is free again.
    expect(await data.delete('victim/bin/echo.wasm', v(400, 'ops', 0, 'ops'))).toBe(true);
    expect(await data.put('victim/bin/echo.wasm', bytes('new'), mallory(500))).toBe('stored');
  });

  it('without replace, deleting a job\'s data removes only the asker\'s own names', async () => {
    await data.put('job-8/a', bytes('a'), v(1));
    await data.put('job-8/b', bytes('b'), v(1, 'x', 0, 'someone-else'));
    expect(await data.deleteJobData('job-8', v(5))).toBe(1);
    expect(data.list('job-8', 10).items.map((i) => i.name)).toEqual(['job-8/b']);
  });

  it('refuses an object over the size limit with a clear error, and reports free space', async () => {
    await expect(data.put('big', new Uint8Array(1025), v(1))).rejects.toThrow(DataStoreError);
    await expect(data.put('big', new Uint8Array(1025), v(1))).rejects.toThrow(/1025 bytes, over this datastore's 1024-byte limit/);
    expect(data.get('big')).toBeUndefined();
    expect(data.freeSpace()).toBeGreaterThan(0);
  });

  describe('objects in chunks and series', () => {
    const big = (size: number) => {
      const b = new Uint8Array(size);
      for (let i = 0; i < size; i++) b[i] = (i * 7 + (i >> 11)) & 0xff;
      return b;
    };
    const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
    const readAll = (name: string) => {
      const parts: Uint8Array[] = [];
      let from: number | undefined = 0;
      while (from !== undefined) {
        const piece: ReadPiece = data.read(name, from, CHUNK_BYTES)!;
        parts.push(piece.bytes);
        from = piece.next;
      }
      return Buffer.concat(parts);
    };
    const enc = (rec: object) => bytes(`${JSON.stringify(rec)}\n`);
    const recs = (from: number, to: number, t = (seq: number) => 1_000 + seq) => Array.from({ length: to - from }, (_, i) => ({ seq: from + i, t: t(from + i), line: enc({ seq: from + i }) }));
    const seqs = (name: string) => new TextDecoder().decode(readAll(name)).trim().split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { seq: number }).seq);

    beforeEach(async () => {
      await store.close();
      store = NodeStore.open({ dir, nodeId: 'ds-1' });
      data = new NamedDataStore(store, 8 * CHUNK_BYTES);
    });

    it('takes an upload chunk by chunk, checks size and digest, and reads it back by offset', async () => {
      const object = big(3 * CHUNK_BYTES + 1234);
      const chunks = [0, 1, 2, 3].map((i) => object.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES));
      for (let i = 0; i < 3; i++) expect(await data.write('u1', 'rec/cam-1', i, chunks[i]!)).toEqual({ written: i });
      // A chunk sent again (its acknowledgement was lost) is acknowledged again, not stored twice.
      expect(await data.write('u1', 'rec/cam-1', 2, chunks[2]!)).toEqual({ written: 2 });
      expect(await data.write('u1', 'rec/cam-1', 3, chunks[3]!, { size: object.byteLength, digest: sha(object), version: v(10) })).toEqual({ outcome: 'stored' });
      expect(Buffer.compare(readAll('rec/cam-1'), Buffer.from(object))).toBe(0);
      const piece = data.read('rec/cam-1', CHUNK_BYTES + 10, 100)!;
      expect(piece).toMatchObject({ size: object.byteLength, digest: sha(object), series: false, next: CHUNK_BYTES + 110 });
      expect(Buffer.from(piece.bytes)).toEqual(Buffer.from(object.subarray(CHUNK_BYTES + 10, CHUNK_BYTES + 110)));
      expect(() => data.get('rec/cam-1')).toThrow(/read it in chunks/);
      expect(data.getPrefix('rec', 10).items[0]).toMatchObject({ name: 'rec/cam-1', whole: false, size: object.byteLength });
      // A replacement frees the old chunks in the same transaction.
      expect(await data.put('rec/cam-1', bytes('small now'), v(11))).toBe('stored');
      expect(text(data.get('rec/cam-1')?.bytes)).toBe('small now');
      expect([...store.table('data_chunks').getKeys()].length).toBe(1);
    });

    it('publishes staged objects by renaming them, checking size and digest, all or nothing, and again idempotently', async () => {
      const archive = big(2 * CHUNK_BYTES + 5);
      const named = big(CHUNK_BYTES + 77).reverse();
      await data.put('j/.attempts/2/result.zip', archive, v(10, 'ex-1'));
      await data.put('j/.attempts/2/named/0', named, v(10, 'ex-1'));
      await data.put('fire/stats', bytes('older stats'), v(5, 'ex-0'));
      const chunksBefore = [...store.table('data_chunks').getKeys()].length;
      const moves = [
        { from: 'j/.attempts/2/result.zip', to: 'j/result.zip', size: archive.byteLength, digest: sha(archive) },
        { from: 'j/.attempts/2/named/0', to: 'fire/stats', size: named.byteLength, digest: sha(named) },
      ];
      // A wrong digest on either one refuses both: nothing moves.
      await expect(data.move([moves[0]!, { ...moves[1]!, digest: sha(archive) }], v(20, 'ex-1'))).rejects.toMatchObject({ code: 'digest_mismatch' });
      await expect(data.move([{ ...moves[0]!, size: 1 }, moves[1]!], v(20, 'ex-1'))).rejects.toMatchObject({ code: 'size_mismatch' });
      await expect(data.move([moves[0]!, { ...moves[1]!, from: 'j/.attempts/2/named/9' }], v(20, 'ex-1'))).rejects.toMatchObject({ code: 'not_found' });
      await expect(data.move([moves[0]!, { ...moves[1]!, from: moves[0]!.from }], v(20, 'ex-1'))).rejects.toMatchObject({ code: 'bad_move' });
      expect(data.list('j', 10).items.map((i) => i.name)).toEqual(['j/.attempts/2/named/0', 'j/.attempts/2/result.zip']);
      expect(text(data.get('fire/stats')?.bytes)).toBe('older stats');

      expect(await data.move(moves, v(20, 'ex-1'))).toEqual([
        { to: 'j/result.zip', outcome: 'stored' },
        { to: 'fire/stats', outcome: 'stored' },
      ]);
      expect(Buffer.compare(readAll('j/result.zip'), Buffer.from(archive))).toBe(0);
      expect(Buffer.compare(readAll('fire/stats'), Buffer.from(named))).toBe(0);
      expect(data.read('j/result.zip', 0, 1)).toMatchObject({ size: archive.byteLength, digest: sha(archive), at: { wall: 20, logical: 0 }, writer: 'ex-1' });
      expect(data.list('j', 10).items.map((i) => i.name)).toEqual(['j/result.zip']);
      // No byte was copied: the staged chunks became the published ones, the replaced name's chunk went.
      expect([...store.table('data_chunks').getKeys()].length).toBe(chunksBefore - 1);
      // The same request again (its reply was lost): already done, nothing changes.
      expect(await data.move(moves, v(21, 'ex-1'))).toEqual([
        { to: 'j/result.zip', outcome: 'unchanged' },
        { to: 'fire/stats', outcome: 'unchanged' },
      ]);
      // A staged name that is gone cannot be passed off as other content.
      await expect(data.move([{ ...moves[0]!, digest: sha(named) }], v(22, 'ex-1'))).rejects.toMatchObject({ code: 'not_found' });
      // The staged names left tombstones: an old write of them cannot come back.
      expect(await data.put('j/.attempts/2/named/0', bytes('late'), v(15, 'ex-1'))).toBe('stale');
      await reopen();
      expect(Buffer.compare(readAll('j/result.zip'), Buffer.from(archive))).toBe(0);
    });

    it('leaves a target holding a newer version alone, with its staged object', async () => {
      await data.put('j/.attempts/1/result.zip', bytes('staged'), v(10, 'ex-1'));
      await data.put('j/result.zip', bytes('newer'), v(30, 'client-a'));
      const move = { from: 'j/.attempts/1/result.zip', to: 'j/result.zip', size: 6, digest: sha(bytes('staged')) };
      expect(await data.move([move], v(20, 'ex-1'))).toEqual([{ to: 'j/result.zip', outcome: 'stale' }]);
      expect(text(data.get('j/result.zip')?.bytes)).toBe('newer');
      expect(text(data.get('j/.attempts/1/result.zip')?.bytes)).toBe('staged');
    });

    it('refuses an upload whose digest, size or order is wrong, and one over the limit, keeping nothing', async () => {
      const object = big(CHUNK_BYTES + 10);
      const [a, b] = [object.subarray(0, CHUNK_BYTES), object.subarray(CHUNK_BYTES)];
      await data.write('u2', 'x', 0, a);
      await expect(data.write('u2', 'x', 1, b, { size: object.byteLength, digest: sha(big(5)), version: v(1) })).rejects.toThrow(/SHA-256/);
      await data.write('u3', 'x', 0, a);
      await expect(data.write('u3', 'x', 1, b, { size: 1, digest: sha(object), version: v(1) })).rejects.toThrow(/announced 1 bytes/);
      await data.write('u4', 'x', 0, a);
      await expect(data.write('u4', 'x', 2, b)).rejects.toMatchObject({ code: 'upload_out_of_order' });
      await expect(data.write('never-started', 'x', 3, b)).rejects.toMatchObject({ code: 'upload_unknown' });
      for (let i = 0; i < 8; i++) await data.write('u5', 'y', i, a);
      await expect(data.write('u5', 'y', 8, a)).rejects.toMatchObject({ code: 'object_too_large' });
      expect(data.get('x')).toBeUndefined();
      await store.durable();
      // Only u4's first chunk is still held: its upload stays open until it expires.
      expect([...store.table('data_chunks').getKeys()].length).toBe(1);
      // A restart drops uploads that were cut short.
      await reopen();
      await new Promise((r) => setTimeout(r, 50));
      expect([...store.table('data_chunks').getKeys()].length).toBe(0);
    });

    it('stores each series record exactly once, in sequence order, whatever order appends arrive in', async () => {
      const [r] = await data.append([{ name: 'field/p1/level', records: recs(5, 10) }], v(1));
      expect(r).toMatchObject({ outcome: 'appended', stored: 5, duplicate: 0 });
      await data.append([{ name: 'field/p1/level', records: recs(0, 5) }], v(2));
      const again = await data.append([{ name: 'field/p1/level', records: recs(3, 12) }], v(3));
      expect(again[0]).toMatchObject({ stored: 2, duplicate: 7 });
      expect(seqs('field/p1/level')).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      expect(data.read('field/p1/level', 0, CHUNK_BYTES)).toMatchObject({ series: true, size: readAll('field/p1/level').byteLength });
      // Read a few records at a time, on from where the last piece ended.
      const piece = data.read('field/p1/level', 0, 25)!;
      expect(piece.next).toBe(2);
      expect(await data.put('field/p1/level', bytes('replaced'), v(0))).toBe('stale');
    });

    it('stores a record once when one append repeats it or goes back, past the highest stored so far', async () => {
      await data.append([{ name: 'field/p2/level', records: recs(0, 3) }], v(1));
      // 5 twice, then 4 after 6: records past the end, not in rising order.
      const mixed = [...recs(5, 6), ...recs(5, 7), ...recs(4, 5), ...recs(6, 7)];
      const [r] = await data.append([{ name: 'field/p2/level', records: mixed }], v(2));
      expect(r).toMatchObject({ stored: 3, duplicate: 2 });
      expect(seqs('field/p2/level')).toEqual([0, 1, 2, 4, 5, 6]);
      expect(r!.size).toBe(readAll('field/p2/level').byteLength);
    });

    it('applies keep-last-N and maximum age as the writer asks, counting what falls outside', async () => {
      const [r] = await data.append([{ name: 's/keep', records: recs(0, 100), keep_last: 10 }], v(1));
      expect(r).toMatchObject({ stored: 10, outside_retention: 90 });
      expect(seqs('s/keep')).toEqual([90, 91, 92, 93, 94, 95, 96, 97, 98, 99]);
      await data.append([{ name: 's/keep', records: recs(100, 103), keep_last: 10 }], v(2));
      expect(seqs('s/keep')).toEqual([93, 94, 95, 96, 97, 98, 99, 100, 101, 102]);
      // Late records that retention already dropped stay dropped.
      const [late] = await data.append([{ name: 's/keep', records: recs(50, 52), keep_last: 10 }], v(3));
      expect(late).toMatchObject({ stored: 0, outside_retention: 2 });
      await data.append([{ name: 's/age', records: recs(0, 20) }], v(1));
      const [aged] = await data.append([{ name: 's/age', records: recs(20, 22), before_t: 1_015 }], v(2));
      expect(aged?.stored).toBe(2);
      expect(seqs('s/age')).toEqual([15, 16, 17, 18, 19, 20, 21]);
      // A trim alone (no records) applies the age limit as time passes.
      await data.append([{ name: 's/age', records: [], before_t: 1_020 }], v(3));
      expect(seqs('s/age')).toEqual([20, 21]);
      expect(data.list('s', 10).items.find((i) => i.name === 's/age')?.size).toBe(readAll('s/age').byteLength);
      await data.put('plain', bytes('x'), v(1));
      expect((await data.append([{ name: 'plain', records: recs(0, 1) }], v(2)))[0]).toMatchObject({ outcome: 'not_series' });
      expect(await data.delete('s/keep', v(10))).toBe(true);
      expect([...store.table('data_rows').getKeys()].length).toBe(2);
    });
  });
});
