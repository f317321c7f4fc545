import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetadataReplica, type SyncedJob } from '../../src/broker/metadata-replica.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { removeDir, tempDir } from '../helpers/processes.js';

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
  let dir: string;
  let node: NodeRuntime;
  let replica: MetadataReplica;

  beforeAll(() => {
    dir = tempDir();
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'rp', 'hub.url': 'mqtt://127.0.0.1:9' } });
    node = NodeRuntime.create({ config, nodeId: 'rp-broker', role: 'broker', dataDir: join(dir, 'broker'), logger: createLogger({ level: 'silent', format: 'json' }) });
    replica = new MetadataReplica(node, { intervalMs: 60_000, retryOnFailure: false, failureRetryMs: 1_000, maxClockLeadMs: 0 });
  });

  afterAll(async () => {
    await node?.stop();
    removeDir(dir);
  });

  it('a pass right after a full one prunes the next jobs due, not the uncommitted removals again', async () => {
    for (let n = 0; n < 250; n++) await replica.setJob(finished(n, 1_000 + n));
    await node.store.durable();
    expect(replica.finishedJobs).toBe(250);
    // Keep the newest 50 by count: 200 are due, 100 per pass.
    const retention = { maxAgeMs: Number.MAX_SAFE_INTEGER, maxCount: 50 };
    const first = replica.prune(Date.now(), retention, 100);
    const second = replica.prune(Date.now(), retention, 100);
    expect(first.map((p) => p.job.job_id)).toEqual(Array.from({ length: 100 }, (_, n) => `rp-${String(n).padStart(4, '0')}`));
    expect(second.map((p) => p.job.job_id)).toEqual(Array.from({ length: 100 }, (_, n) => `rp-${String(n + 100).padStart(4, '0')}`));
    expect(replica.finishedJobs).toBe(50);
    expect(replica.prune(Date.now(), retention, 100)).toEqual([]);
    await node.store.durable();
    expect(replica.prune(Date.now(), retention, 100)).toEqual([]);
    expect(replica.finishedJobs).toBe(50);
    expect(replica.job('rp-0199')).toBeUndefined();
    expect(replica.job('rp-0200')?.state).toBe('succeeded');
  });
});
