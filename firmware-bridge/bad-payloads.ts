import type { Logger } from '../src/log/index.js';
import type { Counters } from '../src/transport/index.js';
import type { BadReason } from './codecs/codec.js';

export interface BadPayloadEntry {
  readonly device: string;
  readonly topic: string;
  readonly reason: BadReason;
  count: number;
  last: string;
}

/** Distinct (device, topic, reason) entries kept; beyond it only the totals count. */
const MAX_ENTRIES = 1_000;

/**
 * Bad device payloads, counted per device, topic and reason (shown by `ucp status <bridge>`), with a
 * total counter per reason (`bad_payload_<reason>`). Each (device, topic, reason) is logged once; the
 * bridge goes on with the next message.
 */
export class BadPayloads {
  private readonly entries = new Map<string, BadPayloadEntry>();

  constructor(
    private readonly counters: Counters,
    private readonly log: Logger,
  ) {}

  record(device: string, topic: string, reason: BadReason, detail: string): void {
    this.counters.inc(`bad_payload_${reason}`);
    const key = `${device}\0${topic}\0${reason}`;
    const entry = this.entries.get(key);
    if (entry !== undefined) {
      entry.count++;
      entry.last = detail;
      return;
    }
    if (this.entries.size >= MAX_ENTRIES) return;
    this.entries.set(key, { device, topic, reason, count: 1, last: detail });
    this.log.warn({ device, topic, reason, detail }, `bad payload from ${device} on ${topic}: ${detail} (further ones are only counted)`);
  }

  list(): BadPayloadEntry[] {
    return [...this.entries.values()];
  }
}
