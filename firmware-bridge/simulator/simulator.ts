import { connectMqtt } from '../../src/transport/index.js';
import type { Logger } from '../../src/log/index.js';
import { profile, type ProfileName } from './profiles.js';

export interface SimulateOptions {
  readonly fieldUrl: string;
  readonly profile: ProfileName;
  readonly devices: number;
  /** Readings per second per device. */
  readonly rate: number;
  /** Readings per device before stopping (0: until stopped or `durationS`). */
  readonly count: number;
  readonly durationS: number;
  readonly qos: 0 | 1;
  readonly log: Logger;
}

export interface SimulateReport {
  readonly published: number;
  readonly commandsAnswered: number;
  readonly seconds: number;
}

/** How often due readings are published. */
const TICK_MS = 10;

/**
 * Simulated field devices on a real MQTT broker: `devices` devices of one firmware family, each
 * publishing `rate` realistic readings per second on that firmware's topics, and answering commands the
 * way that firmware does (and on `devices/<id>/cmd` with `devices/<id>/ack`).
 */
export async function simulate(options: SimulateOptions, stop: Promise<void>): Promise<SimulateReport> {
  const p = profile(options.profile, options.devices);
  const will = p.will?.();
  const client = connectMqtt(options.fieldUrl, {
    clientId: `ucp-sim-${options.profile}-${process.pid}`,
    clean: true,
    keepalive: 10,
    reconnectPeriod: 1_000,
    ...(will !== undefined ? { will: { topic: will.topic, payload: Buffer.from(will.payload), qos: 1 as const, retain: false } } : {}),
  });
  let answered = 0;
  client.on('message', (topic, payload) => {
    const answers = p.answer(topic, payload);
    if (answers === undefined) return;
    answered++;
    for (const a of answers) client.publish(a.topic, a.payload, { qos: 1 });
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  await client.subscribeAsync([...p.commandFilters], { qos: 1 });
  for (const m of p.start()) client.publish(m.topic, m.payload, { qos: 1, ...(m.retain === true ? { retain: true } : {}) });
  options.log.info({ profile: options.profile, devices: options.devices, rate: options.rate, field: options.fieldUrl }, 'simulating devices');
  const started = performance.now();
  const sent = new Array<number>(options.devices).fill(0);
  let published = 0;
  let stopped = false;
  void stop.then(() => (stopped = true));
  const total = options.count > 0 ? options.count * options.devices : Infinity;
  while (!stopped && published < total) {
    const elapsed = (performance.now() - started) / 1_000;
    if (options.durationS > 0 && elapsed >= options.durationS) break;
    const due = Math.floor(elapsed * options.rate) + 1;
    for (let d = 0; d < options.devices; d++) {
      while (sent[d]! < due && (options.count === 0 || sent[d]! < options.count)) {
        for (const m of p.reading(d, sent[d]!, Date.now())) client.publish(m.topic, m.payload, { qos: options.qos });
        sent[d]!++;
        published++;
      }
    }
    // Let the socket drain before producing more: memory stays flat at any rate.
    if (client.stream.writableLength > 1 << 20) await new Promise((r) => client.stream.once('drain', r));
    else await new Promise((r) => setTimeout(r, TICK_MS));
  }
  const seconds = (performance.now() - started) / 1_000;
  // Published messages leave before the connection closes (end waits for in-flight QoS 1 acks).
  await client.endAsync();
  return { published, commandsAnswered: answered, seconds };
}
