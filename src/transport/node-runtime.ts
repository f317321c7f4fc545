import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import type { UcpConfig } from '../config/index.js';
import type { Logger } from '../log/index.js';
import type { Role } from '../protocol/index.js';
import { NodeStore, type Table } from '../store/index.js';
import { NodeLink, type LinkTiming, type NodeLinkOptions } from './node-link.js';
import type { TlsMaterial } from './connect.js';
import { TransportError } from './errors.js';

export function linkTimingFromConfig(config: UcpConfig): LinkTiming {
  return {
    keepaliveS: config.transport.keepalive_s,
    connectTimeoutMs: config.transport.connect_timeout_ms,
    reconnectMinMs: config.transport.reconnect_min_ms,
    reconnectMaxMs: config.transport.reconnect_max_ms,
    requestTimeoutMs: config.transport.request_timeout_ms,
    dedupWindow: config.transport.dedup_window,
    dedupTtlS: config.transport.dedup_ttl_s,
    retryInitialMs: config.outbox.retry_initial_ms,
    retryMaxMs: config.outbox.retry_max_ms,
    heartbeatIntervalMs: config.liveness.heartbeat_interval_ms,
    deadAfterMs: config.liveness.dead_after_ms,
  };
}

/** The CA, certificate and key files named by [tls], read once; a file that cannot be read is a one-line error. */
export function tlsFromConfig(config: UcpConfig): TlsMaterial | undefined {
  const read = (key: string, path: string): Buffer | undefined => {
    if (path === '') return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new TransportError('tls_file', `cannot read ${key} "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const ca = read('tls.ca_file', config.tls.ca_file);
  const cert = read('tls.cert_file', config.tls.cert_file);
  const key = read('tls.key_file', config.tls.key_file);
  if ((cert === undefined) !== (key === undefined)) throw new TransportError('tls_file', 'set both tls.cert_file and tls.key_file, or neither');
  if (ca === undefined && cert === undefined) return undefined;
  return { ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}) };
}

/** Everything a link takes from the configuration; the caller adds identity, store and presence. */
export function linkOptionsFromConfig(
  config: UcpConfig,
  logger: Logger,
): Pick<NodeLinkOptions, 'cluster' | 'hubUrl' | 'password' | 'tls' | 'logger' | 'limits' | 'timing' | 'maxClockOffsetMs'> {
  const tls = tlsFromConfig(config);
  return {
    cluster: config.node.cluster,
    hubUrl: config.hub.url,
    ...(config.hub.password !== '' ? { password: config.hub.password } : {}),
    ...(tls !== undefined ? { tls } : {}),
    logger,
    limits: { maxMessageBytes: config.protocol.max_message_bytes, maxDepth: config.protocol.max_depth },
    timing: linkTimingFromConfig(config),
    maxClockOffsetMs: config.protocol.max_clock_offset_ms,
  };
}

export interface StoredNotice {
  readonly from: string;
  readonly severity: 'info' | 'warning' | 'critical';
  readonly text: string;
  /** Sender's HLC wall time, for display only. */
  readonly sentAt: number;
}

export interface NodeRuntimeOptions {
  readonly config: UcpConfig;
  /** The node id, or how to pick one for a data directory that has none yet (it keeps its own). */
  readonly nodeId: string | (() => string);
  readonly role: Role;
  readonly dataDir: string;
  readonly logger: Logger;
  /** Track the births, deaths and heartbeats of every node. */
  readonly watchPresence?: boolean;
  /** Overrides hub.url, e.g. for nodes beside an embedded hub that picked a free port. */
  readonly hubUrl?: string;
  /** An in-memory connection to an embedded hub in the same process. */
  readonly stream?: () => Duplex;
}

/**
 * A long-running node: its LMDB store, its link to the hub with presence, and what every node does
 * whatever its role, such as keeping the operator notices sent to it.
 */
export class NodeRuntime {
  readonly notices: Table<StoredNotice>;
  private readonly connectedHooks: Array<() => void> = [];
  private readonly stopHooks: Array<() => Promise<void>> = [];

  /** Register role handlers on `link` before calling connect(). */
  private constructor(
    readonly link: NodeLink,
    readonly store: NodeStore,
    readonly log: Logger,
  ) {
    this.notices = store.table<StoredNotice>('notices');
    link.on('notice', async (msg) => {
      // Keyed by sender and id, so a re-delivered notice overwrites itself instead of appearing twice.
      await this.notices.put(`${msg.from}/${msg.id}`, { from: msg.from, severity: msg.body.severity, text: msg.body.text, sentAt: msg.hlc.wall });
      link.counters.inc('notices_received');
      const level = msg.body.severity === 'critical' ? 'error' : msg.body.severity === 'warning' ? 'warn' : 'info';
      this.log[level]({ from: msg.from, severity: msg.body.severity, text: msg.body.text }, 'operator notice');
    });
  }

  /** Opens the store and prepares the link; the node says nothing until connect(). */
  static create(options: NodeRuntimeOptions): NodeRuntime {
    const { config } = options;
    let log = options.logger.child({ role: options.role });
    const store = NodeStore.open({
      dir: options.dataDir,
      nodeId: options.nodeId,
      sync: config.store.sync,
      // What the node decided in that turn is not stored, but it believes it is: only a restart, from
      // what LMDB holds, makes the two agree again. Nothing of the turn has left the process yet.
      onCommitFailed: (err) => {
        log.fatal({ err: err.message, dir: options.dataDir }, 'cannot commit to the data directory; stopping the process');
        process.exit(1);
      },
    });
    log = options.logger.child({ node: store.nodeId, role: options.role });
    try {
      const link = NodeLink.create({
        ...linkOptionsFromConfig(config, options.logger),
        ...(options.hubUrl !== undefined ? { hubUrl: options.hubUrl } : {}),
        ...(options.stream !== undefined ? { stream: options.stream } : {}),
        nodeId: store.nodeId,
        role: options.role,
        store,
        announce: true,
        watchPresence: options.watchPresence ?? true,
        // Only a broker uses other nodes' heartbeats (capabilities, load, free space, liveness).
        heartbeatsFrom: options.role === 'broker' ? 'all' : 'brokers',
      });
      return new NodeRuntime(link, store, log);
    } catch (err) {
      void store.close();
      throw err;
    }
  }

  /** Work a role starts once the node is on the hub, e.g. picking up jobs a previous run left. */
  onConnected(hook: () => void): void {
    this.connectedHooks.push(hook);
  }

  /** Work a role finishes before the link and the store close, e.g. stopping running jobs. */
  beforeStop(hook: () => Promise<void>): void {
    this.stopHooks.push(hook);
  }

  async connect(): Promise<void> {
    await this.link.connect();
    for (const hook of this.connectedHooks) hook();
  }

  async stop(): Promise<void> {
    for (const hook of this.stopHooks.splice(0)) {
      await hook().catch((err: Error) => this.log.error({ err: err.message }, 'stopping a role failed'));
    }
    await this.link.stop();
    await this.store.close();
  }
}
