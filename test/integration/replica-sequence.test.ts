import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyncedJob } from '../../src/broker/metadata-replica.js';
import { replicaOnDisk, type ReplicaOnDisk } from '../helpers/replica.js';

function job(jobId: string, accepted: boolean): SyncedJob {
  return {
    job_id: jobId,
    state: accepted ? 'succeeded' : 'running',
    priority: 'normal',
    owner: 'rs-client',
    broker: 'rs-broker',
    created_at: 1_000,
    updated_at: accepted ? 2_000 : 1_500,
    attempts: [{ attempt: 1, executor: 'rs-exec', state: accepted ? 'accepted' : 'running', assigned_at: 1_000 }],
    spec: { job_id: jobId, wasm_module: 'rs/m.wasm', capabilities: {}, argv: ['m'], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 60, max_memory_mb: 16 },
    digest: 'd',
    after: [],
    ...(accepted ? { result: { attempt: 1, executor: 'rs-exec', outcome: 'exited', exit_code: 0, message: 'exited with code 0', duration_ms: 1, archive_bytes: 22, files: [], missing: [], named_results: [], decided_by: 'rs-broker', decided_at: [2_000, 0], decided_vc: { 'rs-broker': 1 }, published: [], digest: 'r' } } : {}),
  } as unknown as SyncedJob;
}

/**
 * A broker numbers its own changes 1, 2, 3, ... and a peer's version for it advances only along that
 * sequence. A local write the merge rule drops (a late report of a job whose result is already accepted)
 * must not use up a number: the gap would hold every peer's version behind it, and each peer would be
 * sent everything after the gap again at its next exchange.
 */
describe('a broker\'s own change numbers', () => {
  let disk: ReplicaOnDisk;

  beforeAll(() => {
    disk = replicaOnDisk('rs', 'rs-broker');
  });

  afterAll(async () => {
    await disk?.close();
  });

  it('leave no gap when a local write is dropped by the merge rule', async () => {
    await disk.replica.setJob(job('rs-1', true));
    expect(disk.replica.digest()['rs-broker']).toBe(1);
    // A stale update of the same job, without the accepted result: the merge keeps the result.
    await disk.replica.setJob(job('rs-1', false));
    expect(disk.replica.job('rs-1')?.state).toBe('succeeded');
    await disk.replica.setName('rs/out', { store: 'rs-store', size: 3, at: [3_000, 0], owner: 'rs-client' });
    await disk.node.store.durable();
    // Two changes made, numbered 1 and 2.
    expect(disk.replica.digest()['rs-broker']).toBe(2);
  });
});
