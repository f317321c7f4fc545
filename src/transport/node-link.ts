import { hostname, loadavg, availableParallelism } from 'node:os';
import type { MqttClient } from 'mqtt';
import { HybridLogicalClock, merge, tick, EMPTY_CLOCK, type VectorClock } from '../clock/index.js';
import {
  decode,
  encode,
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
import { connectMqtt } from './connect.js';
import { Counters } from './counters.js';
import { Deduplicator } from './dedup.js';
import { DurableOutbox, type OutboxEntry } from './outbox.js';
import { PeerTable, type PresenceEvent } from './presence.js';
import { RemoteError, TransportError } from './errors.js';
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
  readonly username?: string;
  readonly password?: string;
  readonly logger: Logger;
  readonly limits: CodecLimits;
  readonly timing: LinkTiming;
  /**
   * The node's LMDB store: required for the durable outbox, persistent duplicate suppression and the
   * incarnation. A short-lived command-line tool runs without one and cannot send durably.
   */
  readonly store?: NodeStore;
  /**
   * Publish a retained birth, a last will and heartbeats. Short-lived tools leave this off so that they
   * never appear in, or vanish from, the cluster's presence.
   */
  readonly announce: boolean;
  /** Track other nodes' births, deaths and heartbeats. */
  readonly watchPresence: boolean;
}

export type Handler<K extends Kind> = (msg: Envelope<K>) => void | Promise<void>;
export type PresenceListener = (event: PresenceEvent) => void;

interface PendingRequest {
  resolve: (msg: AnyEnvelope) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** Kinds the link answers itself; roles register handlers for the rest. */
const LINK_KINDS: ReadonlySet<Kind> = new Set<Kind>(['ack', 'ping', 'status_request']);
const PRESENCE_KINDS: ReadonlySet<Kind> = new Set<Kind>(['birth', 'death']);
/** How often on-disk duplicate ids older than the TTL are swept. */
const DEDUP_PRUNE_INTERVAL_MS = 10 * 60_000;

/**
 * A node's connection to the cluster: MQTT with TCP_NODELAY, CBOR envelopes stamped with the vector clock
 * and HLC, presence (birth, last will, heartbeats), a durable outbox, request/reply, and duplicate
 * suppression. Every role runs on one of these.
 */
export class NodeLink {
  readonly id: string;
  readonly role: Role;
  readonly topics: Topics;
  readonly counters = new Counters();
  readonly peers: PeerTable;
  readonly hlc = new HybridLogicalClock();
  /** 0 for a link without a store: it has no identity to carry across restarts. */
  readonly incarnation: number;
  private vc: VectorClock = EMPTY_CLOCK;
  private readonly log: Logger;
  private readonly client: MqttClient;
  private readonly outbox?: DurableOutbox;
  private readonly dedup: Deduplicator;
  private readonly handlers = new Map<Kind, Handler<Kind>>();
  private readonly presenceListeners: PresenceListener[] = [];
  private readonly requests = new Map<string, PendingRequest>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly startedAt = performance.now();
  private readonly idPrefix: string;
  private seq = 0;
  private heartbeatSeq = 0;
  private stopping = false;
  private timersStarted = false;
  private connectStarted = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelay: number;
  private online = false;
  private readonly firstReady: Promise<void>;
  private markReady!: () => void;

  private constructor(private readonly opts: NodeLinkOptions) {
    this.id = opts.nodeId;
    this.role = opts.role;
    this.topics = new Topics(opts.cluster);
    this.log = opts.logger.child({ component: 'link', node: opts.nodeId });
    this.peers = new PeerTable(opts.timing.deadAfterMs);
    this.reconnectDelay = opts.timing.reconnectMinMs;
    this.incarnation = opts.store?.nextIncarnation() ?? 0;
    // Links without a store may share an id prefix with an earlier run, so give them a random one.
    this.idPrefix = opts.store !== undefined ? this.incarnation.toString(36) : `t${Math.random().toString(36).slice(2, 10)}`;
    const timing = opts.timing;
    this.dedup = new Deduplicator(timing.dedupWindow, opts.store?.table<number>('transport_seen'));
    if (opts.store !== undefined) {
      this.outbox = new DurableOutbox(opts.store.table<OutboxEntry>('transport_outbox'), timing);
    }

    const will = opts.announce
      ? {
          topic: this.topics.presence(this.id),
          payload: encode(this.envelope('death', { graceful: false })),
          qos: 1 as const,
          retain: true,
        }
      : undefined;
    this.client = connectMqtt(opts.hubUrl, {
      clientId: this.id,
      clean: true,
      keepalive: timing.keepaliveS,
      connectTimeout: timing.connectTimeoutMs,
      reconnectPeriod: 0,
      manualConnect: true,
      resubscribe: false,
      ...(opts.username ? { username: opts.username } : {}),
      ...(opts.password ? { password: opts.password } : {}),
      ...(will !== undefined ? { will } : {}),
    });
    this.firstReady = new Promise((resolve) => (this.markReady = resolve));
    this.wireClient();
  }

  /**
   * Creates the link without connecting, so handlers can be registered before the first message can
   * arrive: a durable message handled by nobody would be acknowledged and lost.
   */
  static create(opts: NodeLinkOptions): NodeLink {
    return new NodeLink(opts);
  }

  /** Connects (waiting for the hub as long as it takes) and resolves once subscribed and born. */
  async connect(): Promise<void> {
    if (!this.connectStarted) {
      this.connectStarted = true;
      this.client.connect();
    }
    await this.firstReady;
  }

  /** create() and connect() in one, for links that add no handlers. */
  static async start(opts: NodeLinkOptions): Promise<NodeLink> {
    const link = new NodeLink(opts);
    await link.connect();
    return link;
  }

  // ---- sending -------------------------------------------------------------------------------------

  /** Fire-and-forget QoS 1 message to one node's inbox. */
  send<K extends Kind>(to: string, kind: K, body: BodyOf<K>): string {
    const msg = this.envelope(kind, body);
    this.publish(this.topics.inbox(to), encode(msg));
    return msg.id;
  }

  /** Sends a reply to `request`, correlated by its id. */
  reply<K extends Kind>(request: AnyEnvelope, kind: K, body: BodyOf<K>): void {
    const msg = this.envelope(kind, body, { re: request.id });
    this.publish(this.topics.inbox(request.from), encode(msg));
  }

  /** Sends a request and resolves with the reply, or rejects after the timeout or with the peer's error. */
  request<K extends Kind>(to: string, kind: K, body: BodyOf<K>, timeoutMs = this.opts.timing.requestTimeoutMs): Promise<AnyEnvelope> {
    const msg = this.envelope(kind, body);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.requests.delete(msg.id);
        this.counters.inc('request_timeouts');
        reject(new TransportError('request_timeout', `no reply from ${to} to ${kind} within ${timeoutMs} ms; is it running and attached to this hub?`));
      }, timeoutMs);
      this.requests.set(msg.id, { resolve, reject, timer });
      this.publish(this.topics.inbox(to), encode(msg));
    });
  }

  /**
   * Sends a message through the durable outbox: it is written to LMDB, and retried until `to` acknowledges
   * it, across restarts of either side. Resolves with the message id once the message is stored.
   */
  async sendDurable<K extends Kind>(to: string, kind: K, body: BodyOf<K>): Promise<string> {
    if (this.outbox === undefined) throw new TransportError('no_store', 'this link has no data directory, so it cannot send durably');
    const topic = this.topics.inbox(to);
    const msg = this.envelope(kind, body, { ack: true });
    const payload = encode(msg);
    const stored = this.outbox.add({ id: msg.id, to, topic, kind, payload, createdAt: Date.now() });
    this.publish(topic, payload);
    await stored;
    return msg.id;
  }

  /** Resolves when the receiver has acknowledged a durable message. */
  delivered(messageId: string): Promise<void> {
    return this.outbox?.delivered(messageId) ?? Promise.resolve();
  }

  /** What this node still owes others, oldest first. */
  pendingMessages(): Array<Pick<OutboxEntry, 'id' | 'to' | 'kind' | 'createdAt'>> {
    return (this.outbox?.entries() ?? [])
      .map(({ id, to, kind, createdAt }) => ({ id, to, kind, createdAt }))
      .sort((a, b) => a.createdAt - b.createdAt);
  }

  get outboxPending(): number {
    return this.outbox?.size ?? 0;
  }

  // ---- receiving -----------------------------------------------------------------------------------

  /**
   * Registers the handler for a kind arriving in this node's inbox. For a durable message the handler's
   * promise must settle before the acknowledgement goes out: a handler that throws gets the message again.
   */
  on<K extends Kind>(kind: K, handler: Handler<K>): void {
    if (LINK_KINDS.has(kind)) throw new Error(`the link handles "${kind}" itself`);
    this.handlers.set(kind, handler as unknown as Handler<Kind>);
  }

  onPresence(listener: PresenceListener): void {
    this.presenceListeners.push(listener);
  }

  // ---- lifecycle -----------------------------------------------------------------------------------

  get connected(): boolean {
    return this.client.connected;
  }

  /**
   * Leaves cleanly: a graceful death replaces the retained birth (so nobody waits for a timeout), then
   * DISCONNECT, which tells the hub not to publish the last will.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.reconnectTimer);
    for (const [, pending] of this.requests) {
      clearTimeout(pending.timer);
      pending.reject(new TransportError('link_closed', 'the link was stopped before a reply arrived'));
    }
    this.requests.clear();
    if (this.opts.announce && this.client.connected) {
      const death = encode(this.envelope('death', { graceful: true }));
      await new Promise<void>((resolve) => {
        this.client.publish(this.topics.presence(this.id), death, { qos: 1, retain: true }, () => resolve());
        setTimeout(resolve, 1_000).unref();
      });
    }
    await new Promise<void>((resolve) => this.client.end(false, {}, () => resolve()));
  }

  // ---- internals -----------------------------------------------------------------------------------

  private envelope<K extends Kind>(kind: K, body: BodyOf<K>, extra?: { re?: string; ack?: boolean }): Envelope<K> {
    // Only brokers own an entry in the vector clock; everyone else forwards what they have seen.
    if (this.role === 'broker') this.vc = tick(this.vc, this.id);
    const hlc = this.hlc.now();
    return {
      v: PROTOCOL_VERSION,
      kind,
      id: `${this.idPrefix}.${(this.seq++).toString(36)}`,
      from: this.id,
      role: this.role,
      inc: this.incarnation,
      vc: this.vc,
      hlc,
      body,
      ...(extra?.re !== undefined ? { re: extra.re } : {}),
      ...(extra?.ack === true ? { ack: true } : {}),
    };
  }

  /** The vector clock this node last stamped or merged. */
  clock(): VectorClock {
    return this.vc;
  }

  private publish(topic: string, payload: Uint8Array, retain = false): void {
    this.counters.inc('tx_messages');
    this.client.publish(topic, payload as Buffer, { qos: 1, retain }, (err) => {
      if (err !== undefined && err !== null && !this.stopping) {
        this.counters.inc('tx_errors');
        this.log.debug({ err: err.message, topic }, 'publish failed; the outbox or the requester retries');
      }
    });
  }

  private wireClient(): void {
    this.client.on('connect', () => void this.onConnect());
    this.client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet.retain));
    this.client.on('error', (err) => {
      if (this.stopping) return;
      this.counters.inc('link_errors');
      this.log.warn({ err: err.message, hub: this.opts.hubUrl }, 'hub connection error');
    });
    this.client.on('close', () => {
      if (this.online && !this.stopping) this.log.warn({ hub: this.opts.hubUrl }, 'lost the hub; reconnecting');
      this.online = false;
      this.scheduleReconnect();
    });
  }

  /**
   * mqtt.js retries at a fixed period; a field unit should back off instead, so it does not hammer a hub
   * that is still booting or a radio link that is down.
   */
  private scheduleReconnect(): void {
    if (this.stopping || this.reconnectTimer !== undefined) return;
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(this.opts.timing.reconnectMaxMs, delay * 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.stopping) return;
      this.counters.inc('reconnects');
      this.client.reconnect();
    }, delay);
  }

  private async onConnect(): Promise<void> {
    this.reconnectDelay = this.opts.timing.reconnectMinMs;
    this.online = true;
    const subs: Record<string, { qos: 1 }> = { [this.topics.inbox(this.id)]: { qos: 1 } };
    if (this.opts.watchPresence) {
      subs[this.topics.all('presence')] = { qos: 1 };
      subs[this.topics.all('heartbeat')] = { qos: 1 };
    } else if (this.opts.announce) {
      // Still watch our own presence topic, to repair it if a stale last will overwrote our birth.
      subs[this.topics.presence(this.id)] = { qos: 1 };
    }
    try {
      await this.client.subscribeAsync(subs);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'subscribe failed; will retry on reconnect');
      return;
    }
    if (this.opts.announce) this.publishBirth();
    this.log.info({ hub: this.opts.hubUrl, incarnation: this.incarnation }, 'connected');
    this.outbox?.expedite();
    this.flushOutbox();
    this.startTimers();
    this.markReady();
  }

  private publishBirth(): void {
    const birth = this.envelope('birth', {
      software: SOFTWARE,
      host: hostname().slice(0, 255),
      pid: process.pid,
      heartbeat_interval_ms: this.opts.timing.heartbeatIntervalMs,
    });
    this.publish(this.topics.presence(this.id), encode(birth), true);
  }

  private startTimers(): void {
    if (this.timersStarted) return;
    this.timersStarted = true;
    const t = this.opts.timing;
    if (this.opts.announce) {
      this.timers.push(setInterval(() => this.publishHeartbeat(), t.heartbeatIntervalMs));
    }
    if (this.opts.watchPresence) {
      this.timers.push(setInterval(() => this.emitPresence(this.peers.expire()), Math.max(25, Math.floor(t.heartbeatIntervalMs / 4))));
    }
    if (this.outbox !== undefined) {
      this.timers.push(setInterval(() => this.flushOutbox(), Math.max(10, Math.min(1_000, Math.floor(t.retryInitialMs / 2)))));
      this.timers.push(
        setInterval(() => {
          void this.dedup.prune(Date.now() - t.dedupTtlS * 1_000).catch((err: Error) => this.log.warn({ err: err.message }, 'dedup prune failed'));
        }, DEDUP_PRUNE_INTERVAL_MS),
      );
    }
    for (const timer of this.timers) timer.unref();
  }

  private publishHeartbeat(): void {
    if (!this.client.connected) return;
    const hb = this.envelope('heartbeat', {
      seq: this.heartbeatSeq++,
      uptime_ms: Math.round(performance.now() - this.startedAt),
      rss_bytes: process.memoryUsage.rss(),
      load: Math.min(1_000, (loadavg()[0] ?? 0) / availableParallelism()),
      outbox_pending: this.outboxPending,
    });
    this.publish(this.topics.heartbeat(this.id), encode(hb));
  }

  private flushOutbox(): void {
    if (this.outbox === undefined || !this.client.connected) return;
    for (const entry of this.outbox.due()) {
      this.counters.inc('outbox_sends');
      this.publish(entry.topic, entry.payload);
    }
  }

  private emitPresence(events: PresenceEvent[]): void {
    for (const event of events) {
      if (event.type === 'up') {
        this.log.info({ peer: event.peer.id, role: event.peer.role, incarnation: event.peer.incarnation, restartedFrom: event.restartedFrom, rejoined: event.rejoined }, 'peer up');
        // Whatever we owe a node that just came back is due now, not at its next backoff.
        this.outbox?.expedite(event.peer.id);
        this.flushOutbox();
      } else {
        this.log.info({ peer: event.peer.id, role: event.peer.role, incarnation: event.incarnation, reason: event.reason }, 'peer down');
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
    const where = this.topics.parse(topic);
    if (where === undefined) {
      this.counters.reject(this.log, 'rx_dropped_wrong_topic', topic, `unexpected topic ${topic}`);
      return;
    }
    // An empty retained payload is how MQTT clears a retained message: someone forgot a node on purpose.
    if (payload.byteLength === 0 && where.cls === 'presence') return;
    const result = decode(payload, this.opts.limits);
    if (!result.ok) {
      this.counters.reject(this.log, `rx_dropped_${result.error.code}`, topic, result.error.reason);
      return;
    }
    const msg = result.msg;
    const misplaced = this.checkPlacement(where.cls, where.node, msg);
    if (misplaced !== undefined) {
      this.counters.reject(this.log, 'rx_dropped_wrong_topic', topic, misplaced);
      return;
    }
    if (msg.from === this.id) {
      if (msg.kind === 'death' && !retained && this.opts.announce && !this.stopping && this.client.connected) {
        // A last will from an older incarnation (or from a connection the hub gave up on) replaced our
        // retained birth. We are alive: say so again. (A retained death replayed on subscribing is the
        // previous run's, and the birth we publish next replaces it anyway.)
        this.counters.inc('birth_repaired');
        this.publishBirth();
      }
      return;
    }
    this.hlc.receive(msg.hlc);
    this.vc = merge(this.vc, msg.vc);
    switch (msg.kind) {
      case 'birth':
        this.emitPresence(this.peers.onBirth(msg.from, msg.role, msg.inc, msg.body));
        return;
      case 'death':
        this.onDeath(msg);
        return;
      case 'heartbeat':
        this.emitPresence(this.peers.onHeartbeat(msg.from, msg.role, msg.inc, msg.body));
        return;
      default:
        this.peers.touch(msg.from, msg.inc);
        void this.onInbox(msg);
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

  /** Presence kinds only on presence topics, from the node the topic names; everything else in an inbox. */
  private checkPlacement(cls: string, topicNode: string, msg: AnyEnvelope): string | undefined {
    if (cls === 'presence') {
      if (!PRESENCE_KINDS.has(msg.kind)) return `${msg.kind} message on a presence topic`;
      if (msg.from !== topicNode) return `${msg.from} published on ${topicNode}'s presence topic`;
    } else if (cls === 'heartbeat') {
      if (msg.kind !== 'heartbeat') return `${msg.kind} message on a heartbeat topic`;
      if (msg.from !== topicNode) return `${msg.from} published on ${topicNode}'s heartbeat topic`;
    } else if (cls === 'inbox') {
      if (topicNode !== this.id) return `message for ${topicNode} delivered to ${this.id}`;
      if (PRESENCE_KINDS.has(msg.kind) || msg.kind === 'heartbeat') return `${msg.kind} message in an inbox`;
    }
    return undefined;
  }

  private async onInbox(msg: AnyEnvelope): Promise<void> {
    if (msg.re !== undefined) {
      const pending = this.requests.get(msg.re);
      if (pending !== undefined) {
        this.requests.delete(msg.re);
        clearTimeout(pending.timer);
        if (msg.kind === 'error') pending.reject(new RemoteError(msg.from, msg.body.code, msg.body.message));
        else pending.resolve(msg);
        return;
      }
      // The requester gave up waiting; nothing is left to do with its answer.
      this.counters.inc('rx_late_replies');
      return;
    }
    if (msg.kind === 'ack') {
      if (this.outbox?.acknowledge(msg.body.of) !== true) this.counters.inc('acks_unmatched');
      return;
    }
    const durable = msg.ack === true;
    if (this.dedup.seen(msg.from, msg.id, durable)) {
      this.counters.inc('rx_duplicates');
      // The sender did not get our ack (or it crossed its retry): acknowledge again, handle nothing.
      if (durable) this.send(msg.from, 'ack', { of: msg.id });
      return;
    }
    try {
      await this.dispatch(msg);
    } catch (err) {
      this.counters.inc('handler_errors');
      this.dedup.forget(msg.from, msg.id);
      this.log.error({ err: (err as Error).message, kind: msg.kind, from: msg.from }, durable ? 'handler failed; the sender will retry' : 'handler failed');
      if (msg.re === undefined && !durable) this.reply(msg, 'error', { code: 'handler_failed', message: (err as Error).message.slice(0, 1_024) });
      return;
    }
    if (durable) {
      try {
        await this.dedup.persist(msg.from, msg.id, Date.now());
        await this.opts.store?.durable();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'could not record a handled message; the sender will retry');
        return;
      }
      this.send(msg.from, 'ack', { of: msg.id });
    }
  }

  private async dispatch(msg: AnyEnvelope): Promise<void> {
    switch (msg.kind) {
      case 'ping':
        this.reply(msg, 'pong', msg.body.data !== undefined ? { data: msg.body.data } : {});
        return;
      case 'status_request':
        this.reply(msg, 'status', this.status());
        return;
      default: {
        const handler = this.handlers.get(msg.kind);
        if (handler === undefined) {
          this.counters.reject(this.log, 'rx_unhandled_kind', msg.from, `${this.role} ${this.id} does not handle "${msg.kind}"`);
          if (msg.re === undefined) this.reply(msg, 'error', { code: 'unhandled_kind', message: `${this.role} does not handle ${msg.kind}` });
          return;
        }
        await handler(msg);
      }
    }
  }

  status(): BodyOf<'status'> {
    return {
      software: SOFTWARE,
      uptime_ms: Math.round(performance.now() - this.startedAt),
      outbox_pending: this.outboxPending,
      peers: this.peers.peers().map((p) => ({ id: p.id, role: p.role, incarnation: p.incarnation, alive: p.alive })),
      counters: this.counters.snapshot(),
    };
  }
}
