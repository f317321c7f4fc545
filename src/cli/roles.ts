import type { UcpConfig } from '../config/index.js';
import { DataRouter } from '../broker/index.js';
import { DatastoreNode } from '../datastore/index.js';
import { readCapabilities } from '../executor/capabilities.js';
import type { Role } from '../protocol/index.js';
import type { NodeRuntime } from '../transport/index.js';

/**
 * Gives a node its role's behaviour. Called before the node connects, so no request of the role's kinds
 * can arrive unhandled. Roles never import each other: the CLI is where they meet.
 */
export function attachRole(node: NodeRuntime, role: Role, config: UcpConfig): void {
  switch (role) {
    case 'broker':
      new DataRouter(node);
      return;
    case 'datastore':
      new DatastoreNode(node, config.datastore.max_object_bytes);
      return;
    case 'executor':
      // Job execution arrives with the jobs milestone; until then an executor advertises what it offers.
      node.link.setHeartbeatFields(() => ({ capabilities: readCapabilities(node.store.dir, config.executor.tags), running_jobs: [] }));
      return;
    default:
      return;
  }
}
