import type { Duplex } from 'node:stream';
import type { IClientOptions, MqttClient } from 'mqtt';
import type { Logger } from '../log/index.js';
import { connectMqtt, type TlsMaterial } from './connect.js';
import type { Counters } from './counters.js';

export interface HubConnectionOptions {
  readonly url: string;
  readonly clientId: string;
  readonly keepaliveS: number;
  readonly connectTimeoutMs: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  /** Logs in as the client id with this password. */
  readonly password?: string;
  readonly tls?: TlsMaterial;
  readonly will?: IClientOptions['will'];
  /** An in-memory connection instead of a socket: the embedded hub's own node. */
  readonly stream?: () => Duplex;
  readonly log: Logger;
  readonly counters: Counters;
  /** Short-lived tools log connection trouble at debug: their one-line error says it all. */
  readonly quiet: boolean;
  /** Runs before anything is published: the node's store commits what the message may depend on. */
  readonly beforePublish?: () => void;
}

/** A connection that dropped sooner than this after being made was most likely taken over. */
const SHORT_LIVED_MS = 1_000;

/**
 * The MQTT session to the hub, kept alive across drops with backoff. mqtt.js reconnects at a fixed
 * period and would hammer a hub that is still booting; here the delay doubles up to a maximum, with
 * jitter so that units which lost the same hub do not come back in lockstep.
 *
 * Sessions are clean and nothing relies on the hub for delivery: a publish made while the link is down is
 * dropped and counted (durable messages live in the outbox, requests time out). So messages go at QoS 0:
 * on a clean session QoS 1 would add a PUBACK in each direction per message and deliver nothing more,
 * since publishes in flight when a connection drops are lost either way. Only the last will keeps QoS 1.
 */
export class HubConnection {
  readonly client: MqttClient;
  lastError: string | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private stableTimer: NodeJS.Timeout | undefined;
  private reconnectDelay: number;
  private connectedAt = 0;
  private started = false;
  private closing = false;

  constructor(
    private readonly opts: HubConnectionOptions,
    onConnect: () => void,
    onMessage: (topic: string, payload: Buffer, retained: boolean) => void,
    private readonly onLost: () => void = () => undefined,
  ) {
    this.reconnectDelay = opts.reconnectMinMs;
    this.client = connectMqtt(opts.url, {
      clientId: opts.clientId,
      clean: true,
      keepalive: opts.keepaliveS,
      connectTimeout: opts.connectTimeoutMs,
      reconnectPeriod: 0,
      manualConnect: true,
      resubscribe: false,
      // [Identity] client id = user name = node id: the hub proves who we are by this name.
      ...(opts.password ? { username: opts.clientId, password: opts.password } : {}),
      ...(opts.will !== undefined ? { will: opts.will } : {}),
    }, opts.stream, opts.tls);
    this.client.on('connect', () => {
      this.connectedAt = performance.now();
      this.lastError = undefined;
      // Only a connection that stays up earns a fresh backoff; one dropped at once keeps backing off.
      this.stableTimer = setTimeout(() => (this.reconnectDelay = opts.reconnectMinMs), Math.max(SHORT_LIVED_MS, opts.keepaliveS * 1_000));
      this.stableTimer.unref();
      onConnect();
    });
    this.client.on('message', (topic, payload, packet) => onMessage(topic, payload, packet.retain));
    this.client.on('error', (err) => {
      if (this.closing) return;
      this.lastError = err.message;
      opts.counters.inc('link_errors');
      opts.log[opts.quiet ? 'debug' : 'warn']({ err: err.message, hub: opts.url }, 'hub connection error');
    });
    this.client.on('close', () => this.onClose());
  }

  get connected(): boolean {
    return this.client.connected;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.client.connect();
  }

  /**
   * Publishes if connected; returns false (and counts it) if the link is down. Messages go at QoS 0,
   * retained ones (births and deaths) at QoS 1. With aedes 1.2.0 as the hub, a retained QoS 0 publish
   * followed at once by a QoS 0 publish from the same client (the heartbeat that follows every birth)
   * never reached a client subscribed to both topics: every broker missed every live birth. At QoS 1
   * each reached every subscriber in the same test, and `done` hears of it once the hub has it.
   */
  publish(topic: string, payload: Uint8Array, retain = false, done?: () => void): boolean {
    if (!this.client.connected) {
      this.opts.counters.inc('tx_dropped_offline');
      return false;
    }
    this.opts.beforePublish?.();
    this.opts.counters.inc('tx_messages');
    this.client.publish(topic, payload as Buffer, { qos: retain ? 1 : 0, retain }, (err) => {
      if (err !== undefined && err !== null && !this.closing) this.opts.counters.inc('tx_errors');
      done?.();
    });
    return true;
  }

  /**
   * Runs `publishes` with the socket corked, so that every packet it writes leaves in one write system
   * call instead of one each: on a busy unit the call, and the receiver's wake-up it causes, cost more
   * than the bytes.
   */
  batch(publishes: () => void): void {
    const stream = this.client.stream as { cork?: () => void; uncork?: () => void } | undefined;
    stream?.cork?.();
    try {
      publishes();
    } finally {
      stream?.uncork?.();
    }
  }

  /** Subscribes; if the hub refuses, drops the connection so the next attempt starts over. */
  async subscribe(filters: Record<string, { qos: 1 }>): Promise<boolean> {
    try {
      const granted = await this.client.subscribeAsync(filters);
      const refused = granted.filter((g) => g.qos === 128).map((g) => g.topic);
      if (refused.length === 0) return true;
      this.lastError = `the hub refused the subscription to ${refused.join(', ')}`;
    } catch (err) {
      this.lastError = (err as Error).message;
    }
    this.opts.log.error({ err: this.lastError }, 'subscribe failed; reconnecting');
    this.client.stream.destroy();
    return false;
  }

  /** Sends DISCONNECT (so the hub does not publish the will) and closes, waiting at most `deadlineMs`. */
  async end(deadlineMs = 2_000): Promise<void> {
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.stableTimer);
    // A client that never started has no socket, and mqtt.js's end() would trip over the missing stream.
    if (!this.started) return;
    const ended = new Promise<void>((resolve) => this.client.end(false, {}, () => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), deadlineMs)));
    if ((await Promise.race([ended, late])) === 'late') {
      await new Promise<void>((resolve) => this.client.end(true, {}, () => resolve()));
    }
    clearTimeout(timer);
  }

  private onClose(): void {
    clearTimeout(this.stableTimer);
    // Abandon anything still waiting for a PUBACK (nothing, while every publish is QoS 0): the next session
    // is clean, so nothing would ever acknowledge it, and end() would wait for it forever.
    for (const id of Object.keys(this.client.outgoing)) this.client.removeOutgoingMessage(Number(id));
    if (this.closing) return;
    this.onLost();
    if (this.connectedAt > 0) {
      const lasted = performance.now() - this.connectedAt;
      this.connectedAt = 0;
      if (lasted < SHORT_LIVED_MS) {
        this.opts.log.warn({ hub: this.opts.url, lastedMs: Math.round(lasted) }, `the hub dropped the connection at once; is another process using node id ${this.opts.clientId}?`);
      } else {
        this.opts.log[this.opts.quiet ? 'debug' : 'warn']({ hub: this.opts.url }, 'lost the hub; reconnecting');
      }
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closing || this.reconnectTimer !== undefined) return;
    const delay = this.reconnectDelay * (0.8 + Math.random() * 0.4);
    this.reconnectDelay = Math.min(this.opts.reconnectMaxMs, this.reconnectDelay * 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closing) return;
      this.opts.counters.inc('reconnects');
      this.client.reconnect();
    }, delay);
  }
}
