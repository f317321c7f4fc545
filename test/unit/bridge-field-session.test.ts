import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { FieldAcks } from '../../firmware-bridge/field-acks.js';
import { deliveryDigest, FieldDeliveries, REDELIVERY_WINDOW } from '../../firmware-bridge/field-deliveries.js';
import { planSubscriptions } from '../../firmware-bridge/field-subscriptions.js';
import { NodeStore } from '../../src/store/index.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('field session subscriptions', () => {
  it('subscribes everything without a session, only what changed with one', () => {
    expect(planSubscriptions(false, ['a/+', 'b/#'], ['a/+', 'c/+'])).toEqual({ subscribe: ['a/+', 'c/+'], unsubscribe: [] });
    expect(planSubscriptions(true, undefined, ['a/+'])).toEqual({ subscribe: ['a/+'], unsubscribe: [] });
    expect(planSubscriptions(true, ['a/+', 'b/#'], ['a/+', 'c/+'])).toEqual({ subscribe: ['c/+'], unsubscribe: ['b/#'] });
    expect(planSubscriptions(true, ['a/+'], ['a/+'])).toEqual({ subscribe: [], unsubscribe: [] });
  });
});

describe('field deliveries', () => {
  const open = (dir: string) => NodeStore.open({ dir, nodeId: 'bridge-1' });

  it('takes a DUP message for a redelivery only if its identifier, topic and payload match a recent record, also after a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ucp-deliveries-'));
    dirs.push(dir);
    let store = open(dir);
    let deliveries = new FieldDeliveries(store);
    const d = deliveryDigest('meters/m1/reading', Buffer.from('21.5'));
    expect(deliveries.redelivered(7, true, d)).toBe(false);
    deliveries.record(7, d);
    // Not marked DUP: a new message that reuses the identifier.
    expect(deliveries.redelivered(7, false, d)).toBe(false);
    expect(deliveries.redelivered(7, true, d)).toBe(true);
    expect(deliveries.redelivered(8, true, d)).toBe(false);
    expect(deliveries.redelivered(7, true, deliveryDigest('meters/m2/reading', Buffer.from('21.5')))).toBe(false);
    expect(deliveries.redelivered(7, true, deliveryDigest('meters/m1/reading', Buffer.from('21.6')))).toBe(false);
    await store.durable();
    await store.close();

    store = open(dir);
    deliveries = new FieldDeliveries(store);
    expect(deliveries.redelivered(7, true, d)).toBe(true);
    // A whole window of messages later the record is too old to be one the broker still waits on.
    const other = deliveryDigest('x', Buffer.from('y'));
    for (let i = 0; i < REDELIVERY_WINDOW; i++) deliveries.record(100 + (i % 1_000), other);
    expect(deliveries.redelivered(7, true, d)).toBe(false);
    await store.close();
  });
});

describe('field acknowledgements', () => {
  const pubacks = (bytes: Buffer): number[] => {
    const ids: number[] = [];
    for (let i = 0; i < bytes.length; i += 4) {
      expect(bytes.subarray(i, i + 2)).toEqual(Buffer.from([0x40, 0x02]));
      ids.push(bytes.readUInt16BE(i + 2));
    }
    return ids;
  };

  it('sends the PUBACKs of one turn together, in order, only once the commit is done, and none on a replaced socket', async () => {
    let commit!: () => void;
    const durable = () => new Promise<void>((resolve) => (commit = resolve));
    let socket = new PassThrough();
    const acks = new FieldAcks(durable, () => socket, () => {});
    const first = socket;
    const written: Buffer[] = [];
    first.on('data', (b: Buffer) => written.push(b));
    acks.hold(first, 3);
    acks.hold(first, 1);
    acks.hold(first, 2);
    await new Promise((r) => setImmediate(r));
    expect(written).toEqual([]);
    commit();
    await new Promise((r) => setImmediate(r));
    expect(written.map(pubacks)).toEqual([[3, 1, 2]]);

    acks.hold(first, 4);
    await new Promise((r) => setImmediate(r));
    // The connection is replaced before the commit: the broker sends message 4 again on the new one.
    socket = new PassThrough();
    commit();
    await new Promise((r) => setImmediate(r));
    expect(written.length).toBe(1);
    expect(acks.sent).toBe(3);
    expect(acks.dropped).toBe(1);
  });

  it('sends nothing when the commit fails', async () => {
    const socket = new PassThrough();
    const errors: Error[] = [];
    const acks = new FieldAcks(() => Promise.reject(new Error('disk full')), () => socket, (err) => errors.push(err));
    const written: Buffer[] = [];
    socket.on('data', (b: Buffer) => written.push(b));
    acks.hold(socket, 9);
    await new Promise((r) => setTimeout(r, 10));
    expect(written).toEqual([]);
    expect(errors.map((e) => e.message)).toEqual(['disk full']);
  });
});
