import { join } from 'node:path';
import type { UcpConfig } from '../config/index.js';
import { EmbeddedHub, sharedCredentials } from '../hub/index.js';
import type { Logger } from '../log/index.js';
import type { Role } from '../protocol/index.js';
import { NodeRuntime } from '../transport/index.js';
import { attachRole } from './roles.js';

export interface LocalClusterOptions {
  readonly config: UcpConfig;
  readonly logger: Logger;
  /** Each node keeps its LMDB environment in <dataRoot>/<node id>. */
  readonly dataRoot: string;
  readonly executors: number;
  /** Prefix of every node id, e.g. "field-7" gives field-7-broker, field-7-executor-1, ... */
  readonly base: string;
  readonly port: number;
  readonly host: string;
}

export interface LocalCluster {
  readonly hub: EmbeddedHub;
  readonly nodes: readonly NodeRuntime[];
  stop(): Promise<void>;
}

export function startHub(config: UcpConfig, logger: Logger, host: string, port: number): Promise<EmbeddedHub> {
  const access = config.hub.username !== '' ? sharedCredentials(config.hub.username, config.hub.password) : undefined;
  return EmbeddedHub.start({ host, port, logger, ...(access !== undefined ? { access } : {}) });
}

/** The hub and one node per role in one process: what `ucp up` and the demo run. */
export async function startLocalCluster(options: LocalClusterOptions): Promise<LocalCluster> {
  const { config, logger, base } = options;
  const hub = await startHub(config, logger, options.host, options.port);
  const plan: Array<[string, Role]> = [
    [`${base}-broker`, 'broker'],
    [`${base}-datastore`, 'datastore'],
  ];
  for (let i = 1; i <= options.executors; i++) plan.push([`${base}-executor-${i}`, 'executor']);
  const nodes: NodeRuntime[] = [];
  const stop = async () => {
    // Executors first and the broker last, so the broker sees everyone leave; the hub goes after all.
    for (const node of [...nodes].reverse()) await node.stop();
    await hub.stop();
  };
  try {
    for (const [nodeId, role] of plan) {
      const node = NodeRuntime.create({ config, nodeId, role, dataDir: join(options.dataRoot, nodeId), logger, hubUrl: hub.url });
      attachRole(node, role, config);
      nodes.push(node);
      await node.connect();
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { hub, nodes, stop };
}
