import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { UcpConfig } from '../config/index.js';
import { EmbeddedHub, type HubTls } from '../hub/index.js';
import type { Logger } from '../log/index.js';
import type { Role } from '../protocol/index.js';
import { Counters, NodeLink, NodeRuntime, TransportError, linkOptionsFromConfig } from '../transport/index.js';
import { attachRole } from './roles.js';
import { defaultNodeId, UsageError } from './settings.js';

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
  /** Let a hub without credentials listen on an address other hosts can reach. */
  readonly insecure?: boolean;
}

export interface LocalCluster {
  readonly hub: EmbeddedHub;
  readonly nodes: readonly NodeRuntime[];
  stop(): Promise<void>;
}

/** A running hub and its own node, which answers `ucp status` with what the hub refused. */
export interface RunningHub {
  readonly hub: EmbeddedHub;
  readonly node: NodeLink;
  stop(): Promise<void>;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function readPem(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`cannot read ${key} "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The hub's TLS material from [hub], or undefined for plain TCP. */
export function hubTls(config: UcpConfig): HubTls | undefined {
  const { tls_cert_file: cert, tls_key_file: key, tls_client_ca_file: ca } = config.hub;
  if (cert === '' && key === '' && ca === '') return undefined;
  if (cert === '' || key === '') throw new UsageError('the hub needs both hub.tls_cert_file and hub.tls_key_file to speak TLS');
  return { cert: readPem('hub.tls_cert_file', cert), key: readPem('hub.tls_key_file', key), ...(ca !== '' ? { clientCa: readPem('hub.tls_client_ca_file', ca) } : {}) };
}

/**
 * Starts the embedded hub with the configured credentials and TLS, and the hub's own node. Secure by
 * default: a hub that admits anyone may listen only on a loopback address, unless `insecure` says so.
 */
export async function startHub(config: UcpConfig, logger: Logger, host: string, port: number, insecure = false): Promise<RunningHub> {
  const credentialsFile = config.hub.credentials_file !== '' ? resolve(config.hub.credentials_file) : undefined;
  if (credentialsFile === undefined && !isLoopback(host) && !insecure) {
    throw new UsageError(`refusing to run a hub on ${host} that admits anyone: set hub.credentials_file (see \`ucp auth\`), listen on 127.0.0.1, or pass --insecure`);
  }
  const tls = hubTls(config);
  const nodeId = defaultNodeId(config, 'hub');
  const counters = new Counters();
  const hub = await EmbeddedHub.start({
    host,
    port,
    logger,
    nodeId,
    counters,
    maxMessageBytes: config.protocol.max_message_bytes,
    maxRetainedBytes: config.hub.max_retained_bytes,
    ...(credentialsFile !== undefined ? { credentialsFile } : {}),
    ...(tls !== undefined ? { tls } : {}),
  });
  if (credentialsFile === undefined && !isLoopback(host)) logger.warn({ host }, 'the hub admits anyone (--insecure): every node can pose as any other');
  const node = NodeLink.create({
    ...linkOptionsFromConfig(config, logger),
    hubUrl: hub.url,
    nodeId,
    role: 'hub',
    announce: false,
    watchPresence: false,
    stream: () => hub.internalStream(),
    counters,
  });
  // The hub serves nodes as soon as it listens; its own node connects (in memory) meanwhile.
  node.connect().catch((err: Error) => {
    if (!(err instanceof TransportError && err.code === 'link_closed')) logger.error({ err: err.message }, "the hub's own node could not connect");
  });
  return {
    hub,
    node,
    stop: async () => {
      await node.stop();
      await hub.stop();
    },
  };
}

/** The hub and one node per role in one process: what `ucp up` and the demo run. */
export async function startLocalCluster(options: LocalClusterOptions): Promise<LocalCluster> {
  const { config, logger, base } = options;
  const running = await startHub(config, logger, options.host, options.port, options.insecure === true);
  const hub = running.hub;
  const plan: Array<[string, Role]> = [
    [`${base}-broker`, 'broker'],
    [`${base}-datastore`, 'datastore'],
  ];
  for (let i = 1; i <= options.executors; i++) plan.push([`${base}-executor-${i}`, 'executor']);
  const nodes: NodeRuntime[] = [];
  const stop = async () => {
    // Executors first and the broker last, so the broker sees everyone leave; the hub goes after all.
    for (const node of [...nodes].reverse()) await node.stop();
    await running.stop();
  };
  try {
    for (const [nodeId, role] of plan) {
      // Beside a hub with credentials, the nodes of this process connect in memory as themselves: they
      // are as trusted as the hub, and need neither passwords nor certificates.
      const inMemory = hub.secured ? { stream: () => hub.internalStream({ node: nodeId, role }) } : {};
      const node = NodeRuntime.create({ config, nodeId, role, dataDir: join(options.dataRoot, nodeId), logger, hubUrl: hub.url, ...inMemory });
      nodes.push(node);
      await attachRole(node, role, config);
      await node.connect();
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { hub, nodes, stop };
}
