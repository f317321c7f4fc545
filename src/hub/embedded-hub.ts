import { unwatchFile, watchFile } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { Aedes, type Client } from 'aedes';
import type { Logger } from '../log/index.js';
import { Counters } from '../transport/counters.js';
import { writePacketNumbersUncached } from '../transport/packet-numbers.js';
import { HubAccess } from './access.js';
import { duplexPair } from './duplex-pair.js';
import type { LoginLimiterOptions } from './login-limiter.js';
import type { Identity } from './policy.js';
import { guardPacketSize } from './packet-guard.js';

export interface HubTls {
  /** PEM certificate chain and key the hub presents: it then speaks mqtts:// only. */
  readonly cert: Buffer | string;
  readonly key: Buffer | string;
  /** PEM CA whose client certificates a node may log in with instead of a password. */
  readonly clientCa?: Buffer | string;
}

export interface HubOptions {
  readonly host: string;
  /** 0 picks a free port; read it back from `port`. */
  readonly port: number;
  readonly logger: Logger;
  /** Per-node credentials (`ucp auth`); without it the hub admits anyone (loopback quick start only). */
  readonly credentialsFile?: string;
  readonly tls?: HubTls;
  /** Largest message payload (protocol.max_message_bytes); larger packets are refused before buffering. */
  readonly maxMessageBytes?: number;
  /** Largest retained payload; retained messages are allowed on presence topics only. */
  readonly maxRetainedBytes?: number;
  /** The hub's own node id, which answers `ucp status` with the hub's counters. */
  readonly nodeId?: string;
  /** Where the hub counts what it refused; the hub's own node reports them. */
  readonly counters?: Counters;
  readonly loginLimits?: LoginLimiterOptions;
}

/** Room in a packet for the fixed header, the topic and the packet id around the payload. */
const PACKET_OVERHEAD_BYTES = 64 * 1_024;
/** How often the credentials file is checked for changes that should disconnect someone. */
const CREDENTIALS_POLL_MS = 1_000;

/**
 * The embedded MQTT hub (aedes on TCP or TLS). Every accepted socket gets TCP_NODELAY: with Nagle's
 * algorithm on, each QoS 1 round trip through the hub waits on a delayed ACK. With a credentials file it
 * proves who every node is and holds them to the topic policy (see HubAccess).
 */
export class EmbeddedHub {
  private constructor(
    private readonly aedes: Aedes,
    private readonly access: HubAccess,
    private readonly sockets: Set<Socket>,
    private readonly server: Server,
    readonly host: string,
    readonly port: number,
    readonly secure: boolean,
    readonly counters: Counters,
    private readonly log: Logger,
    private readonly credentialsFile: string | undefined,
  ) {}

  static async start(options: HubOptions): Promise<EmbeddedHub> {
    const log = options.logger.child({ component: 'hub' });
    const counters = options.counters ?? new Counters();
    const maxMessageBytes = options.maxMessageBytes ?? 1 << 20;
    const access = new HubAccess({
      ...(options.credentialsFile !== undefined ? { credentialsFile: options.credentialsFile } : {}),
      limits: { maxMessageBytes, maxRetainedBytes: options.maxRetainedBytes ?? 4_096 },
      counters,
      log,
      hubNode: options.nodeId ?? 'hub',
      ...(options.loginLimits !== undefined ? { loginLimits: options.loginLimits } : {}),
    });
    writePacketNumbersUncached();
    const aedes = await Aedes.createBroker({
      authenticate: (client, username, password, done) => access.authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => access.authorizePublish(client, packet, done),
      authorizeSubscribe: (client, sub, done) => access.authorizeSubscribe(client, sub, done),
    });
    const sockets = new Set<Socket>();
    const maxPacket = maxMessageBytes + PACKET_OVERHEAD_BYTES;
    const accept = (socket: Socket) => {
      socket.setNoDelay(true);
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      guardPacketSize(socket, maxPacket, (announced) => {
        counters.reject(log, 'publish_refused_too_large', socket.remoteAddress ?? 'unknown', `a ${announced}-byte packet, over the ${maxPacket}-byte limit; connection closed`);
        socket.destroy();
      });
      aedes.handle(socket);
    };
    const tls = options.tls;
    const server: Server = tls !== undefined
      ? createTlsServer(
          {
            cert: tls.cert,
            key: tls.key,
            ...(tls.clientCa !== undefined ? { ca: tls.clientCa, requestCert: true } : {}),
            // A node without a client certificate may still log in with its password.
            rejectUnauthorized: false,
          },
          (socket: TLSSocket) => accept(socket),
        )
      : createServer(accept);
    // A TLS handshake that fails (a plain-TCP client, a wrong CA) is the client's problem, not the hub's.
    server.on('tlsClientError', (err: Error) => log.debug({ err: err.message }, 'TLS handshake failed'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // After listen, a server error (e.g. EMFILE when a unit runs out of descriptors) is logged, not fatal.
    server.on('error', (err) => log.error({ err: err.message }, 'hub server error'));
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : options.port;
    const hub = new EmbeddedHub(aedes, access, sockets, server, options.host, port, tls !== undefined, counters, log, options.credentialsFile);
    aedes.on('clientError', (client: Client, err: Error) => log.debug({ client: client.id, err: err.message }, 'client error'));
    aedes.on('connectionError', (client: Client, err: Error) => log.debug({ client: client.id, err: err.message }, 'connection error'));
    if (options.credentialsFile !== undefined) watchFile(options.credentialsFile, { interval: CREDENTIALS_POLL_MS }, () => hub.credentialsChanged());
    log.info({ host: options.host, port, tls: tls !== undefined, credentials: options.credentialsFile ?? null }, 'hub listening');
    return hub;
  }

  /** The URL nodes connect to. */
  get url(): string {
    const host = this.host.includes(':') ? `[${this.host}]` : this.host;
    return `${this.secure ? 'mqtts' : 'mqtt'}://${host}:${this.port}`;
  }

  get connectedClients(): number {
    return this.aedes.connectedClients;
  }

  /** True when logins are checked against a credentials file. */
  get secured(): boolean {
    return this.access.secured;
  }

  /**
   * A new in-memory connection to this hub, logged in as the hub's own node (or as `identity`, a node in
   * this process such as `ucp up` runs): the stream an MQTT client in this process talks through.
   */
  internalStream(identity?: Identity): Duplex {
    const [server, client] = duplexPair();
    this.access.markInternal(server, identity);
    this.aedes.handle(server);
    return client;
  }

  /** The credentials file changed: read it, and disconnect whoever no longer holds what it logged in with. */
  private credentialsChanged(): void {
    if (!this.access.reload()) return;
    // aedes keeps its connected clients by id; its typings leave the table out.
    const clients = (this.aedes as unknown as { clients: Record<string, Client> }).clients;
    for (const client of Object.values(clients)) {
      if (this.access.stillValid(client)) continue;
      this.counters.inc('logins_revoked');
      this.log.warn({ client: client.id }, 'credential removed or changed; disconnecting');
      client.close();
    }
  }

  async stop(): Promise<void> {
    if (this.credentialsFile !== undefined) unwatchFile(this.credentialsFile);
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.log.info('hub stopped');
  }
}
