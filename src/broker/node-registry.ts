import type { Capabilities } from '../protocol/index.js';
import type { NodeRuntime, PeerState } from '../transport/index.js';
import type { MetadataReplica, RegisteredNode } from './metadata-replica.js';

/**
 * The broker's share of the replicated executor and datastore registry: it records, under its own name,
 * each executor and datastore it sees, whether it is alive, and what it offers. Only lasting changes are
 * written (a unit appearing or vanishing, its cores, tags, power or slots), not every heartbeat's load,
 * so the registry costs little on a slow link between districts. Other brokers read it to know which
 * broker can reach a unit with given capabilities.
 */
export class NodeRegistry {
  constructor(
    private readonly node: NodeRuntime,
    private readonly replica: MetadataReplica,
  ) {
    node.link.onPresence((event) => this.record(event.peer));
    node.link.onHeartbeat((peer) => this.record(peer));
  }

  private record(peer: Readonly<PeerState>): void {
    if (peer.role !== 'executor' && peer.role !== 'datastore') return;
    const capabilities = peer.heartbeat?.capabilities;
    const slots = peer.heartbeat?.job_slots;
    const view: RegisteredNode = {
      node_id: peer.id,
      role: peer.role,
      alive: peer.alive,
      ...(capabilities !== undefined ? { capabilities } : {}),
      ...(slots !== undefined ? { job_slots: slots } : {}),
    };
    const before = this.replica.registered(peer.id);
    if (before !== undefined && sameLasting(before, view)) return;
    this.replica.setNode(view).catch((err: Error) => this.node.log.warn({ peer: peer.id, err: err.message }, 'recording a node in the registry failed'));
  }
}

/** Equal in what lasts; free CPU, memory, disk and battery change with every heartbeat and are not compared. */
function sameLasting(a: RegisteredNode, b: RegisteredNode): boolean {
  const lasting = (c: Capabilities | undefined) => (c === undefined ? '' : `${c.cpu_cores}|${c.on_mains_power}|${[...c.tags].sort().join(',')}`);
  return a.alive === b.alive && a.role === b.role && a.job_slots === b.job_slots && lasting(a.capabilities) === lasting(b.capabilities);
}
