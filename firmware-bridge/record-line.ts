import type { Reading } from './codecs/codec.js';

const encoder = new TextEncoder();

/**
 * One stored reading: a line of JSON in its series, `{"seq":12,"t":1718000000000,"v":21.5}`, with the
 * unit (`u`) and the device's own time (`ts`) when known. Bytes are stored as base64 text (`"enc":"base64"`).
 * Lines are what a job reads and what `ucp data get` prints.
 */
export function recordLine(seq: number, t: number, value: unknown, reading: Pick<Reading, 'ts'>, unit?: string): Uint8Array {
  const record: Record<string, unknown> = { seq, t };
  if (value instanceof Uint8Array) {
    record['v'] = Buffer.from(value).toString('base64');
    record['enc'] = 'base64';
  } else {
    record['v'] = value;
  }
  if (unit !== undefined) record['u'] = unit;
  if (reading.ts !== undefined) record['ts'] = reading.ts;
  return encoder.encode(`${JSON.stringify(record)}\n`);
}

/** The record that marks a metric stale: its source went offline (a Sparkplug death). */
export function staleLine(seq: number, t: number): Uint8Array {
  return encoder.encode(`${JSON.stringify({ seq, t, stale: true })}\n`);
}
