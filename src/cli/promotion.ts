import { join } from 'node:path';
import type { UcpConfig } from '../config/index.js';
import type { Logger } from '../log/index.js';
import { NodeRuntime } from '../transport/index.js';
import { attachRole } from './roles.js';

/** How often a broker-eligible node checks whether any broker is alive. */
const CHECK_MS = 250;

/**
 * For a node configured `node.broker_eligible`: when no broker has been alive for
 * `liveness.promote_after_ms`, this process starts a broker too (node id `<id>.broker`, state in
 * `<data dir>/promoted-broker`), as the UCP paper has field units do when they lose every broker. It then
 * stays a broker: brokers that come back later simply make the cluster a multi-broker one, and their
 * metadata merges. Returns the promoted broker, if any, through `current()`.
 */
export function promoteWhenBrokerless(node: NodeRuntime, config: UcpConfig, logger: Logger): { current(): NodeRuntime | undefined; stop(): Promise<void> } {
  let lastBrokerSeen = performance.now();
  let promoted: NodeRuntime | undefined;
  let promoting = false;
  // Eligible nodes that lost their brokers together should not all promote at the same instant.
  const jitterMs = [...node.link.id].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 1_000, 7);
  const timer = setInterval(() => {
    if (promoted !== undefined || promoting) return;
    const brokerAlive = node.link.peers.alive('broker').length > 0;
    if (brokerAlive || !node.link.connected) {
      lastBrokerSeen = performance.now();
      return;
    }
    if (performance.now() - lastBrokerSeen < config.liveness.promote_after_ms + jitterMs) return;
    promoting = true;
    const brokerId = `${node.link.id}.broker`;
    node.log.warn({ broker: brokerId, silentMs: Math.round(performance.now() - lastBrokerSeen) }, 'no broker is alive; promoting this node to broker');
    const broker = NodeRuntime.create({ config, nodeId: brokerId, role: 'broker', dataDir: join(node.store.dir, 'promoted-broker'), logger });
    attachRole(broker, 'broker', config)
      .then(() => broker.connect())
      .then(() => {
        promoted = broker;
        node.link.counters.inc('promoted_to_broker');
        node.log.warn({ broker: brokerId }, 'promoted to broker');
      })
      .catch(async (err: Error) => {
        node.log.error({ err: err.message }, 'promotion to broker failed');
        await broker.stop().catch(() => undefined);
      })
      .finally(() => {
        promoting = false;
      });
  }, CHECK_MS);
  timer.unref();
  return {
    current: () => promoted,
    stop: async () => {
      clearInterval(timer);
      await promoted?.stop();
    },
  };
}
