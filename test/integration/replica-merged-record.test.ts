import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MetadataReplica } from '../../src/broker/metadata-replica.js';
import { encodedSize } from '../../src/protocol/index.js';
import { replicaOnDisk, syncedJob, useReplicaOnDisk, type ReplicaOnDisk } from '../helpers/replica.js';

/** One anti-entropy exchange: `asker` sends its version vector to `answerer` and applies the answer. */
async function exchange(asker: ReplicaOnDisk, answerer: ReplicaOnDisk): Promise<number> {
  return asker.replica.receive(await answerer.replica.changesFor(asker.replica.digest()), answerer.node.link.id);
}

function record(replica: MetadataReplica) {
  const job = replica.job('mr-1');
  return { result: job?.result, superseded: job?.superseded };
}

/**
 * Two brokers, cut off from each other, accept different results for one job. The merge keeps the one
 * accepted first and lists the other as superseded. That merged record must reach a third broker that
 * already holds the winning change, through the exchanges every broker makes, not only through a push it
 * might have missed.
 */
describe('a record merged from two acceptances', () => {
  const disks: ReplicaOnDisk[] = [];
  let west: ReplicaOnDisk;
  let east: ReplicaOnDisk;
  let third: ReplicaOnDisk;

  beforeAll(() => {
    for (const id of ['mr-west', 'mr-east', 'mr-third']) disks.push(replicaOnDisk('mr', id));
    [west, east, third] = disks as [ReplicaOnDisk, ReplicaOnDisk, ReplicaOnDisk];
  });

  afterAll(async () => {
    for (const d of disks) await d.close();
  });

  it('reaches a broker that already held the winning change, and every broker ends with the same record', async () => {
    // East accepted first (earlier HLC time, concurrent vector clocks); west accepted another attempt later.
    await east.replica.setJob(syncedJob('mr-1', { by: 'mr-east', executor: 'ex-east', at: 2_000 }));
    await west.replica.setJob(syncedJob('mr-1', { by: 'mr-west', executor: 'ex-west', at: 2_500 }));
    // The third broker hears only from the east before the partition heals.
    await exchange(third, east);
    expect(record(third.replica).superseded).toBeUndefined();
    // West learns the east's acceptance: it keeps the earlier one and lists its own as superseded.
    await exchange(west, east);
    const merged = record(west.replica);
    expect(merged.result).toMatchObject({ decided_by: 'mr-east', executor: 'ex-east' });
    expect(merged.superseded).toEqual([{ attempt: 1, executor: 'ex-west', decided_by: 'mr-west', decided_at: [2_500, 0] }]);
    // The third broker already holds the east's change: only the exchange with the west can tell it.
    await exchange(third, west);
    expect(record(third.replica)).toEqual(merged);
    // And the east, exchanging with either, ends the same.
    await exchange(east, third);
    await exchange(east, west);
    expect(record(east.replica)).toEqual(merged);
    // Settled: another round of exchanges changes nothing anywhere.
    let applied = 0;
    for (const a of disks) for (const b of disks) if (a !== b) applied += await exchange(a, b);
    expect(applied).toBe(0);
    for (const d of disks) expect(record(d.replica)).toEqual(merged);
  });
});

/**
 * A digest can arrive in the turn after a change was made and before LMDB committed it. The answer claims
 * versions up to what it covers: a change it counts must be in it, or the peer never asks for it again.
 */
describe('a digest answered right after a change', () => {
  const disk = useReplicaOnDisk('ma', 'ma-broker');

  it('sends every change it counts as covered', async () => {
    for (let i = 1; i <= 3; i++) {
      // Not awaited: the answer is asked for while the write is still on its way to the disk.
      void disk().replica.setName(`ma/out-${i}`, { store: 'ma-store', size: 3, at: [3_000 + i, 0], owner: 'ma-client' });
      const answer = await disk().replica.changesFor({});
      const covered = answer.versions['ma-broker'] ?? 0;
      expect(covered).toBe(i);
      expect(answer.changes.map((c) => c.seq)).toEqual(Array.from({ length: covered }, (_, k) => k + 1));
    }
  });
});

/**
 * A job's record can take much of a message (its spec alone may), so an answer cut at 500 changes could
 * be several times what a message may carry; the hub would refuse it, and the asker would ask again for
 * the same changes at every exchange.
 */
describe('an answer to a digest', () => {
  const disk = useReplicaOnDisk('mb', 'mb-broker');

  it('is cut by bytes as well as by count, each part fits in a message, and the parts hold every change', async () => {
    const env = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`VAR_${i}`, 'x'.repeat(4_000)]));
    const ids = ['mb-1', 'mb-2', 'mb-3'];
    for (const id of ids) {
      const job = syncedJob(id);
      await disk().replica.setJob({ ...job, spec: { ...job.spec, env } });
    }
    const limit = disk().node.link.limits.maxMessageBytes;
    let theirs: Record<string, number> = {};
    const received: string[] = [];
    for (let round = 0; round < 10; round++) {
      const answer = await disk().replica.changesFor(theirs);
      expect(encodedSize(answer)).toBeLessThan(limit);
      received.push(...answer.changes.map((c) => c.key));
      theirs = { ...theirs, ...answer.versions };
      if (answer.complete) break;
    }
    expect(received).toEqual(ids);
  });
});
