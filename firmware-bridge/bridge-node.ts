import { createHash } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import type { BridgeConfig } from '../src/config/index.js';
import type { BridgeStatus } from '../src/protocol/index.js';
import { BrokerChoice, connectMqtt, DataTransfer, type NodeRuntime } from '../src/transport/index.js';
import { Admission } from './admission.js';
import { BadPayloads } from './bad-payloads.js';
import type { BridgeDocument, Mapping } from './bridge-config.js';
import { BadPayload, type Reading } from './codecs/codec.js';
import { Commands } from './commands.js';
import { FieldAcks } from './field-acks.js';
import { deliveryDigest, FieldDeliveries } from './field-deliveries.js';
import { planSubscriptions } from './field-subscriptions.js';
import { Forwarder } from './forwarder.js';
import { ReadingBuffer } from './reading-buffer.js';
import { recordLine, staleLine } from './record-line.js';
import { decodeSparkplug, encodeSparkplug } from './sparkplug/payload.js';
import { parseSparkplugTopic, REBIRTH_METRIC, SparkplugHost, type SparkplugTopic } from './sparkplug/edge-state.js';
import { Triggers } from './triggers.js';
import { checkValue as checkValueOf } from './value-check.js';

/** Told to mqtt.js's handleMessage callback so that it sends no PUBACK of its own (see FieldAcks). */
const ACK_AFTER_COMMIT = new Error('acknowledged after the commit');
/** MQTT 5 Receive Maximum on the field connection: QoS 1 messages the broker may have unacknowledged. */
const FIELD_RECEIVE_MAXIMUM = 1_000;

/** How often buffered readings are checked against the age bound. */
const EXPIRE_EVERY_MS = 1_000;

/**
 * The firmware bridge: a node on the platform hub with a second MQTT connection to the field broker.
 * Device messages go through named stages: match a mapping's topic, size check, decode (codec), check
 * type, range and unit, drop repeats and readings over the device's rate, buffer durably, then forward to
 * the platform as series records; trigger rules watch what is buffered and start jobs, whose results go
 * back to the devices as commands. Either side may be down; the bridge keeps working on the other.
 */
export class BridgeNode {
  readonly field: MqttClient;
  readonly buffer: ReadingBuffer;
  readonly forwarder: Forwarder;
  readonly sparkplug: SparkplugHost;
  readonly bad: BadPayloads;
  readonly commands: Commands;
  private readonly deliveries: FieldDeliveries;
  private readonly acks: FieldAcks;
  private readonly admission = new Admission();
  private readonly triggers: Triggers;
  private readonly brokers: BrokerChoice;
  private readonly transfer: DataTransfer;
  private expireTimer?: NodeJS.Timeout;

  constructor(
    private readonly node: NodeRuntime,
    private readonly settings: BridgeConfig,
    private readonly doc: BridgeDocument,
    maxMessageBytes: number,
    brokerWaitMs: number,
    preferredBroker?: string,
  ) {
    const link = node.link;
    const log = node.log;
    this.brokers = new BrokerChoice(link, brokerWaitMs, preferredBroker);
    this.transfer = new DataTransfer(link, () => this.brokers.broker());
    this.buffer = new ReadingBuffer(node.store, { maxBytes: settings.buffer_max_bytes, maxAgeMs: settings.buffer_max_age_s * 1_000 });
    this.sparkplug = new SparkplugHost(settings.rebirth_interval_s * 1_000);
    this.bad = new BadPayloads(link.counters, log.child({ component: 'bridge' }));
    this.forwarder = new Forwarder(
      this.buffer,
      (series) => this.transfer.append(series, 30_000),
      () => link.connected && this.brokers.current() !== undefined,
      {
        batchRecords: settings.batch_records,
        // Room for the envelope and the stamp the broker adds when it passes the append on.
        batchBytes: Math.min(settings.batch_bytes, Math.floor(maxMessageBytes * 0.75)),
        inFlight: settings.appends_in_flight,
        drainRate: settings.drain_rate,
      },
    );
    this.forwarder.onStored((results) => {
      for (const r of results) {
        // A /latest target keeps one record by design: older ones are superseded, not lost.
        if (r.outside_retention > 0) link.counters.inc(r.name.endsWith('/latest') ? 'readings_superseded' : 'readings_outside_retention', r.outside_retention);
        if (r.stored > 0) link.counters.inc('readings_stored', r.stored);
        if (r.outcome === 'not_series') this.bad.record('platform', r.name, 'bad_name', `"${r.name}" holds data that is not a series (written by someone else); readings for it are dropped`);
      }
    });

    const persistent = settings.field_session_expiry_s > 0;
    const v5 = settings.field_mqtt_version === '5';
    this.field = connectMqtt(settings.field_url, {
      clientId: settings.field_client_id !== '' ? settings.field_client_id : `${link.id}.field`,
      // A persistent session: the broker keeps the subscriptions and queues what devices publish while the
      // bridge is away or restarting, and sends again what the bridge had not acknowledged.
      clean: !persistent,
      protocolVersion: v5 ? 5 : 4,
      // Receive Maximum bounds what the broker leaves unacknowledged (see REDELIVERY_WINDOW).
      ...(v5 ? { properties: { sessionExpiryInterval: settings.field_session_expiry_s, receiveMaximum: FIELD_RECEIVE_MAXIMUM } } : {}),
      keepalive: 10,
      reconnectPeriod: 1_000,
      connectTimeout: 5_000,
      // The subscriptions are the bridge's to make: a resumed session keeps them (see planSubscriptions).
      resubscribe: false,
      manualConnect: true,
      ...(settings.field_username !== '' ? { username: settings.field_username } : {}),
      ...(settings.field_password !== '' ? { password: settings.field_password } : {}),
    });
    this.deliveries = new FieldDeliveries(node.store);
    this.acks = new FieldAcks(
      () => node.store.durable(),
      () => this.field.stream,
      (err) => {
        link.counters.inc('field_ack_commit_failures');
        log.error({ err: err.message }, 'readings from the field broker could not be committed; they are not acknowledged and come again after a reconnect');
      },
    );
    // Acknowledged after the commit instead (FieldAcks); QoS 0 messages have nothing to acknowledge.
    this.field.handleMessage = (packet, callback) => {
      if (packet.qos !== 1 || packet.messageId === undefined) return callback();
      this.acks.hold(this.field.stream, packet.messageId);
      callback(ACK_AFTER_COMMIT);
    };
    const session = node.store.table<string[]>('bridge_field_session');
    this.commands = new Commands(this.field, link.counters, log, (name, line) => this.store(name, line, {}));
    this.triggers = new Triggers(doc.triggers, link, this.transfer, () => this.brokers.broker(), this.commands, (edge, metric, value) => this.sendSparkplugCommand(edge, metric, value), log, node.store);
    this.field.on('connect', (connack) => {
      const wanted = [...new Set([...doc.mappings.map((m) => m.topic.filter), ...this.commands.ackFilters(doc.triggers)])].sort();
      const plan = planSubscriptions(persistent && connack.sessionPresent, session.get('filters'), wanted);
      // Said once the subscriptions are in place: from then on the field broker keeps readings for us.
      const connected = () => log.info({ field: settings.field_url, topics: wanted, session: connack.sessionPresent ? 'resumed' : 'new', subscribed: plan.subscribe.length, unsubscribed: plan.unsubscribe.length }, 'connected to the field broker');
      link.counters.inc('field_connects');
      if (plan.unsubscribe.length > 0) this.field.unsubscribe([...plan.unsubscribe]);
      if (plan.subscribe.length > 0) {
        // rh 1 (MQTT 5): retained messages only for a subscription the session did not have yet.
        this.field.subscribe([...plan.subscribe], { qos: 1, rh: 1 }, (err, granted) => {
          const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
          if (err !== null && err !== undefined) log.error({ err: err.message }, 'field subscription refused');
          else if (refused.length > 0) log.error({ topics: refused }, 'field subscription refused');
          // What the broker holds for the next resumed session; unknown after a refusal, so all is asked again.
          if (persistent && (err === null || err === undefined) && refused.length === 0) void session.put('filters', wanted);
          else void session.remove('filters');
          connected();
        });
        return;
      }
      if (plan.unsubscribe.length > 0 && persistent) void session.put('filters', wanted);
      connected();
    });
    this.field.on('close', () => link.counters.inc('field_disconnects'));
    this.field.on('error', (err) => log.warn({ err: err.message, field: settings.field_url }, 'field broker connection error'));
    this.field.on('message', (topic, payload, packet) => {
      const messageId = packet.qos === 1 ? packet.messageId : undefined;
      const digest = messageId !== undefined ? deliveryDigest(topic, payload) : '';
      if (messageId !== undefined && this.deliveries.redelivered(messageId, packet.dup, digest)) {
        // Committed before, its PUBACK lost with the connection or the process: acknowledged again, not stored again.
        link.counters.inc('field_redelivered');
        this.deliveries.record(messageId, digest);
        return;
      }
      try {
        this.onDeviceMessage(topic, payload);
      } catch (err) {
        // Nothing a device sends may stop the bridge.
        link.counters.inc('field_handler_errors');
        log.error({ err: (err as Error).message, topic }, 'handling a device message failed');
      }
      if (messageId !== undefined) this.deliveries.record(messageId, digest);
    });

    link.onPresence((event) => {
      if (event.peer.role === 'broker' && event.type === 'up') this.forwarder.platformUp();
    });
    link.setStatusFields(() => ({ bridge: this.status() }));
    node.onConnected(() => {
      this.forwarder.platformUp();
      this.expireTimer = setInterval(() => {
        const n = this.buffer.expire(Date.now());
        if (n > 0) link.counters.inc('buffer_dropped_age', n);
      }, EXPIRE_EVERY_MS);
      this.expireTimer.unref();
    });
    node.beforeStop(async () => {
      clearInterval(this.expireTimer);
      this.forwarder.stop();
      this.triggers.stop();
      this.commands.stop();
      await new Promise<void>((resolve) => this.field.end(false, {}, () => resolve()));
    });
  }

  /** Starts the field connection; the platform link is started by the node. */
  start(): void {
    this.triggers.resume();
    this.field.connect();
  }

  private onDeviceMessage(topic: string, payload: Buffer): void {
    const counters = this.node.link.counters;
    counters.inc('field_messages');
    if (this.commands.onMessage(topic, payload)) return;
    let matched = false;
    for (const mapping of this.doc.mappings) {
      const captures = mapping.topic.match(topic);
      if (captures === undefined) continue;
      matched = true;
      if (payload.byteLength > this.settings.max_payload_bytes) {
        this.bad.record(mapping.device.fill(captures) ?? topic, topic, 'oversized', `${payload.byteLength} bytes, over bridge.max_payload_bytes (${this.settings.max_payload_bytes})`);
        continue;
      }
      if (mapping.codec === 'sparkplug-b') this.onSparkplug(mapping, topic, payload);
      else this.onPlain(mapping, topic, captures, payload);
    }
    if (!matched) counters.inc('field_unmapped');
  }

  private onPlain(mapping: Mapping, topic: string, captures: Record<string, string>, payload: Buffer): void {
    const device = mapping.device.fill(captures) ?? topic;
    let readings: Reading[];
    try {
      readings = mapping.decoder!(payload);
    } catch (err) {
      if (!(err instanceof BadPayload)) throw err;
      this.bad.record(device, topic, err.reason, err.message);
      return;
    }
    const now = Date.now();
    if (mapping.dedup === 'payload' && this.admission.repeatedPayload(`${mapping.index}\0${topic}`, digest(payload), now, mapping.dedupWindowMs)) {
      this.node.link.counters.inc('readings_repeated');
      return;
    }
    for (const reading of readings) this.accept(mapping, topic, device, { ...captures, device, ...(reading.metric !== undefined ? { metric: reading.metric } : {}) }, reading, now);
  }

  /** The shared tail of every codec: check, de-duplicate, rate-limit, buffer, evaluate triggers. */
  private accept(mapping: Mapping, topic: string, device: string, vars: Record<string, string>, reading: Reading, now: number): void {
    const counters = this.node.link.counters;
    let value: unknown;
    try {
      value = checkValueOf(mapping, reading);
    } catch (err) {
      if (!(err instanceof BadPayload)) throw err;
      this.bad.record(device, topic, err.reason, err.message);
      return;
    }
    if (mapping.dedup === 'seq' && reading.seq !== undefined && this.admission.repeatedSeq(`${mapping.index}\0${device}\0${reading.metric ?? ''}`, reading.seq)) {
      counters.inc('readings_repeated');
      return;
    }
    if (!this.admission.allow(`${mapping.index}\0${device}`, mapping.rateLimit, now)) {
      counters.inc('readings_rate_limited');
      return;
    }
    counters.inc('readings_accepted');
    for (const target of mapping.targets) {
      const name = target.template.fill(vars);
      if (name === undefined) {
        this.bad.record(device, topic, 'bad_name', `target ${target.template.template} has no value for one of its placeholders`);
        continue;
      }
      const retention = target.latest ? { keepLast: 1 } : { ...(mapping.keepLast !== undefined ? { keepLast: mapping.keepLast } : {}), ...(mapping.maxAgeMs !== undefined ? { maxAgeMs: mapping.maxAgeMs } : {}) };
      // Triggers see the reading before it is written: a job it fires is written first, so a bridge killed
      // at any point never has the reading without the job (LMDB commits writes in the order made).
      this.store(
        name,
        (seq) => {
          const line = recordLine(seq, now, value, reading, mapping.unit);
          this.triggers.observe(name, vars, value, line);
          return line;
        },
        retention,
      );
    }
  }

  /** Buffers one record for a series and wakes the forwarder. */
  private store(name: string, line: (seq: number) => Uint8Array, retention: { keepLast?: number; maxAgeMs?: number }): void {
    const before = this.buffer.droppedBytes;
    this.buffer.add(name, Date.now(), line, retention);
    if (this.buffer.droppedBytes > before) this.node.link.counters.inc('buffer_dropped_bytes', this.buffer.droppedBytes - before);
    this.forwarder.nudge();
  }

  private onSparkplug(mapping: Mapping, topic: string, payload: Buffer): void {
    const where = parseSparkplugTopic(topic);
    if (where === undefined) {
      this.bad.record(topic, topic, 'bad_name', 'not a Sparkplug B topic (spBv1.0/<group>/<type>/<node>[/<device>])');
      return;
    }
    const edgeName = where.device !== undefined ? `${where.node}/${where.device}` : where.node;
    let decoded;
    try {
      decoded = decodeSparkplug(payload);
    } catch (err) {
      this.bad.record(edgeName, topic, 'unparsable', `not a Sparkplug B payload: ${(err as Error).message.slice(0, 100)}`);
      return;
    }
    const now = Date.now();
    const outcome = this.sparkplug.handle(where, decoded, now);
    const counters = this.node.link.counters;
    for (const event of outcome.events) counters.inc(`sparkplug_${event}`);
    if (outcome.bad !== undefined) this.bad.record(edgeName, topic, outcome.bad.reason, outcome.bad.detail);
    if (outcome.rebirth) this.requestRebirth(where);
    const varsOf = (device: string, metric: string) => ({ group: where.group, node: where.node, device: device === '' ? where.node : device, edge: device === '' ? where.node : `${where.node}/${device}`, metric });
    for (const m of outcome.metrics) {
      const vars = varsOf(m.device, m.name);
      const device = mapping.device.fill(vars) ?? vars.edge;
      this.accept(mapping, topic, device, vars, { metric: m.name, value: m.value, ...(m.timestamp !== undefined ? { ts: m.timestamp } : {}) }, now);
    }
    // A death that matched the current birth: every metric of the node (or device) is stale now, and
    // the data says so.
    for (const { device, names } of outcome.stale) {
      for (const metric of names) {
        for (const target of mapping.targets) {
          const name = target.template.fill(varsOf(device, metric));
          if (name === undefined) continue;
          const retention = target.latest ? { keepLast: 1 } : { ...(mapping.keepLast !== undefined ? { keepLast: mapping.keepLast } : {}), ...(mapping.maxAgeMs !== undefined ? { maxAgeMs: mapping.maxAgeMs } : {}) };
          this.store(name, (seq) => staleLine(seq, now), retention);
        }
      }
    }
  }

  /** NCMD Node Control/Rebirth: the edge node publishes its births again. */
  private requestRebirth(where: SparkplugTopic): void {
    const payload = encodeSparkplug({ timestamp: Date.now(), metrics: [{ name: REBIRTH_METRIC, type: 'Boolean', value: true }] });
    this.field.publish(`spBv1.0/${where.group}/NCMD/${where.node}`, Buffer.from(payload), { qos: 0 });
    this.node.log.info({ group: where.group, node: where.node }, 'requested a Sparkplug rebirth');
  }

  /** A DCMD (or NCMD for a node's own metric) that sets `metric` to `value`. */
  private sendSparkplugCommand(edge: { group: string; node: string; device?: string }, metric: string, value: unknown): string {
    const type = typeof value === 'boolean' ? 'Boolean' : typeof value === 'number' ? (Number.isSafeInteger(value) ? 'Int64' : 'Double') : 'String';
    const payload = encodeSparkplug({ timestamp: Date.now(), metrics: [{ name: metric, type, value: typeof value === 'object' ? JSON.stringify(value) : (value as string | number | boolean) }] });
    const topic = edge.device !== undefined ? `spBv1.0/${edge.group}/DCMD/${edge.node}/${edge.device}` : `spBv1.0/${edge.group}/NCMD/${edge.node}`;
    this.field.publish(topic, Buffer.from(payload), { qos: 0 });
    return topic;
  }

  status(): BridgeStatus {
    const f = this.forwarder.stats;
    const oldest = this.buffer.oldestTime();
    return {
      field_connected: this.field.connected,
      buffer: { records: this.buffer.records, bytes: this.buffer.sizeBytes, backlog: this.forwarder.backlog, ...(oldest !== undefined ? { oldest_ms: Math.max(0, Date.now() - oldest) } : {}), dropped_bytes: this.buffer.droppedBytes, dropped_age: this.buffer.droppedAge },
      forwarded: { stored: f.stored, duplicate: f.duplicate, outside_retention: f.outsideRetention, batches: f.batches, failures: f.failures, drained: f.drained, drain_ms: Math.round(f.drainMs) },
      bad_payloads: this.bad.list().map((b) => ({ device: b.device.slice(0, 512), topic: b.topic.slice(0, 1_024), reason: b.reason, count: b.count, last: b.last.slice(0, 256) })),
      edge_nodes: this.sparkplug.nodes().slice(0, 1_000).map((e) => ({
        group: e.group.slice(0, 256),
        node: e.node.slice(0, 256),
        state: e.state,
        ...(e.bdSeq !== undefined ? { bd_seq: e.bdSeq } : {}),
        seq_gaps: e.seqGaps,
        stale_deaths_ignored: e.staleDeathsIgnored,
        rebirths_requested: e.rebirthsRequested,
        offline_devices: [...e.offlineDevices].slice(0, 1_000).map((d) => d.slice(0, 256)),
      })),
      commands: this.commands.recent(),
    };
  }
}

function digest(payload: Buffer): string {
  return createHash('sha1').update(payload).digest('base64');
}
