import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { AuthenticateError, Client, PublishPacket, Subscription } from 'aedes';
import type { Logger } from '../log/index.js';
import type { Counters } from '../transport/counters.js';
import { fileStamp, readCredentialsFile, verifyPassword, type Credential } from './credentials.js';
import { DEFAULT_SOURCE_LIMITS, LoginLimiter, type LoginLimiterOptions } from './login-limiter.js';
import { publishRefusal, subscribeRefusal, type Identity, type PublishLimits } from './policy.js';

export interface HubAccessOptions {
  /** Per-node credentials; without a file nobody is proven (the loopback quick start). */
  readonly credentialsFile?: string;
  readonly limits: PublishLimits;
  readonly counters: Counters;
  readonly log: Logger;
  /** The hub's own node, served over an in-memory stream. */
  readonly hubNode: string;
  readonly loginLimits?: LoginLimiterOptions;
}

/** A hash no password matches: unknown users cost a login as much time as known ones, so timing tells nothing. */
const NOBODY = `scrypt$16384$8$1$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(32).toString('base64')}`;

/** Who a connection is: proven by a credential, or (without credentials) only its client id. */
type Who = Identity | { readonly node: string; readonly role?: undefined };

function refusal(returnCode: 4 | 5, message: string): AuthenticateError {
  // 4 = bad user name or password, 5 = not authorized (MQTT 3.1.1 CONNACK return codes).
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/**
 * The hub's side of identity (PROTOCOL.md, "Identity"): it logs nodes in against the credentials file
 * (client id = username = node id, so nobody can take over another node's id), rate-limits failed logins
 * per source address, and holds every publish and subscription to the topic policy. The file is read
 * again whenever it changes; a node whose credential was removed or changed is disconnected.
 */
export class HubAccess {
  private credentials: Map<string, Credential> | undefined;
  private stamp = '';
  /** Failed logins per source address and user name, and per source address alone. */
  private readonly limiter: LoginLimiter;
  private readonly sourceLimiter: LoginLimiter;
  private readonly who = new WeakMap<Client, Who>();
  private readonly internal = new WeakMap<object, Identity>();
  /** Node -> the hash and password digest it last logged in with: a reconnect costs no second scrypt. */
  private readonly verified = new Map<string, string>();

  constructor(private readonly opts: HubAccessOptions) {
    this.limiter = new LoginLimiter(opts.loginLimits);
    this.sourceLimiter = new LoginLimiter(opts.loginLimits !== undefined ? { ...opts.loginLimits, freeFailures: opts.loginLimits.freeFailures * 10 } : DEFAULT_SOURCE_LIMITS);
    if (opts.credentialsFile !== undefined) this.reload();
  }

  /** True when logins are checked against a credentials file. */
  get secured(): boolean {
    return this.opts.credentialsFile !== undefined;
  }

  /**
   * Marks an in-memory connection from this process: it logs in without a password as the hub's own node,
   * or as `identity` (a node `ucp up` runs beside the hub, as trusted as the hub itself).
   */
  markInternal(stream: object, identity: Identity = { node: this.opts.hubNode, role: 'hub' }): void {
    this.internal.set(stream, identity);
  }

  /** Reads the credentials file again if it changed; returns true if it did. A bad file keeps the old one. */
  reload(): boolean {
    const path = this.opts.credentialsFile;
    if (path === undefined) return false;
    const stamp = fileStamp(path);
    if (stamp === this.stamp) return false;
    try {
      const next = readCredentialsFile(path);
      const first = this.credentials === undefined;
      this.credentials = next;
      this.stamp = stamp;
      this.verified.clear();
      this.opts.log.info({ file: path, nodes: next.size }, first ? 'credentials loaded' : 'credentials reloaded');
      return true;
    } catch (err) {
      this.opts.counters.inc('credentials_reload_failed');
      this.opts.log.error({ file: path, err: (err as Error).message }, 'credentials file not reloaded; the previous one stays in force');
      // Keep failing loudly only once per version of the file.
      this.stamp = stamp;
      this.credentials ??= new Map();
      return false;
    }
  }

  /** Whether a connected client still holds the credential it logged in with. */
  stillValid(client: Client): boolean {
    const who = this.who.get(client);
    if (who === undefined || who.role === undefined || this.internal.has(client.conn)) return true;
    const cred = this.credentials?.get(who.node);
    return cred !== undefined && cred.role === who.role;
  }

  authenticate(client: Client, username: string | undefined, password: Buffer | undefined, done: (err: AuthenticateError | null, ok: boolean) => void): void {
    const internal = this.internal.get(client.conn);
    if (internal !== undefined) {
      if (client.id !== internal.node) return done(refusal(5, `in-process connection for ${internal.node} used client id ${client.id}`), false);
      this.who.set(client, internal);
      done(null, true);
      return;
    }
    if (!this.secured) {
      this.who.set(client, { node: client.id });
      done(null, true);
      return;
    }
    void this.login(client, username, password).then(
      (err) => (err === undefined ? done(null, true) : done(err, false)),
      (err: Error) => done(refusal(5, err.message), false),
    );
  }

  private async login(client: Client, username: string | undefined, password: Buffer | undefined): Promise<AuthenticateError | undefined> {
    const source = remoteAddress(client);
    // Keyed by user too: guesses at one node's password from one address do not lock everyone else there out.
    const key = `${source}\0${username ?? client.id}`;
    const counters = this.opts.counters;
    const wait = Math.max(this.limiter.waitMs(key), this.sourceLimiter.waitMs(source));
    if (wait > 0) {
      counters.reject(this.opts.log, 'login_refused_rate_limited', source, `too many failed logins from ${source}; the next is checked in ${Math.ceil(wait / 1_000)} s`);
      return refusal(5, 'too many failed logins; wait before trying again');
    }
    this.reload();
    const fail = (counter: string, code: 4 | 5, reason: string) => {
      this.limiter.failed(key);
      this.sourceLimiter.failed(source);
      counters.reject(this.opts.log, counter, `${client.id}@${source}`, reason);
      return refusal(code, reason);
    };
    const certNode = certificateNode(client);
    const name = username ?? certNode;
    if (name === undefined) return fail('login_refused_bad_password', 4, 'no user name or client certificate given');
    // [Identity] client id = username = node id: a connection can only ever be the node it proved to be.
    if (client.id !== name) return fail('login_refused_client_id', 5, `client id ${client.id} is not the user name ${name}`);
    const cred = this.credentials?.get(name);
    if (password === undefined && certNode === name && cred?.certificate === true) return this.admit(client, cred, key);
    if (password === undefined) return fail('login_refused_bad_password', 4, `${name} gave no password`);
    const digest = createHash('sha256').update(password).digest('base64');
    if (cred?.scrypt !== undefined && this.verified.get(name) === `${cred.scrypt}\0${digest}`) return this.admit(client, cred, key);
    const ok = await verifyPassword(cred?.scrypt ?? NOBODY, password);
    if (!ok || cred === undefined) return fail('login_refused_bad_password', 4, cred === undefined ? `${name} has no credential` : `wrong password for ${name}`);
    // The file may have changed while scrypt ran: only a hash still in force counts.
    if (this.credentials?.get(name)?.scrypt !== cred.scrypt) return fail('login_refused_bad_password', 4, `${name}'s credential changed while it logged in`);
    this.verified.set(name, `${cred.scrypt}\0${digest}`);
    return this.admit(client, cred, key);
  }

  private admit(client: Client, cred: Credential, key: string): undefined {
    this.limiter.succeeded(key);
    this.who.set(client, { node: cred.node, role: cred.role });
    this.opts.counters.inc('logins');
    return undefined;
  }

  authorizePublish(client: Client | null, packet: PublishPacket, done: (err?: Error | null) => void): void {
    // A null client is the hub publishing a will left by a connection from before it restarted.
    if (client === null) return done(null);
    const who = this.who.get(client) ?? { node: client.id };
    const refused = publishRefusal(who, packet.topic, packet.retain, packet.payload.length, this.opts.limits);
    if (refused === undefined) return done(null);
    this.opts.counters.reject(this.opts.log, refused.counter, client.id, refused.reason);
    done(new Error(refused.reason));
  }

  authorizeSubscribe(client: Client, sub: Subscription, done: (err: Error | null, sub: Subscription | null) => void): void {
    const who = this.who.get(client);
    const refused = subscribeRefusal(who?.role !== undefined ? (who as Identity) : undefined, sub.topic);
    if (refused === undefined) return done(null, sub);
    this.opts.counters.reject(this.opts.log, refused.counter, client.id, refused.reason);
    // Negated (SUBACK 0x80), not disconnected: the client learns its subscription was refused.
    done(null, null);
  }
}

function remoteAddress(client: Client): string {
  const conn = client.conn as { remoteAddress?: string };
  return conn.remoteAddress ?? 'unknown';
}

/** The common name of a client certificate the hub's client CA signed, if the connection has one. */
function certificateNode(client: Client): string | undefined {
  const conn = client.conn as Partial<TLSSocket>;
  if (conn.authorized !== true || typeof conn.getPeerCertificate !== 'function') return undefined;
  const cn = conn.getPeerCertificate().subject?.CN;
  return typeof cn === 'string' ? cn : undefined;
}
