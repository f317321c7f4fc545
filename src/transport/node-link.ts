import { hostname, loadavg, availableParallelism } from 'node:os';
import type { Duplex } from 'node:stream';
import type { HlcTimestamp, VectorClock } from '../clock/index.js';
import {
  encode,
  encodeBundle,
  isBundle,
  MAX_BUNDLE_ENVELOPES,
  PROTOCOL_VERSION,
  Topics,
  type AnyEnvelope,
  type BodyOf,
  type CodecLimits,
  type Envelope,
  type Kind,
  type Role,
} from '../protocol/index.js';
import type { Logger } from '../log/index.js';
import type { NodeStore } from '../store/index.js';
import { ClockKeeper } from './clock-keeper.js';
import { Counters } from './counters.js';
import { Deduplicator } from './dedup.js';
import { DurableOutbox, RETRY_JITTER_LOW, type OutboxEntry } from './outbox.js';
import { HubConnection } from './hub-connection.js';
import { parseHubUrl, type TlsMaterial } from './connect.js';
import { PeerTable, type DownReason, type PeerState, type PresenceEvent } from './presence.js';
import { RemoteError, TransportError } from './errors.js';
import { admit, admitBundle, type Admission } from './receive/index.js';
import { SOFTWARE } from './software.js';

export interface LinkTiming {
  readonly keepaliveS: number;
  readonly connectTimeoutMs: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  readonly requestTimeoutMs: number;
  readonly dedupWindow: number;
  readonly dedupTtlS: number;
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
  readonly heartbeatIntervalMs: number;
  readonly deadAfterMs: number;
}

export interface NodeLinkOptions {
  readonly nodeId: string;
  readonly role: Role;
  readonly cluster: string;
  readonly hubUrl: string;
  /** This node's password: it logs in as its node id. */
  readonly password?: string;
  /** For an mqtts:// hub: the CA to trust, and the client certificate if that is the credential. */
  readonly tls?: TlsMaterial;
  readonly logger: Logger;
  readonly limits: CodecLimits;
  readonly timing: LinkTiming;
  /** See ClockKeeper: 0 adopts any peer's HLC. */
  readonly maxClockOffsetMs: number;
  /**
   * The node's LMDB store: required for the durable outbox, persistent duplicate suppression, the
   * incarnation and a broker's clock counter. A short-lived command-line tool runs without one and cannot
   * send durably.
   */
  readonly store?: NodeStore;
  /**
   * Publish a retained birth, a last will and heartbeats. Short-lived tools leave this off so that they
   * never appear in, or vanish from, the cluster's presence.
   */
  readonly announce: boolean;
  /** Track other nodes' births, deaths and heartbeats. */
  readonly watchPresence: boolean;
  /**
   * Whose heartbeats to receive when watching presence: everyone's (brokers, and tools that list nodes),
   * or only the brokers' (executors, datastores, clients and bridges only ever ask which broker is alive).
   * Each heartbeat received costs a wake-up, a decode and the hub's forwarding, once a second per node.
   * Births and deaths are always watched; a peer whose heartbeats are not received is dead by its will.
   */
  readonly heartbeatsFrom?: 'all' | 'brokers';
  /** An in-memory connection to an embedded hub in this process, instead of a socket to hubUrl. */
  readonly stream?: () => Duplex;
  /** Counters to report in `status` (e.g. shared with the embedded hub this node speaks for). */
  readonly counters?: Counters;
}

/**
 * What a handler may do about the link's own handling of a durable message (see on()).
 * `remember()` writes the link's record of the message now, so that it shares the LMDB batch of the
 * writes the handler issues in the same turn; without a call the link writes it after the handler
 * settles, in a commit of its own.
 * `answered()`: the handler has sent the sender a durable message that the sender takes for the
 * acknowledgement (an executor's result answers its assignment; see acknowledgedBy()), so the link sends
 * none of its own. A copy that arrives again is acknowledged as usual.
 */
export interface Delivery {
  remember(): void;
  answered(): void;
}

/** What a handler did through its Delivery. */
interface Handling {
  recorded?: Promise<void>;
  answered: boolean;
}

export type Handler<K extends Kind> = (msg: Envelope<K>, delivery: Delivery) => void | Promise<void>;
export type PresenceListener = (event: PresenceEvent) => void;

/** Payloads waiting to go to one topic as a bundle, and their size. */
interface Posted {
  payloads: Uint8Array[];
  bytes: number;
}

interface PendingRequest {
  to: string;
  kind: Kind;
  resolve: (msg: AnyEnvelope) => void;
  reject: (err: Error) => void;
  /** performance.now() after which the request has failed. */
  deadline: number;
  timeoutMs: number;
  /** The request as sent, to send again under the same id (resendRequests). */
  payload: Uint8Array;
}

/** How often unanswered requests are checked against their deadlines. */
const REQUEST_SWEEP_MS = 25;
/**
 * Recent replies kept to answer a request sent again (see answerAgain): at most this many, this many bytes,
 * for this long, none larger than RECENT_REPLY_MAX_BYTES. A requester resends once it is back on the hub,
 * within seconds of losing it. Large replies (chunks of data) are not kept: their readers ask again.
 */
const RECENT_REPLIES = 1_024;
const RECENT_REPLY_BYTES = 1_048_576;
const RECENT_REPLY_MAX_BYTES = 16_384;
const RECENT_REPLY_MS = 30_000;

/** Kinds the link answers itself; roles register handlers for the rest. */
const LINK_KINDS: ReadonlySet<Kind> = new Set<Kind>(['ack', 'ping', 'status_request']);
/** How often on-disk duplicate ids older than the TTL are swept. */
const DEDUP_PRUNE_INTERVAL_MS = 10 * 60_000;
/** The soonest the outbox's retry timer fires again: bounds how often entries due one by one wake it. */
const MIN_RETRY_WAIT_MS = 10;
/** How long a clean stop waits for its graceful death to be acknowledged by the hub. */
const DEATH_PUBLISH_TIMEOUT_MS = 1_000;

/**
 * A node's connection to the cluster: CBOR envelopes stamped with the vector clock and HLC, presence
 * (birth, last will, heartbeats), a durable outbox, request/reply and duplicate suppression, over a hub
 * connection with TCP_NODELAY. Every role runs on one of these.
 */
export class NodeLink {
  readonly id: string;
  readonly role: Role;
  readonly topics: Topics;
  readonly limits: CodecLimits;
  readonly counters: Counters;
  readonly peers: PeerTable;
  /** 0 for a link without a store: it has no identity to carry across restarts. */
  readonly incarnation: number;
  private readonly clocks: ClockKeeper;
  private readonly log: Logger;
  private readonly hub: HubConnection;
  private readonly outbox?: DurableOutbox;
  private readonly dedup: Deduplicator;
  /** Messages being handled now: a copy arriving meanwhile must neither run again nor be acknowledged. */
  private readonly inFlight = new Set<string>();
  private readonly handlers = new Map<Kind, Handler<Kind>>();
  /** Kinds whose handlers recognise a redelivered durable message themselves (see on()). */
  private readonly selfDeduplicating = new Set<Kind>();
  private readonly presenceListeners: PresenceListener[] = [];
  private readonly heartbeatListeners: Array<(peer: Readonly<PeerState>) => void> = [];
  private readonly requests = new Map<string, PendingRequest>();
  /** Replies sent lately to requests, by (requester, request id), oldest first. */
  private readonly recentReplies = new Map<string, { topic: string; payload: Uint8Array; at: number }>();
  private recentReplyBytes = 0;
  /** Inbox payloads sent this turn of the event loop, by topic: what goes to one node travels as one bundle. */
  private readonly posted = new Map<string, Posted>();
  private postFlush: NodeJS.Immediate | undefined;
  private requestSweeper: NodeJS.Timeout | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly startedAt = performance.now();
  private readonly idPrefix: string;
  private seq = 0;
  private heartbeatSeq = 0;
  /** Outbox retries (armRetries); unset while nothing in the outbox waits for a retry. */
  private retryTimer?: NodeJS.Timeout;
  private retryAt = 0;
  /** When the first live peer would expire (armExpiry); unset while no peer is alive. */
  private expiryTimer?: NodeJS.Timeout;
  /**
   * Subscribed on a live connection to the hub. While not, this node hears nobody, so nobody's silence
   * counts against them: a peer is declared dead by missed heartbeats only for silence this node could hear.
   */
  private hearing = false;
  private heartbeatFields: () => Pick<BodyOf<'heartbeat'>, 'capabilities' | 'running_jobs' | 'reporting_jobs' | 'job_slots' | 'free_bytes'> = () => ({});
  private statusFields: () => Pick<BodyOf<'status'>, 'bridge'> = () => ({});
  private stopping = false;
  private timersStarted = false;
  private readonly firstReady: Promise<void>;
  private markReady!: () => void;
  private failReady!: (err: Error) => void;

  private constructor(private readonly opts: NodeLinkOptions) {
    this.id = opts.nodeId;
    this.role = opts.role;
    this.topics = new Topics(opts.cluster);
    this.limits = opts.limits;
    this.counters = opts.counters ?? new Counters();
    this.log = opts.logger.child({ component: 'link', node: opts.nodeId });
    this.peers = new PeerTable(opts.timing.deadAfterMs);
    this.incarnation = opts.store?.nextIncarnation() ?? 0;
    // Only brokers own an entry in the vector clock; everyone else forwards what they have seen.
    this.clocks = new ClockKeeper(opts.role === 'broker' ? opts.nodeId : undefined, opts.maxClockOffsetMs, opts.store);
    // Links without a store may share an id prefix with an earlier run, so give them a random one.
    this.idPrefix = opts.store !== undefined ? this.incarnation.toString(36) : `t${Math.random().toString(36).slice(2, 10)}`;
    const timing = opts.timing;
    this.dedup = new Deduplicator(timing.dedupWindow, opts.store?.table<number>('transport_seen'));
    if (opts.store !== undefined) {
      this.outbox = new DurableOutbox(opts.store.table<OutboxEntry>('transport_outbox'), timing);
    }
    const will = opts.announce ? { topic: this.topics.presence(this.role, this.id), payload: encode(this.envelope('death', { graceful: false })), qos: 1 as const, retain: true } : undefined;
    this.hub = new HubConnection(
      {
        url: opts.hubUrl,
        clientId: this.id,
        keepaliveS: timing.keepaliveS,
        connectTimeoutMs: timing.connectTimeoutMs,
        reconnectMinMs: timing.reconnectMinMs,
        reconnectMaxMs: timing.reconnectMaxMs,
        ...(opts.password !== undefined ? { password: opts.password } : {}),
        ...(opts.tls !== undefined ? { tls: opts.tls } : {}),
        ...(will !== undefined ? { will } : {}),
        ...(opts.stream !== undefined ? { stream: opts.stream } : {}),
        log: this.log,
        counters: this.counters,
        quiet: !opts.announce,
        ...(opts.store !== undefined ? { beforePublish: () => opts.store!.commitTurn() } : {}),
      },
      () => void this.onConnect(),
      (topic, payload, retained) => this.onMessage(topic, payload, retained),
      () => (this.hearing = false),
    );
    if (opts.stream === undefined) warnIfPlaintext(opts.hubUrl, this.log);
    this.firstReady = new Promise((resolve, reject) => {
      this.markReady = resolve;
      this.failReady = reject;
    });
    // A link stopped before it ever connected rejects connect(); nobody may be awaiting it.
    this.firstReady.catch(() => undefined);
  }

  /**
   * Creates the link without connecting, so handlers can be registered before the first message can
   * arrive: a durable message of a kind nobody handles yet would only be retried until someone does.
   */
  static create(opts: NodeLinkOptions): NodeLink {
    return new NodeLink(opts);
  }

  /** Connects (waiting for the hub as long as it takes) and resolves once subscribed and born. */
  async connect(): Promise<void> {
    this.hub.start();
    await this.firstReady;
  }

  /** create() and connect() in one, for links that add no handlers. */
  static async start(opts: NodeLinkOptions): Promise<NodeLink> {
    const link = new NodeLink(opts);
    await link.connect();
    return link;
  }

  // ---- sending -------------------------------------------------------------------------------------

  /** Fire-and-forget message to one node's inbox (bundled with the rest of the turn); dropped and counted while the hub is away. */
  send<K extends Kind>(to: string, kind: K, body: BodyOf<K>): string {
    const msg = this.envelope(kind, body);
    this.post(this.inboxOf(to), encode(msg));
    return msg.id;
  }

  /** Sends a reply to `request`, correlated by its id. */
  reply<K extends Kind>(request: AnyEnvelope, kind: K, body: BodyOf<K>): void {
    const msg = this.envelope(kind, body, { re: request.id });
    const topic = this.inboxOf(request.from);
    const payload = encode(msg);
    this.post(topic, payload);
    if (request.ack !== true) this.rememberReply(Deduplicator.key(request.from, request.id), topic, payload);
  }

  /**
   * Keeps a reply for a while: if the requester was away from the hub when it went out, the request comes
   * again (resendRequests), is recognised as a duplicate, and gets this reply instead of nothing.
   */
  private rememberReply(key: string, topic: string, payload: Uint8Array): void {
    if (payload.byteLength > RECENT_REPLY_MAX_BYTES) return;
    const now = performance.now();
    const replaced = this.recentReplies.get(key);
    if (replaced !== undefined) {
      this.recentReplies.delete(key);
      this.recentReplyBytes -= replaced.payload.byteLength;
    }
    // A copy (Buffer's slice() would not be one): the encoder's output is a view into the buffer it encodes
    // into, which may have grown to the largest message sent lately; a kept view would pin all of it.
    this.recentReplies.set(key, { topic, payload: new Uint8Array(payload), at: now });
    this.recentReplyBytes += payload.byteLength;
    for (const [oldest, kept] of this.recentReplies) {
      if (this.recentReplies.size <= RECENT_REPLIES && this.recentReplyBytes <= RECENT_REPLY_BYTES && now - kept.at <= RECENT_REPLY_MS) break;
      this.recentReplies.delete(oldest);
      this.recentReplyBytes -= kept.payload.byteLength;
    }
  }

  /** A request handled before came again: its requester missed the reply, so it goes once more. */
  private answerAgain(key: string): void {
    const kept = this.recentReplies.get(key);
    if (kept === undefined || performance.now() - kept.at > RECENT_REPLY_MS) return;
    this.counters.inc('replies_resent');
    this.post(kept.topic, kept.payload);
  }

  /** Sends a request and resolves with the reply, or rejects after the timeout or with the peer's error. */
  request<K extends Kind>(to: string, kind: K, body: BodyOf<K>, timeoutMs = this.opts.timing.requestTimeoutMs): Promise<AnyEnvelope> {
    const msg = this.envelope(kind, body);
    return new Promise((resolve, reject) => {
      // One sweeping timer serves every request: a timer per request costs more than the round trip.
      const payload = encode(msg);
      this.requests.set(msg.id, { to, kind, resolve, reject, deadline: performance.now() + timeoutMs, timeoutMs, payload });
      this.requestSweeper ??= setInterval(() => this.expireRequests(), REQUEST_SWEEP_MS).unref();
      this.post(this.inboxOf(to), payload);
    });
  }

  private expireRequests(): void {
    const now = performance.now();
    for (const [id, p] of this.requests) {
      if (p.deadline > now) continue;
      this.requests.delete(id);
      this.counters.inc('request_timeouts');
      p.reject(new TransportError('request_timeout', `no reply from ${p.to} to ${p.kind} within ${p.timeoutMs} ms; is it running and attached to this hub?`));
    }
    if (this.requests.size === 0) {
      clearInterval(this.requestSweeper);
      this.requestSweeper = undefined;
    }
  }

  /**
   * A peer seen gone (last will, graceful death, missed heartbeats) will not answer: the requests waiting
   * for it fail now, rather than at the end of a timeout that may be long (a broker gives a datastore 30 s
   * for an append), so callers can try elsewhere or again. A peer that restarted is left alone: what
   * reached its new incarnation may still be answered.
   */
  private failRequestsTo(peer: string, reason: DownReason): void {
    let failed = 0;
    for (const [id, p] of this.requests) {
      if (p.to !== peer) continue;
      this.requests.delete(id);
      failed++;
      p.reject(new TransportError('peer_down', `${peer} went down (${reason}) before it answered ${p.kind}`));
    }
    if (failed === 0) return;
    this.counters.inc('requests_failed_peer_down', failed);
    this.log.info({ peer, failed }, 'requests waiting for a peer that went down failed early');
  }

  /**
   * Sends the requests still waiting for `peer` (for anyone, when omitted) again, under their own ids.
   * Sessions are clean, so a request published while its receiver, or this node, was away from the hub
   * reached nobody and would wait out its whole timeout. A receiver that did get the first copy drops this
   * one as a duplicate, so nothing is handled twice.
   */
  private resendRequests(peer?: string): void {
    let resent = 0;
    for (const p of this.requests.values()) {
      if (peer !== undefined && p.to !== peer) continue;
      this.post(this.inboxOf(p.to), p.payload);
      resent++;
    }
    if (resent > 0) this.counters.inc('requests_resent', resent);
  }

  /**
   * Sends a message through the durable outbox: it is written to LMDB, and retried until `to` acknowledges
   * it, across restarts of either side and while the hub is unreachable. Resolves with the message id once
   * the message is stored.
   */
  async sendDurable<K extends Kind>(to: string, kind: K, body: BodyOf<K>): Promise<string> {
    const { id, stored } = this.sendDurableNow(to, kind, body);
    await stored;
    return id;
  }

  /** sendDurable() that tells the message's id at once, beside the promise of its storing. */
  sendDurableNow<K extends Kind>(to: string, kind: K, body: BodyOf<K>): { id: string; stored: Promise<void> } {
    if (this.outbox === undefined) throw new TransportError('no_store', 'this link has no data directory, so it cannot send durably');
    const topic = this.inboxOf(to);
    const msg = this.envelope(kind, body, { ack: true });
    const payload = encode(msg);
    const stored = this.outbox.add({ id: msg.id, to, topic, kind, payload, createdAt: Date.now() });
    // A new message is due no sooner than its first backoff: a timer armed for earlier covers it.
    if (this.retryTimer === undefined || this.retryAt > performance.now() + this.opts.timing.retryInitialMs * RETRY_JITTER_LOW) this.armRetries();
    if (this.hub.connected) this.post(topic, payload);
    return { id: msg.id, stored };
  }

  /**
   * Takes a message that arrived from `from` for the acknowledgement of the durable message `messageId`
   * sent to it (the handler on its side said so with Delivery.answered()). Returns false if that message
   * is not pending, or went to someone else.
   */
  acknowledgedBy(messageId: string, from: string): boolean {
    return this.outbox?.acknowledge(messageId, from) === true;
  }

  /** Resolves when the receiver has acknowledged a durable message. */
  delivered(messageId: string): Promise<void> {
    return this.outbox?.delivered(messageId) ?? Promise.resolve();
  }

  /**
   * Withdraws undelivered durable messages of one kind to one node, e.g. assignments to an executor that
   * was lost (its jobs went elsewhere). Returns how many.
   */
  withdraw(to: string, kind: Kind): number {
    return this.outbox?.withdraw(to, kind, new TransportError('withdrawn', `the ${kind} to ${to} was withdrawn`)) ?? 0;
  }

  /**
   * Re-addresses undelivered durable messages of one kind from `from` to `to`, e.g. job results owed to a
   * lost broker, to the broker that adopted its jobs; they go out at once. Returns how many.
   */
  redirect(from: string, kind: Kind, to: string): number {
    const n = this.outbox?.redirect(from, kind, to, this.inboxOf(to)) ?? 0;
    if (n > 0) this.flushOutbox();
    return n;
  }

  /** The nodes that durable messages of one kind are still waiting for. */
  owedTo(kind: Kind): Set<string> {
    return this.outbox?.receivers(kind) ?? new Set();
  }

  /** What this node still owes others, in the order it was sent. */
  pendingMessages(): Array<Pick<OutboxEntry, 'id' | 'to' | 'kind' | 'createdAt'>> {
    return (this.outbox?.entries() ?? []).map(({ id, to, kind, createdAt }) => ({ id, to, kind, createdAt }));
  }

  get outboxPending(): number {
    return this.outbox?.size ?? 0;
  }

  // ---- receiving -----------------------------------------------------------------------------------

  /**
   * Registers the handler for a kind arriving in this node's inbox. For a durable message the handler's
   * promise must settle before the acknowledgement goes out: a handler that throws gets the message again.
   *
   * `recognisesRedelivery`: the handler itself tells a durable message it has handled before from what it
   * committed (first come, first served does, for results), so the link keeps no record of the message
   * on disk: one commit less per message. Such a handler settles only once what it wrote is durable. The
   * link still drops copies it remembers in memory.
   *
   * A handler that calls `delivery.remember()` in the turn it writes has the link's record of a durable
   * message share its LMDB commit. If the handler then fails, the record is removed before a resent copy
   * can be let in.
   */
  on<K extends Kind>(kind: K, handler: Handler<K>, options: { recognisesRedelivery?: boolean } = {}): void {
    if (LINK_KINDS.has(kind)) throw new Error(`the link handles "${kind}" itself`);
    this.handlers.set(kind, handler as unknown as Handler<Kind>);
    if (options.recognisesRedelivery === true) this.selfDeduplicating.add(kind);
  }

  onPresence(listener: PresenceListener): void {
    this.presenceListeners.push(listener);
  }

  /** Called after every accepted heartbeat of a live peer, e.g. to reconsider queued work. */
  onHeartbeat(listener: (peer: Readonly<PeerState>) => void): void {
    this.heartbeatListeners.push(listener);
  }

  /** Adds role-specific fields (capabilities, running jobs, free space) to every heartbeat. */
  setHeartbeatFields(fields: () => Pick<BodyOf<'heartbeat'>, 'capabilities' | 'running_jobs' | 'reporting_jobs' | 'job_slots' | 'free_bytes'>): void {
    this.heartbeatFields = fields;
  }

  /** Adds role-specific sections (a bridge's field side and buffer) to every status reply. */
  setStatusFields(fields: () => Pick<BodyOf<'status'>, 'bridge'>): void {
    this.statusFields = fields;
  }

  /**
   * Timestamps for a local event that others will order, such as a broker's metadata change: a broker
   * ticks its own vector-clock entry, as it does for a message it sends.
   */
  stamp(): { vc: VectorClock; hlc: HlcTimestamp } {
    return this.clocks.stamp();
  }

  /** A fresh HLC timestamp from this node's clock, e.g. the version of a write. */
  now(): HlcTimestamp {
    return this.clocks.hlc.now();
  }

  // ---- lifecycle -----------------------------------------------------------------------------------

  get connected(): boolean {
    return this.hub.connected;
  }

  /** The last error the hub connection reported, for messages that explain why nothing connects. */
  get lastHubError(): string | undefined {
    return this.hub.lastError;
  }

  /** The vector clock this node last stamped or merged. */
  clock(): VectorClock {
    return this.clocks.clock();
  }

  /**
   * Leaves cleanly: a graceful death replaces the retained birth (so nobody waits for a timeout), then
   * DISCONNECT, which tells the hub not to publish the last will.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.expiryTimer);
    clearTimeout(this.retryTimer);
    clearInterval(this.requestSweeper);
    for (const [, pending] of this.requests) pending.reject(new TransportError('link_closed', 'the link was stopped before a reply arrived'));
    this.requests.clear();
    this.failReady(new TransportError('link_closed', 'the link was stopped before it connected'));
    this.outbox?.abandonWaiters(new TransportError('link_closed', 'the link was stopped; the message stays in the outbox and is sent on the next start'));
    this.outbox?.removeAcknowledged();
    // Replies and acknowledgements of this turn go out before the death that says we are gone.
    this.flushPosted();
    if (this.opts.announce && this.hub.connected) {
      const death = encode(this.envelope('death', { graceful: true }));
      await new Promise<void>((resolve) => {
        if (!this.hub.publish(this.topics.presence(this.role, this.id), death, true, resolve)) resolve();
        setTimeout(resolve, DEATH_PUBLISH_TIMEOUT_MS).unref();
      });
    }
    await this.hub.end();
  }

  status(): BodyOf<'status'> {
    const timings = Object.entries(this.counters.timingSummaries());
    return {
      software: SOFTWARE,
      uptime_ms: this.uptimeMs(),
      outbox_pending: this.outboxPending,
      peers: this.peers.peers().map((p) => ({ id: p.id, role: p.role, incarnation: p.incarnation, alive: p.alive })),
      counters: { ...this.counters.snapshot(), hlc_max_drift_ms: Math.max(0, Math.round(this.clocks.maxObservedDriftMs)) },
      ...(timings.length > 0 ? { timings: Object.fromEntries(timings) } : {}),
      ...this.statusFields(),
    };
  }

  // ---- internals: sending --------------------------------------------------------------------------

  private envelope<K extends Kind>(kind: K, body: BodyOf<K>, extra?: { re?: string; ack?: boolean }): Envelope<K> {
    const { vc, hlc } = this.clocks.stamp();
    return {
      v: PROTOCOL_VERSION,
      kind,
      id: `${this.idPrefix}.${(this.seq++).toString(36)}`,
      from: this.id,
      role: this.role,
      inc: this.incarnation,
      vc,
      hlc,
      body,
      ...(extra?.re !== undefined ? { re: extra.re } : {}),
      ...(extra?.ack === true ? { ack: true } : {}),
    };
  }

  /** The topic of a message from this node to `to`: it names this node and its role as the sender. */
  private inboxOf(to: string): string {
    return this.topics.inbox(to, this.role, this.id);
  }

  private uptimeMs(): number {
    return Math.round(performance.now() - this.startedAt);
  }

  private async onConnect(): Promise<void> {
    const subs: Record<string, { qos: 1 }> = { [this.topics.inboxOf(this.id)]: { qos: 1 } };
    if (this.opts.watchPresence) {
      subs[this.topics.all('presence')] = { qos: 1 };
      subs[this.opts.heartbeatsFrom === 'brokers' ? this.topics.heartbeatsOf('broker') : this.topics.all('heartbeat')] = { qos: 1 };
    } else if (this.opts.announce) {
      // Still watch our own presence topic, to repair it if a stale last will overwrote our birth.
      subs[this.topics.presence(this.role, this.id)] = { qos: 1 };
    }
    if (!(await this.hub.subscribe(subs))) return;
    // stop() may have run while the subscription was on its way: a birth now would follow our death.
    if (this.stopping) return;
    if (!this.hearing) {
      this.hearing = true;
      this.peers.heardAgain();
    }
    // Requests made while the link was down went nowhere (a copy that did arrive is dropped as a duplicate).
    this.resendRequests();
    if (this.opts.announce) {
      this.publishBirth();
      // At once rather than after an interval: brokers learn an executor's capabilities from it.
      this.publishHeartbeat();
    }
    this.log.info({ hub: this.opts.hubUrl, incarnation: this.incarnation }, 'connected');
    this.outbox?.expedite();
    this.flushOutbox();
    this.startTimers();
    this.armExpiry();
    this.markReady();
  }

  private publishBirth(): void {
    const birth = this.envelope('birth', {
      software: SOFTWARE,
      host: hostname().slice(0, 255),
      pid: process.pid,
      heartbeat_interval_ms: this.opts.timing.heartbeatIntervalMs,
    });
    this.hub.publish(this.topics.presence(this.role, this.id), encode(birth), true);
  }

  private startTimers(): void {
    if (this.timersStarted || this.stopping) return;
    this.timersStarted = true;
    const t = this.opts.timing;
    if (this.opts.announce) {
      this.timers.push(setInterval(() => this.publishHeartbeat(), t.heartbeatIntervalMs));
    }
    this.armExpiry();
    this.armRetries();
    if (this.outbox !== undefined) {
      this.timers.push(
        setInterval(() => {
          // The earlier of HLC and wall time: a peer that dragged the HLC far ahead must not make every
          // remembered id look expired (an unset clock errs the other way, keeping ids longer).
          const cutoff = Math.min(this.clocks.hlc.now().wall, Date.now()) - t.dedupTtlS * 1_000;
          this.dedup.prune(cutoff).catch((err: Error) => this.log.warn({ err: err.message }, 'dedup prune failed'));
        }, DEDUP_PRUNE_INTERVAL_MS),
      );
    }
    for (const timer of this.timers) timer.unref();
  }

  /**
   * Wakes for the outbox's next retry that is due, not on a fixed tick, and never for messages to a node
   * known to be down: those go again when it comes back (emitPresence). A node that owes messages to a
   * datastore removed for good then sleeps, instead of waking four times a second to scan them all.
   */
  private armRetries(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.outbox === undefined || !this.timersStarted || this.stopping) return;
    const next = this.outbox.nextDueAt(this.heldBack);
    if (next === undefined) return;
    this.retryAt = next;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.flushOutbox();
    }, Math.max(MIN_RETRY_WAIT_MS, next - performance.now()));
    this.retryTimer.unref();
  }

  /** Messages to a node seen down wait for it to come back: sending them reaches nobody. */
  private readonly heldBack = (to: string): boolean => this.peers.get(to)?.alive === false;

  /**
   * Checks for silent peers when the first live one would expire, not on a fixed tick: an idle node wakes
   * every few seconds for this instead of four times a second, and never while no peer is alive.
   */
  private readonly heartbeatWatched = (role: Role): boolean => this.opts.heartbeatsFrom !== 'brokers' || role === 'broker';

  private armExpiry(): void {
    if (!this.opts.watchPresence || !this.timersStarted || this.stopping || this.expiryTimer !== undefined) return;
    const waitMs = this.peers.msUntilExpiry(this.heartbeatWatched);
    if (waitMs === undefined) return;
    // A millisecond late, so a peer silent for exactly the limit counts as expired.
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      // Not re-armed while deaf: onConnect arms it again, with every live peer given a fresh limit.
      if (!this.hearing) return;
      this.emitPresence(this.peers.expire(this.heartbeatWatched));
      this.armExpiry();
    }, waitMs + 1);
    this.expiryTimer.unref();
  }

  private publishHeartbeat(): void {
    if (!this.hub.connected) return;
    const hb = this.envelope('heartbeat', {
      seq: this.heartbeatSeq++,
      uptime_ms: this.uptimeMs(),
      rss_bytes: process.memoryUsage.rss(),
      load: Math.min(1_000, (loadavg()[0] ?? 0) / availableParallelism()),
      outbox_pending: this.outboxPending,
      ...this.heartbeatFields(),
    });
    this.hub.publish(this.topics.heartbeat(this.role, this.id), encode(hb));
  }

  /**
   * Queues an inbox payload until the end of this turn of the event loop (setImmediate runs right after the
   * turn's I/O callbacks, so a lone message waits microseconds). Everything sent to one node in the turn
   * then goes as one MQTT message (PROTOCOL.md, "Bundles"): under load, acknowledgements, replies and
   * assignments share publishes, and the hub and the receiver handle one message instead of dozens.
   */
  private post(topic: string, payload: Uint8Array): void {
    if (!this.hub.connected) {
      // Dropped and counted now, as the caller is told.
      this.hub.publish(topic, payload);
      return;
    }
    let queued = this.posted.get(topic);
    // Room for the array header too; a payload that would not fit goes in the next bundle.
    if (queued !== undefined && (queued.bytes + payload.byteLength + 3 > this.limits.maxMessageBytes || queued.payloads.length === MAX_BUNDLE_ENVELOPES)) {
      this.publishPosted(topic, queued);
      queued = undefined;
    }
    if (queued === undefined) this.posted.set(topic, (queued = { payloads: [], bytes: 0 }));
    queued.payloads.push(payload);
    queued.bytes += payload.byteLength;
    this.postFlush ??= setImmediate(() => this.flushPosted());
  }

  private flushPosted(): void {
    if (this.postFlush !== undefined) clearImmediate(this.postFlush);
    this.postFlush = undefined;
    this.hub.batch(() => {
      for (const [topic, queued] of this.posted) this.publishPosted(topic, queued);
    });
  }

  private publishPosted(topic: string, queued: Posted): void {
    this.posted.delete(topic);
    if (queued.payloads.length === 1) {
      // A lone envelope goes as itself: the same bytes a node without bundles sends.
      this.hub.publish(topic, queued.payloads[0]!);
      return;
    }
    this.counters.inc('tx_bundled', queued.payloads.length);
    this.hub.publish(topic, encodeBundle(queued.payloads));
  }

  private flushOutbox(): void {
    if (this.outbox === undefined || !this.hub.connected) return;
    for (const entry of this.outbox.due(this.heldBack)) {
      this.counters.inc('outbox_sends');
      // Derived again rather than stored: entries written before a topic change still reach their node.
      this.post(this.inboxOf(entry.to), entry.payload);
    }
    this.armRetries();
  }

  // ---- internals: receiving ------------------------------------------------------------------------

  private emitPresence(events: PresenceEvent[]): void {
    // A peer that came alive may be the first one: watch it from now on.
    if (events.some((e) => e.type === 'up')) this.armExpiry();
    for (const event of events) {
      if (event.type === 'up') {
        this.log.info({ peer: event.peer.id, role: event.peer.role, incarnation: event.peer.incarnation, restartedFrom: event.restartedFrom, rejoined: event.rejoined }, 'peer up');
        // Whatever we owe a node that just came back is due now, not at its next backoff.
        this.outbox?.expedite(event.peer.id);
        this.flushOutbox();
      } else {
        this.log.info({ peer: event.peer.id, role: event.peer.role, incarnation: event.incarnation, reason: event.reason }, 'peer down');
        if (event.reason !== 'restarted') this.failRequestsTo(event.peer.id, event.reason);
      }
      for (const listener of this.presenceListeners) {
        try {
          listener(event);
        } catch (err) {
          this.counters.inc('listener_errors');
          this.log.error({ err: (err as Error).message }, 'presence listener failed');
        }
      }
    }
  }

  /** `retained` is set for messages the hub replays because we just subscribed, not for live ones. */
  private onMessage(topic: string, payload: Buffer, retained: boolean): void {
    this.counters.inc('rx_messages');
    if (!isBundle(payload)) {
      this.onAdmitted(admit(this, topic, payload, retained), retained);
      return;
    }
    const admissions = admitBundle(this, topic, payload, retained);
    this.counters.inc('rx_bundled', admissions.length);
    for (const admitted of admissions) this.onAdmitted(admitted, retained);
  }

  private onAdmitted(admitted: Admission, retained: boolean): void {
    if (admitted.ok === false) {
      this.counters.reject(this.log, admitted.counter, admitted.source, admitted.reason);
      return;
    }
    if (admitted.ok === 'cleared') {
      // An empty retained payload is how MQTT clears a retained message: someone forgot a node on purpose.
      if (admitted.node !== this.id) this.peers.forget(admitted.node);
      return;
    }
    const { msg, where } = admitted;
    if (msg.from === this.id && where.cls !== 'inbox') {
      if (msg.kind === 'death' && !retained && this.opts.announce && !this.stopping && this.hub.connected) {
        // A last will from an older incarnation (or from a connection the hub gave up on) replaced our
        // retained birth. We are alive: say so again. (A retained death replayed on subscribing is the
        // previous run's, and the birth we publish next replaces it anyway.)
        this.counters.inc('birth_repaired');
        this.publishBirth();
      }
      return;
    }
    if (msg.from !== this.id) {
      const sender = msg.role === 'broker' ? msg.from : undefined;
      const observed = this.clocks.observe(msg.vc, msg.hlc, (id) => id === sender || this.peers.get(id)?.role === 'broker');
      if (!observed.hlc) this.counters.reject(this.log, 'hlc_refused', msg.from, `HLC ${msg.hlc.wall}.${msg.hlc.logical} not adopted (too far ahead or logical counter too large)`);
      if (!observed.vc) this.counters.reject(this.log, 'vc_refused', msg.from, 'vector clock not adopted (claims our own future events or too many entries)');
      if (observed.ignored > 0) {
        // Routine, not hostile: a node that just started hears from others before it has seen every
        // broker's birth. Counted, and told only at debug, so a query command's stderr stays clean.
        this.counters.inc('vc_entries_ignored');
        this.log.debug({ from: msg.from, ignored: observed.ignored }, 'vector clock entries naming no known broker left out');
      }
    }
    switch (msg.kind) {
      case 'birth': {
        const events = this.peers.onBirth(msg.from, msg.role, msg.inc, msg.body);
        this.emitPresence(events);
        // A live birth from a peer we hold alive, same incarnation: it lost the hub and is back, subscribed
        // again. What we asked it meanwhile may have reached nobody.
        const peer = this.peers.get(msg.from);
        if (!retained && events.length === 0 && peer?.alive === true && peer.incarnation === msg.inc) this.resendRequests(msg.from);
        return;
      }
      case 'death':
        this.onDeath(msg);
        return;
      case 'heartbeat': {
        this.emitPresence(this.peers.onHeartbeat(msg.from, msg.role, msg.inc, msg.body));
        const peer = this.peers.get(msg.from);
        if (peer?.alive === true && peer.incarnation === msg.inc) {
          for (const listener of this.heartbeatListeners) {
            try {
              listener(peer);
            } catch (err) {
              this.counters.inc('listener_errors');
              this.log.error({ err: (err as Error).message }, 'heartbeat listener failed');
            }
          }
        }
        return;
      }
      default:
        this.peers.touch(msg.from, msg.inc);
        try {
          this.onInbox(msg);
        } catch (err) {
          // Nothing may escape into the MQTT client's event handler: it would take the node down.
          this.counters.inc('handler_errors');
          this.log.error({ err: (err as Error).message, kind: msg.kind, from: msg.from }, 'inbox processing failed');
        }
    }
  }

  private onDeath(msg: Envelope<'death'>): void {
    const before = this.peers.staleIgnored;
    this.emitPresence(this.peers.onDeath(msg.from, msg.role, msg.inc, msg.body.graceful));
    if (this.peers.staleIgnored > before) {
      this.counters.inc('stale_deaths_ignored');
      this.log.info({ peer: msg.from, incarnation: msg.inc, current: this.peers.get(msg.from)?.incarnation }, 'ignored a death from an older incarnation');
    }
  }

  private onInbox(msg: AnyEnvelope): void {
    if (msg.re !== undefined) {
      this.onReply(msg, msg.re);
      return;
    }
    if (msg.kind === 'ack') {
      if (this.outbox?.acknowledge(msg.body.of, msg.from) !== true) this.counters.inc('acks_unmatched');
      return;
    }
    const durable = msg.ack === true;
    const key = Deduplicator.key(msg.from, msg.id);
    if (this.inFlight.has(key)) {
      // The first copy is still being handled; its outcome decides, and the sender will retry if needed.
      this.counters.inc('rx_duplicates');
      return;
    }
    if (this.dedup.seen(key, durable)) {
      this.counters.inc('rx_duplicates');
      // The sender did not get our ack or reply (or it crossed its retry): send it again, handle nothing.
      if (durable) this.send(msg.from, 'ack', { of: msg.id });
      else this.answerAgain(key);
      return;
    }
    const handling: Handling = { answered: false };
    const delivery: Delivery = {
      remember: () => {
        if (!durable || handling.recorded !== undefined || this.selfDeduplicating.has(msg.kind)) return;
        handling.recorded = this.dedup.persist(key, this.clocks.hlc.now().wall);
        // Awaited in settle(); this only keeps a failure seen there from also going unhandled here.
        handling.recorded.catch(() => undefined);
      },
      answered: () => void (handling.answered = true),
    };
    let pending: void | Promise<void>;
    try {
      pending = this.dispatch(msg, durable, delivery);
    } catch (err) {
      this.handlingFailed(msg, durable, err);
      return;
    }
    // Most requests are answered at once: no promise, no bookkeeping beyond remembering the id.
    if (pending === undefined && !durable) {
      this.dedup.handled(key);
      return;
    }
    this.inFlight.add(key);
    void this.settle(msg, key, durable, pending, handling);
  }

  /** Finishes a message whose handling is asynchronous or durable: persist, then acknowledge. */
  private async settle(msg: AnyEnvelope, key: string, durable: boolean, pending: void | Promise<void>, handling: Handling): Promise<void> {
    try {
      await pending;
      if (durable) {
        // The record commits after whatever the handler wrote before it (LMDB commits batches in order). A
        // handler that recognises redeliveries settles once what it committed is durable (see on()).
        const recorded = handling.recorded ?? (this.selfDeduplicating.has(msg.kind) ? undefined : this.dedup.persist(key, this.clocks.hlc.now().wall));
        if (recorded !== undefined) await (this.opts.store?.durableAfter(recorded) ?? recorded);
      }
    } catch (err) {
      // Not handled after all: a copy sent again must not be taken for one already handled. Removed
      // while the message still counts as in flight, so no copy is let in before the removal commits.
      if (handling.recorded !== undefined) await this.dedup.forget(key).catch(() => undefined);
      this.handlingFailed(msg, durable, err);
      return;
    } finally {
      this.inFlight.delete(key);
    }
    this.dedup.handled(key);
    if (durable && !handling.answered) this.send(msg.from, 'ack', { of: msg.id });
  }

  private handlingFailed(msg: AnyEnvelope, durable: boolean, err: unknown): void {
    this.counters.inc('handler_errors');
    const reason = err instanceof Error ? err.message : String(err);
    this.log.error({ err: reason, kind: msg.kind, from: msg.from }, durable ? 'handling failed; the sender will retry' : 'handling failed');
    if (!durable) this.reply(msg, 'error', { code: 'handler_failed', message: reason.slice(0, 1_024) });
  }

  private onReply(msg: AnyEnvelope, re: string): void {
    const pending = this.requests.get(re);
    if (pending === undefined || pending.to !== msg.from) {
      // The requester gave up waiting, or someone other than the asked node answered.
      this.counters.inc('rx_unmatched_replies');
      return;
    }
    this.requests.delete(re);
    if (msg.kind === 'error') pending.reject(new RemoteError(msg.from, msg.body.code, msg.body.message));
    else pending.resolve(msg);
  }

  private dispatch(msg: AnyEnvelope, durable: boolean, delivery: Delivery): void | Promise<void> {
    switch (msg.kind) {
      case 'ping':
        this.reply(msg, 'pong', msg.body.data !== undefined ? { data: msg.body.data } : {});
        return;
      case 'status_request':
        this.reply(msg, 'status', this.status());
        return;
      default: {
        const handler = this.handlers.get(msg.kind);
        if (handler !== undefined) return handler(msg, delivery);
        const reason = `${this.role} ${this.id} does not handle "${msg.kind}"`;
        this.counters.reject(this.log, 'rx_unhandled_kind', msg.from, reason);
        // A durable message must not be acknowledged unhandled: the sender keeps it until a node that
        // understands it answers (e.g. after an upgrade). A request is told at once.
        if (durable) throw new TransportError('unhandled_kind', reason);
        this.reply(msg, 'error', { code: 'unhandled_kind', message: reason });
      }
    }
  }
}

/**
 * [Secure by default] Over plain TCP to another machine, every message (and the password) can be read and
 * altered on the way: say so once, so that nobody runs a field deployment that way by accident.
 */
function warnIfPlaintext(url: string, log: Logger): void {
  let address: ReturnType<typeof parseHubUrl>;
  try {
    address = parseHubUrl(url);
  } catch {
    return;
  }
  if (address.secure || isLoopback(address.host)) return;
  log.warn({ hub: url }, 'connecting to a hub on another machine without TLS: anyone on the network can read and alter the traffic; use mqtts:// (see "Securing a deployment")');
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
