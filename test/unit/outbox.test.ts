import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import type { Logger } from '../../src/log/index.js';
import { NodeStore } from '../../src/store/index.js';
import { Counters } from '../../src/transport/counters.js';
import { Deduplicator } from '../../src/transport/dedup.js';
import { DurableOutbox, type OutboxEntry } from '../../src/transport/outbox.js';

// LMDB gives back Buffers for stored Uint8Arrays; only the bytes matter.
expect.addEqualityTesters([
  function bytesEqual(a: unknown, b: unknown): boolean | undefined {
    if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array)) return undefined;
    return a.byteLength === b.byteLength && a.every((x, i) => x === b[i]);
  },
]);

const TIMING = { retryInitialMs: 100, retryMaxMs: 1_000 };

const entry = (id: string, to = 'b1'): OutboxEntry => ({
  id,
  to,
  topic: `ucp/c1/inbox/${to}`,
  kind: 'notice',
  payload: new Uint8Array([0xa1, 0x61, 0x78, id.length]),
  createdAt: 1_718_000_000_000,
});

let dir: string;
let store: NodeStore;
let t: number;
const now = (): number => t;

function reopen(): Promise<NodeStore> {
  return store.close().then(() => {
    store = NodeStore.open({ dir, nodeId: 'n1' });
    return store;
  });
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ucp-'));
  store = NodeStore.open({ dir, nodeId: 'n1' });
  t = 10_000;
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  vi.restoreAllMocks();
});

describe('DurableOutbox', () => {
  const open = (): DurableOutbox => new DurableOutbox(store.table<OutboxEntry>('outbox'), TIMING, now);
  const ids = (entries: OutboxEntry[]): string[] => entries.map((e) => e.id).sort();

  it('holds a new message back for the first backoff, since the caller has just sent it', async () => {
    const outbox = open();
    await outbox.add(entry('1.1'));
    expect(outbox.size).toBe(1);
    expect(outbox.due()).toEqual([]);
    t += TIMING.retryInitialMs * 0.8 - 1;
    expect(outbox.due()).toEqual([]);
    t = 10_000 + TIMING.retryInitialMs * 1.2;
    expect(outbox.due()).toEqual([entry('1.1')]);
  });

  it('doubles the backoff after every retry up to retryMaxMs, within ±20% jitter', async () => {
    const outbox = open();
    await outbox.add(entry('1.1'));
    let sentAt = t;
    const expected = [100, 200, 400, 800, 1_000, 1_000, 1_000];
    for (const backoff of expected) {
      // Just before the earliest jittered deadline: not yet due.
      t = sentAt + backoff * 0.8 - 0.01;
      expect(outbox.due(), `backoff ${backoff} too short`).toEqual([]);
      // At the latest jittered deadline: due, and rescheduled from now.
      t = sentAt + backoff * 1.2;
      expect(ids(outbox.due()), `backoff ${backoff} too long`).toEqual(['1.1']);
      sentAt = t;
    }
  });

  it('spreads retries with jitter instead of retrying in lockstep', async () => {
    const outbox = open();
    for (let i = 0; i < 20; i++) await outbox.add(entry(`1.${i}`));
    // Walk time forward finely and record when each entry first comes due.
    const dueAt = new Map<string, number>();
    for (t = 10_000; t <= 10_000 + 120; t += 1) for (const e of outbox.due()) if (!dueAt.has(e.id)) dueAt.set(e.id, t);
    expect(dueAt.size).toBe(20);
    expect(new Set(dueAt.values()).size).toBeGreaterThan(1);
  });

  it('expedite(to) makes only that receiver’s messages due, with the backoff reset', async () => {
    const outbox = open();
    await outbox.add(entry('1.1', 'b1'));
    await outbox.add(entry('1.2', 'b2'));
    await outbox.add(entry('1.3', 'b1'));
    // Push b1's entries up the backoff ladder first.
    for (const step of [120, 240, 480]) {
      t += step;
      outbox.due();
    }
    t += 1;
    expect(outbox.due()).toEqual([]);
    outbox.expedite('b1');
    expect(ids(outbox.due())).toEqual(['1.1', '1.3']);
    // Reset means the next retry is the initial backoff again, not 16× it.
    t += TIMING.retryInitialMs * 1.2;
    expect(ids(outbox.due())).toEqual(['1.1', '1.3']);
  });

  it('holds back the messages of receivers it is told to, and says when the next of the others is due', async () => {
    const outbox = open();
    await outbox.add(entry('1.1', 'down'));
    t += 50;
    await outbox.add(entry('1.2', 'up'));
    const held = (to: string): boolean => to === 'down';
    expect(outbox.nextDueAt()).toBeGreaterThanOrEqual(10_000 + TIMING.retryInitialMs * 0.8);
    const next = outbox.nextDueAt(held)!;
    expect(next).toBeGreaterThanOrEqual(10_050 + TIMING.retryInitialMs * 0.8);
    expect(next).toBeLessThanOrEqual(10_050 + TIMING.retryInitialMs * 1.2);
    t = next;
    expect(ids(outbox.due(held))).toEqual(['1.2']);
    // The held one stays where it was: due, but not sent, and not pushed up the backoff ladder.
    expect(ids(outbox.due(() => true))).toEqual([]);
    expect(outbox.nextDueAt((to) => to === 'up')).toBeLessThanOrEqual(t);
    expect(outbox.nextDueAt(() => true)).toBeUndefined();
    expect(ids(outbox.due())).toEqual(['1.1']);
  });

  it('expedite() without a receiver makes everything due', async () => {
    const outbox = open();
    await outbox.add(entry('1.1', 'b1'));
    await outbox.add(entry('1.2', 'b2'));
    outbox.expedite();
    expect(ids(outbox.due())).toEqual(['1.1', '1.2']);
  });

  it('acknowledge removes the message from memory and disk and resolves delivered()', async () => {
    const table = store.table<OutboxEntry>('outbox');
    const outbox = new DurableOutbox(table, TIMING, now);
    await outbox.add(entry('1.1'));
    await outbox.add(entry('1.2'));
    expect(table.get('1.1')).toEqual(entry('1.1'));

    let delivered = false;
    const waiting = outbox.delivered('1.1').then(() => {
      delivered = true;
    });
    await Promise.resolve();
    expect(delivered).toBe(false);

    // Only the receiver can acknowledge: an ack from anyone else is ignored.
    expect(outbox.acknowledge('1.1', 'intruder')).toBe(false);
    expect(outbox.size).toBe(2);
    expect(outbox.acknowledge('1.1', 'b1')).toBe(true);
    await waiting;
    expect(delivered).toBe(true);
    expect(outbox.size).toBe(1);
    expect(ids(outbox.entries())).toEqual(['1.2']);
    t += 10_000;
    expect(ids(outbox.due())).toEqual(['1.2']);

    // The removal needs no commit of its own: it goes with the next message stored.
    await store.durable();
    expect(table.get('1.1')).toEqual(entry('1.1'));
    await outbox.add(entry('1.3'));
    expect(table.get('1.1')).toBeUndefined();
    expect(table.get('1.2')).toEqual(entry('1.2'));
    // A repeated ack (QoS 1 redelivery) is recognised as such.
    expect(outbox.acknowledge('1.1', 'b1')).toBe(false);
    await expect(outbox.delivered('1.1')).resolves.toBeUndefined();
  });

  it('an acknowledged message leaves the disk within the removal delay when nothing else is written', async () => {
    const table = store.table<OutboxEntry>('outbox');
    const outbox = new DurableOutbox(table, TIMING, now, 30);
    await outbox.add(entry('1.1'));
    outbox.acknowledge('1.1', 'b1');
    await new Promise((r) => setTimeout(r, 60));
    await store.durable();
    expect(table.get('1.1')).toBeUndefined();
    // Reopened, the outbox has nothing left to send.
    expect(new DurableOutbox(table, TIMING, now).size).toBe(0);
  });

  it('resolves every waiter of a message', async () => {
    const outbox = open();
    await outbox.add(entry('1.1'));
    const waiters = [outbox.delivered('1.1'), outbox.delivered('1.1')];
    outbox.acknowledge('1.1', 'b1');
    await expect(Promise.all(waiters)).resolves.toHaveLength(2);
  });

  it('withdraw drops only the given kind to the given receiver, from memory and disk, and rejects its waiters', async () => {
    const outbox = open();
    const assign = (id: string, to: string): OutboxEntry => ({ ...entry(id, to), kind: 'job_assign' });
    await outbox.add(assign('1.1', 'ex-1'));
    await outbox.add(assign('1.2', 'ex-2'));
    await outbox.add(entry('1.3', 'ex-1'));
    const waiting = outbox.delivered('1.1');
    expect(outbox.withdraw('ex-1', 'job_assign', new Error('lost'))).toBe(1);
    await expect(waiting).rejects.toThrow('lost');
    expect(ids(outbox.entries())).toEqual(['1.2', '1.3']);
    await store.durable();
    await reopen();
    expect(ids(open().entries())).toEqual(['1.2', '1.3']);
  });

  it('reloads pending messages after a restart and makes them due at once', async () => {
    const first = open();
    await first.add(entry('1.1', 'b1'));
    await first.add(entry('1.2', 'b2'));
    await first.add(entry('1.3', 'b1'));
    first.acknowledge('1.2', 'b2');
    // As a clean stop does; after a crash before it, 1.2 would only be sent, and acknowledged, once more.
    first.removeAcknowledged();
    await store.durable();

    await reopen();
    const second = open();
    expect(second.size).toBe(2);
    expect(ids(second.entries())).toEqual(['1.1', '1.3']);
    expect(second.entries().find((e) => e.id === '1.1')).toEqual(entry('1.1', 'b1'));
    // The receiver may have been waiting for the whole downtime: no backoff before the first retry.
    expect(ids(second.due())).toEqual(['1.1', '1.3']);
    expect(second.due()).toEqual([]);
  });
});

describe('Deduplicator', () => {
  const key = Deduplicator.key;
  /** Checks, then marks handled, the way the link treats a message it has just handled. */
  const handle = (dedup: Deduplicator, from: string, id: string): boolean => {
    const before = dedup.seen(key(from, id), false);
    dedup.handled(key(from, id));
    return before;
  };

  it('remembers at least a window of recent ids, and forgets ids older than two windows', () => {
    const dedup = new Deduplicator(3);
    for (const id of ['1', '2', '3', '4', '5']) expect(handle(dedup, 'a', id)).toBe(false);
    // The last three are always remembered.
    for (const id of ['3', '4', '5']) expect(dedup.seen(key('a', id), false)).toBe(true);
    for (const id of ['6', '7', '8', '9']) handle(dedup, 'a', id);
    // Six ids later, '1' to '3' are gone.
    for (const id of ['1', '2', '3']) expect(dedup.seen(key('a', id), false)).toBe(false);
    for (const id of ['7', '8', '9']) expect(dedup.seen(key('a', id), false)).toBe(true);
  });

  it('keys by sender as well as id, since ids are only unique per sender', () => {
    const dedup = new Deduplicator(10);
    expect(handle(dedup, 'a', '1.1')).toBe(false);
    expect(handle(dedup, 'b', '1.1')).toBe(false);
    expect(handle(dedup, 'a', '1.1')).toBe(true);
  });

  it('seen() alone does not mark a message handled, so a failed handling is retried', () => {
    const dedup = new Deduplicator(10);
    expect(dedup.seen(key('a', '1'), false)).toBe(false);
    expect(dedup.seen(key('a', '1'), false)).toBe(false);
  });

  it('recognises a persisted durable id after a restart', async () => {
    const before = new Deduplicator(10, store.table<number>('dedup'));
    expect(before.seen(key('a', '1.1'), true)).toBe(false);
    await before.persist(key('a', '1.1'), 5_000);
    expect(before.seen(key('a', '1.2'), true)).toBe(false); // seen but never persisted: not handled

    await reopen();
    const after = new Deduplicator(10, store.table<number>('dedup'));
    expect(after.seen(key('a', '1.1'), true)).toBe(true);
    expect(after.seen(key('a', '1.2'), true)).toBe(false);
    expect(after.seen(key('b', '1.1'), true)).toBe(false);
  });

  it('consults the disk only for durable messages', async () => {
    const before = new Deduplicator(10, store.table<number>('dedup'));
    await before.persist(key('a', '1.1'), 5_000);
    const after = new Deduplicator(10, store.table<number>('dedup'));
    expect(after.seen(key('a', '1.1'), false)).toBe(false);
  });

  it('prune() drops only ids persisted before the cutoff', async () => {
    const table = store.table<number>('dedup');
    const dedup = new Deduplicator(10, table);
    await dedup.persist(key('a', 'old'), 100);
    await dedup.persist(key('a', 'edge'), 200);
    await dedup.persist(key('a', 'new'), 300);
    expect(await dedup.prune(200)).toBe(1);

    await reopen();
    // A fresh instance has an empty memory window, so only the disk answers.
    const fresh = new Deduplicator(10, store.table<number>('dedup'));
    expect(fresh.seen(key('a', 'old'), true)).toBe(false);
    expect(fresh.seen(key('a', 'edge'), true)).toBe(true);
    expect(fresh.seen(key('a', 'new'), true)).toBe(true);
    expect(await fresh.prune(200)).toBe(0);
  });

  it('prune() without a table has nothing to do', async () => {
    await expect(new Deduplicator(10).prune(Number.MAX_SAFE_INTEGER)).resolves.toBe(0);
  });
});

describe('Counters.reject', () => {
  const fakeLogger = () => {
    const warn = vi.fn();
    return { warn, log: { warn } as unknown as Logger };
  };

  it('logs the first rejection per (counter, source) and only counts the rest', () => {
    const { warn, log } = fakeLogger();
    const counters = new Counters();
    counters.reject(log, 'rx_dropped_bad_body', 'ucp/c1/inbox/n1', 'notice body.text: too long');
    counters.reject(log, 'rx_dropped_bad_body', 'ucp/c1/inbox/n1', 'notice body.text: too long');
    counters.reject(log, 'rx_dropped_bad_body', 'ucp/c1/inbox/n1', 'a different reason');
    counters.reject(log, 'rx_dropped_bad_body', 'ucp/c1/inbox/n2', 'x');
    counters.reject(log, 'rx_dropped_too_large', 'ucp/c1/inbox/n1', 'y');

    expect(warn).toHaveBeenCalledTimes(3);
    expect(warn.mock.calls.map((c) => [(c[0] as { counter: string }).counter, (c[0] as { source: string }).source])).toEqual([
      ['rx_dropped_bad_body', 'ucp/c1/inbox/n1'],
      ['rx_dropped_bad_body', 'ucp/c1/inbox/n2'],
      ['rx_dropped_too_large', 'ucp/c1/inbox/n1'],
    ]);
    expect(warn.mock.calls[0]?.[0]).toMatchObject({ reason: 'notice body.text: too long' });
    expect(warn.mock.calls[0]?.[1]).toMatch(/rx_dropped_bad_body/);
    expect(counters.get('rx_dropped_bad_body')).toBe(4);
    expect(counters.get('rx_dropped_too_large')).toBe(1);
    expect(counters.snapshot()).toEqual({ rx_dropped_bad_body: 4, rx_dropped_too_large: 1 });
  });

  it('stops logging new sources after 1000 distinct pairs, so a device spraying ids cannot flood the log', () => {
    const { warn, log } = fakeLogger();
    const counters = new Counters();
    for (let i = 0; i < 1_200; i++) counters.reject(log, 'rx_dropped_malformed_cbor', `src-${i}`, 'junk');
    expect(warn).toHaveBeenCalledTimes(1_000);
    expect(counters.get('rx_dropped_malformed_cbor')).toBe(1_200);
  });
});
