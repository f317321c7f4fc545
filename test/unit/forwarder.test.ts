import { encode } from 'cbor-x';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Forwarder } from '../../firmware-bridge/forwarder.js';
import { ReadingBuffer } from '../../firmware-bridge/reading-buffer.js';
import { NamedDataStore, type Stamp } from '../../src/datastore/named-data.js';
import { DEFAULT_LIMITS, MAX_APPEND_RECORDS, MAX_APPEND_SERIES, decode, encode as encodeEnvelope, type BodyOf } from '../../src/protocol/index.js';
import { NodeStore } from '../../src/store/index.js';
import { removeDir, tempDir } from '../helpers/processes.js';

type Series = BodyOf<'data_append'>['series'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const stamp = (): Stamp => ({ at: { wall: Date.now(), logical: 0 }, writer: 'broker-1', owner: 'bridge-1', replace: false });

/**
 * The forwarder between a real LMDB buffer and a real datastore (both on LMDB in temp dirs); only the
 * network between them is a function here, one that can be slow, fail before storing, or store and lose
 * the reply.
 */
describe('bridge forwarder', () => {
  let dirs: string[];
  let bridgeStore: NodeStore;
  let dataStore: NodeStore;
  let buffer: ReadingBuffer;
  let data: NamedDataStore;

  beforeEach(() => {
    dirs = [tempDir(), tempDir()];
    bridgeStore = NodeStore.open({ dir: dirs[0]!, nodeId: 'bridge-1' });
    dataStore = NodeStore.open({ dir: dirs[1]!, nodeId: 'ds-1' });
    buffer = new ReadingBuffer(bridgeStore, { maxBytes: 1 << 30, maxAgeMs: 3_600_000 });
    data = new NamedDataStore(dataStore, 1 << 20);
  });
  afterEach(async () => {
    await bridgeStore.close();
    await dataStore.close();
    for (const d of dirs) removeDir(d);
  });

  const add = (name: string, v: number) => buffer.add(name, Date.now(), (seq) => new TextEncoder().encode(`${JSON.stringify({ seq, v })}\n`), {});
  const stored = (name: string): Array<{ seq: number; v: number }> => {
    const bytes = data.get(name)?.bytes;
    if (bytes === undefined) return [];
    return new TextDecoder().decode(bytes).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { seq: number; v: number });
  };
  const until = async (done: () => boolean, ms = 20_000) => {
    const deadline = Date.now() + ms;
    while (!done()) {
      if (Date.now() > deadline) throw new Error('timed out');
      await sleep(10);
    }
  };

  it('drains a backlog with several appends in flight, each within its byte bound, every reading once and in order, though appends fail and replies are lost', async () => {
    const SERIES = 40;
    const PER = 750;
    for (let i = 0; i < PER; i++) for (let s = 0; s < SERIES; s++) add(`field/dev-${s}/level`, i);
    await bridgeStore.durable();
    let inFlight = 0;
    let maxInFlight = 0;
    let largest = 0;
    let calls = 0;
    let lostReplies = 0;
    const append = async (series: Series) => {
      const n = calls++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      largest = Math.max(largest, encode(series).byteLength);
      try {
        await sleep(1 + (n % 7) * 3);
        // Every 5th append fails before the platform stored anything; every 7th is stored, and its
        // reply lost: sent again, its records must count as duplicates, never be stored twice.
        if (n % 5 === 4) throw new Error('broker unreachable');
        const results = await data.append(series, stamp());
        await dataStore.durable();
        if (n % 7 === 6) {
          lostReplies++;
          throw new Error('reply lost');
        }
        return results.map((r) => ({ ...r, store: 'ds-1' }));
      } finally {
        inFlight--;
      }
    };
    const forwarder = new Forwarder(buffer, append, () => true, { batchRecords: 100_000, batchBytes: 64 * 1024, inFlight: 4, drainRate: 10_000_000 });
    forwarder.platformUp();
    await until(() => buffer.records === 0);
    forwarder.stop();
    expect(maxInFlight).toBe(4);
    // The estimate may be a little off either way, but never by a record's worth per record.
    expect(largest).toBeLessThanOrEqual(64 * 1024 * 1.1);
    expect(lostReplies).toBeGreaterThan(0);
    expect(forwarder.stats.failures).toBeGreaterThan(0);
    for (let s = 0; s < SERIES; s++) {
      const lines = stored(`field/dev-${s}/level`);
      expect(lines.map((l) => l.seq)).toEqual(Array.from({ length: PER }, (_, i) => i));
      expect(lines.map((l) => l.v)).toEqual(Array.from({ length: PER }, (_, i) => i));
    }
    // What a lost reply had stored comes back as duplicates when sent again: each reading counted once.
    expect(forwarder.stats.duplicate).toBeGreaterThan(0);
    expect(forwarder.stats.stored + forwarder.stats.duplicate).toBe(SERIES * PER);
  });

  it('sends a live reading before a backlog the drain rate holds back', async () => {
    for (let i = 0; i < 5_000; i++) add('field/old/level', i);
    const appended: Series[] = [];
    const append = async (series: Series) => {
      appended.push(series);
      await sleep(2);
      return (await data.append(series, stamp())).map((r) => ({ ...r, store: 'ds-1' }));
    };
    const forwarder = new Forwarder(buffer, append, () => true, { batchRecords: 100_000, batchBytes: 512 * 1024, inFlight: 4, drainRate: 500 });
    forwarder.platformUp();
    add('field/new/level', 1);
    forwarder.nudge();
    await until(() => stored('field/new/level').length === 1, 2_000);
    // Half a second at 500/s (and a burst of at most a second's worth): most of the backlog still waits.
    expect(forwarder.backlog).toBeGreaterThan(4_000);
    expect(appended.some((a) => a.some((s) => s.name === 'field/new/level'))).toBe(true);
    forwarder.stop();
  });

  it('sends again, when the platform comes back, what was in flight into the outage, without waiting for those appends to time out', async () => {
    for (let i = 0; i < 3_000; i++) add(`field/dev-${i % 3}/level`, i);
    let calls = 0;
    const late: Array<() => void> = [];
    const append = async (series: Series) => {
      // The first appends went to a broker that was already gone: no answer for a long time, then one
      // (it had stored them after all).
      if (calls++ < 2) {
        await new Promise<void>((resolve) => late.push(resolve));
        return (await data.append(series, stamp())).map((r) => ({ ...r, store: 'ds-1' }));
      }
      return (await data.append(series, stamp())).map((r) => ({ ...r, store: 'ds-1' }));
    };
    const forwarder = new Forwarder(buffer, append, () => true, { batchRecords: 500, batchBytes: 1 << 20, inFlight: 2, drainRate: 10_000_000 });
    forwarder.platformUp();
    await until(() => late.length === 2);
    await sleep(50);
    expect(buffer.records).toBe(3_000);
    forwarder.platformUp();
    await until(() => buffer.records === 0, 5_000);
    for (const release of late) release();
    await sleep(100);
    expect(forwarder.sendingNow).toBe(0);
    for (let d = 0; d < 3; d++) expect(stored(`field/dev-${d}/level`).map((l) => l.v)).toEqual(Array.from({ length: 1_000 }, (_, i) => i * 3 + d));
    expect(forwarder.stats.stored).toBe(3_000);
    expect(forwarder.stats.duplicate).toBe(1_000);
    expect(forwarder.stats.drained).toBe(3_000);
    forwarder.stop();
  });

  it('keeps every append within the protocol: at most 1,000 series and 20,000 records, whatever the byte bound allows', async () => {
    for (let s = 0; s < 2_500; s++) add(`field/many-${s}/level`, s);
    for (let i = 0; i < 25_000; i++) add('field/one/level', i);
    const appended: Series[] = [];
    const append = async (series: Series) => {
      appended.push(series);
      return (await data.append(series, stamp())).map((r) => ({ ...r, store: 'ds-1' }));
    };
    const forwarder = new Forwarder(buffer, append, () => true, { batchRecords: 20_000, batchBytes: 64 << 20, inFlight: 2, drainRate: 10_000_000 });
    forwarder.platformUp();
    await until(() => buffer.records === 0, 60_000);
    forwarder.stop();
    for (const series of appended) {
      const msg = { v: 1, kind: 'data_append', id: '1.0', from: 'bridge-1', role: 'bridge', inc: 1, vc: {}, hlc: { wall: Date.now(), logical: 0 }, body: { series } } as const;
      const decoded = decode(encodeEnvelope(msg as unknown as Parameters<typeof encodeEnvelope>[0]), { ...DEFAULT_LIMITS, maxMessageBytes: 64 << 20 });
      expect(decoded.ok ? 'ok' : decoded.error.message).toBe('ok');
      expect(series.length).toBeLessThanOrEqual(MAX_APPEND_SERIES);
      expect(series.reduce((n, s) => n + s.records.length, 0)).toBeLessThanOrEqual(MAX_APPEND_RECORDS);
    }
    expect(forwarder.stats.stored).toBe(27_500);
    expect(forwarder.stats.failures).toBe(0);
  });

  it('keeps what was in flight buffered when the bridge stops before the answers: a restart sends it again and the datastore stores it once', async () => {
    for (let i = 0; i < 2_000; i++) add('field/pump/level', i);
    await bridgeStore.durable();
    const held: Array<() => void> = [];
    // The platform stores each append but the answers never come back before the "crash".
    const append = async (series: Series) => {
      const results = (await data.append(series, stamp())).map((r) => ({ ...r, store: 'ds-1' }));
      await new Promise<void>((resolve) => held.push(resolve));
      return results;
    };
    const forwarder = new Forwarder(buffer, append, () => true, { batchRecords: 300, batchBytes: 1 << 20, inFlight: 3, drainRate: 10_000_000 });
    forwarder.platformUp();
    await until(() => held.length === 3);
    expect(stored('field/pump/level')).toHaveLength(900);
    forwarder.stop();
    for (const release of held) release();
    await bridgeStore.close();
    // The restart: a new buffer on the same LMDB still holds every reading.
    bridgeStore = NodeStore.open({ dir: dirs[0]!, nodeId: 'bridge-1' });
    buffer = new ReadingBuffer(bridgeStore, { maxBytes: 1 << 30, maxAgeMs: 3_600_000 });
    expect(buffer.records).toBe(2_000);
    const again = new Forwarder(buffer, async (series) => (await data.append(series, stamp())).map((r) => ({ ...r, store: 'ds-1' })), () => true, { batchRecords: 300, batchBytes: 1 << 20, inFlight: 3, drainRate: 10_000_000 });
    again.platformUp();
    await until(() => buffer.records === 0);
    again.stop();
    expect(again.stats.duplicate).toBe(900);
    expect(again.stats.stored).toBe(1_100);
    expect(stored('field/pump/level').map((l) => l.v)).toEqual(Array.from({ length: 2_000 }, (_, i) => i));
  });
});

/** The buffer's memory of its newest readings and LMDB behind it must read as one queue. */
describe('bridge reading buffer', () => {
  it('takes readings in key order across what only LMDB holds, what is not committed yet and what memory holds, and drops from either end', async () => {
    const dir = tempDir();
    let store = NodeStore.open({ dir, nodeId: 'bridge-1' });
    try {
      // Room in memory for about 40 readings of this size.
      let buffer = new ReadingBuffer(store, { maxBytes: 1 << 30, maxAgeMs: 3_600_000, memoryBytes: 40 * 80 });
      const line = (v: number) => (seq: number) => new TextEncoder().encode(`${JSON.stringify({ seq, v, pad: 'x'.repeat(8) })}\n`);
      for (let i = 0; i < 300; i++) buffer.add(`s/${i % 3}`, Date.now(), line(i), {});
      const values = (taken: ReturnType<ReadingBuffer['take']>) => taken.map((t) => JSON.parse(new TextDecoder().decode(t.value.l)).v as number);
      // Before any commit, and after.
      expect(values(buffer.take(0, buffer.tail, 1_000, new Set()))).toEqual(Array.from({ length: 300 }, (_, i) => i));
      await store.durable();
      expect(values(buffer.take(250, buffer.tail, 1_000, new Set([255, 256])))).toEqual(Array.from({ length: 50 }, (_, i) => 250 + i).filter((v) => v !== 255 && v !== 256));
      expect(values(buffer.take(10, 20, 1_000, new Set()))).toEqual(Array.from({ length: 10 }, (_, i) => 10 + i));
      // Removed on both sides of the memory boundary: never taken again, counted once.
      expect(buffer.remove([5, 6, 7, 290, 291, 291]).sort((a, b) => a - b)).toEqual([5, 6, 7, 290, 291]);
      expect(buffer.records).toBe(295);
      const all = values(buffer.take(0, buffer.tail, 1_000, new Set()));
      expect(all).toHaveLength(295);
      expect(all.includes(6) || all.includes(291)).toBe(false);
      // A restart reads everything back from LMDB.
      await store.close();
      store = NodeStore.open({ dir, nodeId: 'bridge-1' });
      buffer = new ReadingBuffer(store, { maxBytes: 1 << 30, maxAgeMs: 3_600_000, memoryBytes: 40 * 80 });
      expect(values(buffer.take(0, buffer.tail, 1_000, new Set()))).toEqual(all);
    } finally {
      await store.close();
      removeDir(dir);
    }
  });
});
