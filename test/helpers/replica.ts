import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { MetadataReplica, type SyncedJob } from '../../src/broker/metadata-replica.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { removeDir, tempDir } from './processes.js';

export interface ReplicaOnDisk {
  readonly node: NodeRuntime;
  readonly replica: MetadataReplica;
  close(): Promise<void>;
  /** Stops the node and starts it again on the same directory, as a restart would. */
  reopen(): Promise<ReplicaOnDisk>;
}

/**
 * A broker's metadata replica on real LMDB in a temporary directory. The node never connects (its hub
 * address leads nowhere): for tests of what the replica does on its own, where nothing needs to travel.
 */
export function replicaOnDisk(cluster: string, nodeId: string, dir = tempDir()): ReplicaOnDisk {
  const config = loadConfig({ env: {}, overrides: { 'node.cluster': cluster, 'hub.url': 'mqtt://127.0.0.1:9' } });
  const node = NodeRuntime.create({ config, nodeId, role: 'broker', dataDir: join(dir, 'broker'), logger: createLogger({ level: 'silent', format: 'json' }) });
  const replica = new MetadataReplica(node, { intervalMs: 60_000, retryOnFailure: false, failureRetryMs: 1_000, maxClockLeadMs: 0 });
  return {
    node,
    replica,
    close: async () => {
      await node.stop();
      removeDir(dir);
    },
    reopen: async () => {
      await node.stop();
      return replicaOnDisk(cluster, nodeId, dir);
    },
  };
}

/**
 * A replica on disk for the tests of the calling describe block: one for all of them, or with `each` a
 * fresh one per test. Closed (and its directory removed) after.
 */
export function useReplicaOnDisk(cluster: string, nodeId: string, options: { each?: boolean } = {}): () => ReplicaOnDisk {
  let disk: ReplicaOnDisk | undefined;
  (options.each === true ? beforeEach : beforeAll)(() => {
    disk = replicaOnDisk(cluster, nodeId);
  });
  (options.each === true ? afterEach : afterAll)(async () => {
    await disk?.close();
    disk = undefined;
  });
  return () => disk!;
}

/** Who accepted a job's result, when, and from which executor's first attempt. */
export interface Acceptance {
  readonly by: string;
  readonly executor: string;
  readonly at: number;
}

/** A job record as brokers sync it: running, or succeeded with the result `accepted` describes. */
export function syncedJob(jobId: string, accepted?: Acceptance): SyncedJob {
  const executor = accepted?.executor ?? 'rs-exec';
  return {
    job_id: jobId,
    state: accepted !== undefined ? 'succeeded' : 'running',
    priority: 'normal',
    owner: 'rs-client',
    broker: 'rs-broker',
    created_at: 1_000,
    updated_at: accepted?.at ?? 1_500,
    attempts: [{ attempt: 1, executor, state: accepted !== undefined ? 'accepted' : 'running', assigned_at: 1_000 }],
    spec: { job_id: jobId, wasm_module: 'rs/m.wasm', capabilities: {}, argv: ['m'], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 60, max_memory_mb: 16 },
    digest: 'd',
    after: [],
    ...(accepted !== undefined
      ? { result: { attempt: 1, executor, outcome: 'exited', exit_code: 0, message: 'exited with code 0', duration_ms: 1, archive_bytes: 22, files: [], missing: [], named_results: [], decided_by: accepted.by, decided_at: [accepted.at, 0], decided_vc: { [accepted.by]: 1 }, published: [], digest: 'r' } }
      : {}),
  } as unknown as SyncedJob;
}
