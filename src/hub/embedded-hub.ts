import { createServer, type Server, type Socket } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from '../log/index.js';

/**
 * The hooks authentication and topic ACLs plug into. Each decision is made per client id, which is the
 * node id. Omitted hooks allow everything.
 */
export interface HubAccessControl {
  authenticate?(clientId: string, username: string | undefined, password: Buffer | undefined): boolean | Promise<boolean>;
  authorizePublish?(clientId: string, topic: string): boolean;
  authorizeSubscribe?(clientId: string, topic: string): boolean;
}

export interface HubOptions {
  readonly host: string;
  /** 0 picks a free port; read it back from `port`. */
  readonly port: number;
  readonly logger: Logger;
  readonly access?: HubAccessControl;
}

/** Shared credentials: every client must present this username and password. */
export function sharedCredentials(username: string, password: string): HubAccessControl {
  const expected = Buffer.from(password);
  return {
    authenticate(_clientId, user, pass) {
      if (user !== username || pass === undefined || pass.length !== expected.length) return false;
      return timingSafeEqual(pass, expected);
    },
  };
}

function refusal(message: string): AuthenticateError {
  // 4 = bad user name or password (MQTT 3.1.1 CONNACK return code).
  return Object.assign(new Error(message), { returnCode: 4 }) as AuthenticateError;
}

/**
 * The embedded MQTT hub (aedes on TCP). Every accepted socket gets TCP_NODELAY: with Nagle's algorithm on,
 * each QoS 1 round trip through the hub waits on a delayed ACK.
 */
export class EmbeddedHub {
  private constructor(
    private readonly aedes: Aedes,
    private readonly sockets: Set<Socket>,
    private readonly server: Server,
    readonly host: string,
    readonly port: number,
    private readonly log: Logger,
  ) {}

  static async start(options: HubOptions): Promise<EmbeddedHub> {
    const log = options.logger.child({ component: 'hub' });
    const access = options.access;
    const aedes = await Aedes.createBroker({
      authenticate: (client, username, password, done) => {
        if (access?.authenticate === undefined) return done(null, true);
        Promise.resolve(access.authenticate(client.id, username, password)).then(
          (ok) => (ok ? done(null, true) : done(refusal('bad user name or password'), false)),
          (err: Error) => done(refusal(err.message), false),
        );
      },
      authorizePublish: (client, packet, done) => {
        // A null client is the hub itself publishing (e.g. a last will on the client's behalf).
        if (client === null || access?.authorizePublish === undefined || access.authorizePublish(client.id, packet.topic)) return done(null);
        done(new Error(`${client.id} may not publish to ${packet.topic}`));
      },
      authorizeSubscribe: (client, sub, done) => {
        if (access?.authorizeSubscribe === undefined || access.authorizeSubscribe(client.id, sub.topic)) return done(null, sub);
        done(new Error(`${client.id} may not subscribe to ${sub.topic}`));
      },
    });
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      socket.setNoDelay(true);
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      aedes.handle(socket);
    });
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
    const hub = new EmbeddedHub(aedes, sockets, server, options.host, port, log);
    aedes.on('clientError', (client: Client, err: Error) => log.debug({ client: client.id, err: err.message }, 'client error'));
    aedes.on('connectionError', (client: Client, err: Error) => log.debug({ client: client.id, err: err.message }, 'connection error'));
    log.info({ host: options.host, port }, 'hub listening');
    return hub;
  }

  /** The URL nodes connect to. */
  get url(): string {
    const host = this.host.includes(':') ? `[${this.host}]` : this.host;
    return `mqtt://${host}:${this.port}`;
  }

  get connectedClients(): number {
    return this.aedes.connectedClients;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.log.info('hub stopped');
  }
}
