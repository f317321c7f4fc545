import type { MqttClient } from 'mqtt';
import type { BridgeStatus } from '../src/protocol/index.js';
import type { Logger } from '../src/log/index.js';
import type { Counters } from '../src/transport/index.js';
import type { Trigger } from './bridge-config.js';

type CommandEntry = BridgeStatus['commands'][number];

/** Commands remembered for `ucp status`. */
const RECENT = 100;
const encoder = new TextEncoder();

/**
 * Commands to devices: a job's result published on the device's command topic (QoS 1), and, where the
 * trigger names an acknowledgement topic, the wait for the device's answer there, reported as acked or
 * timed out. Each outcome is counted, kept for `ucp status` and recorded as named data.
 */
export class Commands {
  private readonly pending = new Map<string, { entry: CommandEntry; sentAt: number; timer: NodeJS.Timeout; log: string }>();
  private readonly done: CommandEntry[] = [];

  constructor(
    private readonly field: MqttClient,
    private readonly counters: Counters,
    private readonly log: Logger,
    /** Appends a record to a series (through the bridge's buffer). */
    private readonly record: (name: string, line: (seq: number) => Uint8Array) => void,
  ) {}

  /** Subscription filters for the acknowledgement topics of `triggers`. */
  ackFilters(triggers: readonly Trigger[]): string[] {
    return triggers.flatMap((t) => (t.result.ackTopic !== undefined ? [t.result.ackTopic.template.replace(/\{[A-Za-z_][A-Za-z0-9_]*\}/g, '+')] : []));
  }

  /** Publishes a command; with `ackTopic`, waits up to `timeoutMs` for the device's acknowledgement. */
  send(c: { jobId: string; device: string; topic: string; payload: Uint8Array; ackTopic?: string; timeoutMs: number; log: string }): void {
    const entry: CommandEntry = { job_id: c.jobId.slice(0, 128), device: c.device.slice(0, 512), topic: c.topic.slice(0, 1_024), state: 'published', at: Date.now() };
    this.field.publish(c.topic, Buffer.from(c.payload), { qos: 1 }, (err) => {
      if (err) this.finish(entry, 'failed', c.log, err.message);
    });
    this.counters.inc('commands_published');
    this.log.info({ job: c.jobId, device: c.device, topic: c.topic }, 'command published');
    if (c.ackTopic === undefined) {
      this.finish(entry, 'published', c.log);
      return;
    }
    const timer = setTimeout(() => {
      this.pending.delete(c.ackTopic!);
      this.finish(entry, 'timed_out', c.log, `no acknowledgement on ${c.ackTopic} within ${c.timeoutMs} ms`);
    }, c.timeoutMs);
    timer.unref();
    this.pending.set(c.ackTopic, { entry, sentAt: performance.now(), timer, log: c.log });
  }

  /** A command sent without waiting for an answer (a Sparkplug DCMD). */
  sent(jobId: string, device: string, topic: string, log: string): void {
    this.counters.inc('commands_published');
    this.finish({ job_id: jobId.slice(0, 128), device: device.slice(0, 512), topic: topic.slice(0, 1_024), state: 'published', at: Date.now() }, 'published', log);
  }

  /** A job's result kept as a record of the series `name`. */
  recordResult(name: string, jobId: string, value: unknown): void {
    this.record(name, (seq) => encoder.encode(`${JSON.stringify({ seq, t: Date.now(), job: jobId, v: value })}\n`));
  }

  /** A message on a topic a command awaits: the acknowledgement. Returns whether it was one. */
  onMessage(topic: string, payload: Buffer): boolean {
    const waiting = this.pending.get(topic);
    if (waiting === undefined) return false;
    this.pending.delete(topic);
    clearTimeout(waiting.timer);
    waiting.entry.ms = Math.round(performance.now() - waiting.sentAt);
    this.finish(waiting.entry, 'acked', waiting.log, payload.toString('utf8').slice(0, 256));
    return true;
  }

  private finish(entry: CommandEntry, state: CommandEntry['state'], log: string, detail?: string): void {
    entry.state = state;
    if (detail !== undefined) entry.detail = detail.slice(0, 256);
    if (state !== 'published') this.counters.inc(`commands_${state}`);
    if (state === 'timed_out' || state === 'failed') this.log.warn({ job: entry.job_id, device: entry.device, topic: entry.topic, detail }, `command ${state.replace('_', ' ')}`);
    else if (state === 'acked') this.log.info({ job: entry.job_id, device: entry.device, ms: entry.ms, ack: detail }, 'command acknowledged');
    this.done.push(entry);
    if (this.done.length > RECENT) this.done.shift();
    this.record(log, (seq) => encoder.encode(`${JSON.stringify({ seq, t: Date.now(), ...entry })}\n`));
  }

  recent(): CommandEntry[] {
    return [...this.done, ...[...this.pending.values()].map((p) => p.entry)].slice(-RECENT);
  }

  stop(): void {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }
}
