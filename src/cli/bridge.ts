import { readDocumentTables } from '../config/index.js';
import { BridgeNode, parseBridgeDocument } from '../../firmware-bridge/index.js';
import { NodeRuntime, TransportError } from '../transport/index.js';
import { runUntilSignal } from './lifecycle.js';
import { defaultNodeId, makeLogger, resolveConfig, type GlobalFlags } from './settings.js';
import { defaultDataDir } from './state-dir.js';

const TABLES = ['mapping', 'trigger'];

/** `ucp bridge --config FILE`: the firmware bridge as a long-running node. */
export async function runBridge(flags: GlobalFlags): Promise<void> {
  const config = resolveConfig(flags, {}, TABLES);
  const file = flags.config ?? process.env['UCP_CONFIG']!;
  const doc = parseBridgeDocument(file, readDocumentTables(file, TABLES));
  const logger = makeLogger(config, false);
  const nodeId = defaultNodeId(config, 'bridge');
  let node: NodeRuntime | undefined;
  const stopping = runUntilSignal(logger, async () => node?.stop());
  node = NodeRuntime.create({ config, nodeId, role: 'bridge', dataDir: defaultDataDir(config, nodeId), logger });
  const bridge = new BridgeNode(node, config.bridge, doc, config.protocol.max_message_bytes, config.client.broker_wait_s * 1_000, config.node.broker !== '' ? config.node.broker : undefined);
  node.log.info({ hub: config.hub.url, field: config.bridge.field_url, mappings: doc.mappings.length, triggers: doc.triggers.length, dataDir: node.store.dir }, 'starting bridge');
  bridge.start();
  try {
    await node.connect();
  } catch (err) {
    if (!(err instanceof TransportError && err.code === 'link_closed')) throw err;
  }
  await stopping;
}
