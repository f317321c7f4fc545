import { join } from 'node:path';
import { MetadataReplica } from '../../src/broker/metadata-replica.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { removeDir, tempDir } from './processes.js';

export interface ReplicaOnDisk {
  readonly node: NodeRuntime;
  readonly replica: MetadataReplica;
  close(): Promise<void>;
}

/**
 * A broker's metadata replica on real LMDB in a temporary directory. The node never connects (its hub
 * address leads nowhere): for tests of what the replica does on its own, where nothing needs to travel.
 */
export function replicaOnDisk(cluster: string, nodeId: string): ReplicaOnDisk {
  const dir = tempDir();
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
  };
}
