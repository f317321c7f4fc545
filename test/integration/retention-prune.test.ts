import { describe, expect, it } from 'vitest';
import type { SyncedJob } from '../../src/broker/metadata-replica.js';
import { useReplicaOnDisk } from '../helpers/replica.js';

/** A finished trivial job, as a broker records it, that ended at `endedAt`. */
function finished(n: number, endedAt: number): SyncedJob {
  const jobId = `rp-${String(n).padStart(4, '0')}`;
  return {
    job_id: jobId,
    state: 'succeeded',
    priority: 'normal',
    owner: 'rp-client',
    broker: 'rp-broker',
    created_at: endedAt - 10,
    updated_at: endedAt,
    attempts: [],
    spec: { job_id: jobId, wasm_module: 'rp/m.wasm', capabilities: {}, argv: ['m'], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 60, max_memory_mb: 16 },
    digest: 'd',
    after: [],
  } as SyncedJob;
}

/**
 * Retention on a broker's real replica in LMDB (the node is not connected: nothing needs to travel). A
 * pass that follows a full one at once, before the first one's removals are committed, must go on
 * pruning: a broker finishing jobs faster than one budget per interval otherwise falls behind for good.
 */
describe('retention pruning', () => {
  const disk = useReplicaOnDisk('rp', 'rp-broker');

  it('a pass right after a full one prunes the next jobs due, not the uncommitted removals again', async () => {
    for (let n = 0; n < 250; n++) await disk().replica.setJob(finished(n, 1_000 + n));
    await disk().node.store.durable();
    expect(disk().replica.finishedJobs).toBe(250);
    // Keep the newest 50 by count: 200 are due, 100 per pass.
    const retention = { maxAgeMs: Number.MAX_SAFE_INTEGER, maxCount: 50 };
    const first = disk().replica.prune(Date.now(), retention, 100);
    const second = disk().replica.prune(Date.now(), retention, 100);
    expect(first.map((p) => p.job.job_id)).toEqual(Array.from({ length: 100 }, (_, n) => `rp-${String(n).padStart(4, '0')}`));
    expect(second.map((p) => p.job.job_id)).toEqual(Array.from({ length: 100 }, (_, n) => `rp-${String(n + 100).padStart(4, '0')}`));
    expect(disk().replica.finishedJobs).toBe(50);
    expect(disk().replica.prune(Date.now(), retention, 100)).toEqual([]);
    await disk().node.store.durable();
    expect(disk().replica.prune(Date.now(), retention, 100)).toEqual([]);
    expect(disk().replica.finishedJobs).toBe(50);
    expect(disk().replica.job('rp-0199')).toBeUndefined();
    expect(disk().replica.job('rp-0200')?.state).toBe('succeeded');
  });
});
