import { describe, expect, it } from 'vitest';
import type { Change } from '../../src/broker/metadata-replica.js';
import { replicaOnDisk, syncedJob, useReplicaOnDisk } from '../helpers/replica.js';

/**
 * A broker stores the records of jobs in flight apart from the finished ones, which alone are compressed
 * (they are kept for the retention time; the others are rewritten within a second). On real LMDB.
 */
describe('job records in flight and finished', () => {
  const disk = useReplicaOnDisk('jr', 'jr-broker', { each: true });

  /** Whether one of the two tables holds a record, as committed (the cache is not asked). */
  const holds = (table: 'meta_jobs' | 'meta_jobs_in_flight', key: string): boolean =>
    disk().node.store.table<Change>(table, table === 'meta_jobs' ? { cache: true, compress: true } : {}).getBinary(key) !== undefined;

  it('keeps a job in flight in its own table and moves its finished record to the compressed one', async () => {
    await disk().replica.setJob(syncedJob('jr-1'));
    await disk().node.store.durable();
    expect(holds('meta_jobs_in_flight', 'jr-1')).toBe(true);
    expect(holds('meta_jobs', 'jr-1')).toBe(false);
    expect(disk().replica.job('jr-1')?.state).toBe('running');

    await disk().replica.setJob(syncedJob('jr-1', { by: 'jr-broker', executor: 'jr-exec', at: 2_000 }));
    await disk().node.store.durable();
    expect(holds('meta_jobs_in_flight', 'jr-1')).toBe(false);
    expect(holds('meta_jobs', 'jr-1')).toBe(true);
    expect(disk().replica.job('jr-1')?.state).toBe('succeeded');
  });

  it('finds a job in flight that an older version stored with the finished ones, and moves it on its next write', async () => {
    const older = disk().node.store.table<Change>('meta_jobs', { cache: true, compress: true });
    const job = syncedJob('jr-old');
    await older.put('jr-old', { table: 'jobs', key: 'jr-old', origin: 'jr-peer', seq: 1, vc: { 'jr-peer': 1 }, hlc: [1_500, 0], job });
    expect(disk().replica.job('jr-old')?.state).toBe('running');
    await disk().replica.setJob({ ...job, updated_at: 1_600 });
    await disk().node.store.durable();
    expect(holds('meta_jobs', 'jr-old')).toBe(false);
    expect(holds('meta_jobs_in_flight', 'jr-old')).toBe(true);
    expect(disk().replica.job('jr-old')?.updated_at).toBe(1_600);
  });

  it('lists the job ids of both tables in order, once each', async () => {
    for (const id of ['jr-c', 'jr-a', 'jr-e']) await disk().replica.setJob(syncedJob(id));
    for (const id of ['jr-b', 'jr-d']) await disk().replica.setJob(syncedJob(id, { by: 'jr-broker', executor: 'jr-exec', at: 2_000 }));
    await disk().node.store.durable();
    expect([...disk().replica.jobIds()]).toEqual(['jr-a', 'jr-b', 'jr-c', 'jr-d', 'jr-e']);
    expect([...disk().replica.jobIds('jr-b')]).toEqual(['jr-c', 'jr-d', 'jr-e']);
  });

  it('holds its jobs in flight again after a restart, and moves each on when it finishes', async () => {
    const first = replicaOnDisk('jr', 'jr-restarted');
    await first.replica.setJob(syncedJob('jr-r'));
    await first.node.store.durable();
    const second = await first.reopen();
    try {
      expect(second.replica.job('jr-r')?.state).toBe('running');
      expect(second.replica.unfinishedJobs('rs-client')).toBe(1);
      await second.replica.setJob(syncedJob('jr-r', { by: 'jr-restarted', executor: 'jr-exec', at: 2_000 }));
      await second.node.store.durable();
      expect(second.replica.job('jr-r')?.state).toBe('succeeded');
      expect(second.replica.unfinishedJobs('rs-client')).toBe(0);
      expect(second.node.store.table<Change>('meta_jobs_in_flight').getBinary('jr-r')).toBeUndefined();
    } finally {
      await second.close();
    }
  });
});

describe('a restarted replica', () => {
  it('answers a peer with the same changes as before it stopped, rebuilt from its records', async () => {
    const first = replicaOnDisk('ro', 'ro-broker');
    await first.replica.setJob(syncedJob('ro-1'));
    await first.replica.setJob(syncedJob('ro-2'));
    // Replaced: only its newest change is held and sent.
    await first.replica.setJob(syncedJob('ro-1', { by: 'ro-broker', executor: 'ro-exec', at: 2_000 }));
    await first.replica.setName('ro-2/out', { store: 'ro-store', size: 3, at: [3_000, 0], owner: 'rs-client' });
    await first.replica.setName('ro-2/out', undefined);
    await first.replica.setName('ro-1/result.zip', { store: 'ro-broker', size: 22, at: [3_001, 0], owner: 'rs-client', inline: true });
    await first.node.store.durable();
    const summary = (delta: Awaited<ReturnType<typeof first.replica.changesFor>>) => ({ ...delta, changes: delta.changes.map((c) => [c.seq, c.table, c.key]) });
    const before = summary(await first.replica.changesFor({}));
    expect(before.changes).toEqual([[2, 'jobs', 'ro-2'], [3, 'jobs', 'ro-1'], [5, 'names', 'ro-2/out'], [6, 'names', 'ro-1/result.zip']]);
    const second = await first.reopen();
    try {
      expect(summary(await second.replica.changesFor({}))).toEqual(before);
      expect(summary(await second.replica.changesFor({ 'ro-broker': 3 })).changes).toEqual([[5, 'names', 'ro-2/out'], [6, 'names', 'ro-1/result.zip']]);
      // Its next change takes the next number, and is found after the ones loaded.
      await second.replica.setJob(syncedJob('ro-3'));
      expect(summary(await second.replica.changesFor({ 'ro-broker': 6 })).changes).toEqual([[7, 'jobs', 'ro-3']]);
    } finally {
      await second.close();
    }
  });
});
