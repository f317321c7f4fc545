import { createRequire } from 'node:module';
import type { UMetric, UPayload } from 'sparkplug-payload/lib/sparkplugbpayload.js';

// Eclipse Tahu's own encoder and decoder for the Sparkplug B protobuf payload (a CommonJS package).
const require = createRequire(import.meta.url);
const tahu = (require('sparkplug-payload') as typeof import('sparkplug-payload')).get('spBv1.0')!;

export type { UMetric, UPayload };

/** A metric with its value as a plain JavaScript value (64-bit integers as numbers or, if too large, text). */
export interface Metric {
  readonly name?: string;
  readonly alias?: number;
  readonly type?: string;
  readonly value: unknown;
  readonly timestamp?: number;
  readonly isNull: boolean;
}

export interface Payload {
  readonly timestamp?: number;
  readonly seq?: number;
  readonly metrics: readonly Metric[];
}

interface LongLike {
  toNumber(): number;
  toString(): string;
}

function isLong(v: unknown): v is LongLike {
  return typeof v === 'object' && v !== null && 'low' in v && 'high' in v && typeof (v as unknown as LongLike).toNumber === 'function';
}

function plain(v: unknown): unknown {
  if (isLong(v)) {
    const n = v.toNumber();
    return Number.isSafeInteger(n) ? n : v.toString();
  }
  return v;
}

function num(v: unknown): number | undefined {
  const p = plain(v);
  return typeof p === 'number' ? p : undefined;
}

/** Decodes a Sparkplug B payload; throws on bytes that are not one. */
export function decodeSparkplug(bytes: Uint8Array): Payload {
  const raw = tahu.decodePayload(bytes);
  return {
    ...(raw.timestamp != null ? { timestamp: num(raw.timestamp)! } : {}),
    ...(raw.seq != null ? { seq: num(raw.seq)! } : {}),
    metrics: (raw.metrics ?? []).map((m) => ({
      ...(m.name != null && m.name !== '' ? { name: m.name } : {}),
      ...(m.alias != null ? { alias: num(m.alias)! } : {}),
      ...(m.type != null ? { type: String(m.type) } : {}),
      value: plain(m.value),
      ...(m.timestamp != null ? { timestamp: num(m.timestamp)! } : {}),
      isNull: m.isNull === true,
    })),
  };
}

export function encodeSparkplug(payload: UPayload): Uint8Array {
  return tahu.encodePayload(payload);
}

/** The Sparkplug B data type for a value the bridge sends in a command. */
export function sparkplugType(value: unknown): UMetric['type'] {
  if (typeof value === 'boolean') return 'Boolean';
  if (typeof value === 'number') return Number.isSafeInteger(value) ? 'Int64' : 'Double';
  return 'String';
}
