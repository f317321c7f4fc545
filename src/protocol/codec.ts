import { Decoder, Encoder } from 'cbor-x';
import { ProtocolError } from './errors.js';
import { BODY_SCHEMAS, isKind } from './kinds.js';
import { PROTOCOL_VERSION, type AnyEnvelope, type Envelope } from './envelope.js';
import { messageId, nodeId, ROLES } from './names.js';
import { literal, preview, record, structureProblem, tuple, uint, type Schema } from './schema.js';
import type { Kind } from './kinds.js';

export interface CodecLimits {
  /** Larger payloads are refused before any parsing. */
  readonly maxMessageBytes: number;
  /** Deepest nesting of arrays and maps accepted. */
  readonly maxDepth: number;
}

export const DEFAULT_LIMITS: CodecLimits = { maxMessageBytes: 1 << 20, maxDepth: 32 };

/** The most brokers a vector clock may name; far above any field deployment, low enough to bound work. */
const MAX_CLOCK_ENTRIES = 1_024;
/**
 * Upper bounds that keep clock arithmetic exact and stop one peer from poisoning everyone's clocks: a
 * counter of 2^48 lasts 8,900 years at a million messages a second; 2^48 ms is the year 10889.
 */
const MAX_CLOCK_COUNTER = 2 ** 48;
const MAX_HLC_WALL = 2 ** 48;
const MAX_HLC_LOGICAL = 2 ** 32;

// Plain CBOR only (no cbor-x record extension), so any CBOR library on a field device can read our messages.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, variableMapSize: true });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

const ENVELOPE_FIELDS = new Set(['v', 'kind', 'id', 'from', 'role', 'inc', 'vc', 'hlc', 'body', 're', 'ack']);
const headerChecks: Array<[string, Schema<unknown>]> = [
  ['id', messageId()],
  ['from', nodeId()],
  ['role', literal(...ROLES)],
  ['inc', uint()],
  ['vc', record(nodeId(), uint({ min: 1, max: MAX_CLOCK_COUNTER }), { max: MAX_CLOCK_ENTRIES })],
  ['hlc', tuple(uint({ max: MAX_HLC_WALL }), uint({ max: MAX_HLC_LOGICAL }))],
];

export function encode(msg: Envelope): Buffer {
  const wire: Record<string, unknown> = {
    v: msg.v,
    kind: msg.kind,
    id: msg.id,
    from: msg.from,
    role: msg.role,
    inc: msg.inc,
    vc: msg.vc,
    hlc: [msg.hlc.wall, msg.hlc.logical],
    body: msg.body,
  };
  if (msg.re !== undefined) wire.re = msg.re;
  if (msg.ack === true) wire.ack = true;
  return encoder.encode(wire);
}

export type DecodeResult = { ok: true; msg: AnyEnvelope } | { ok: false; error: ProtocolError };

function fail(code: ProtocolError['code'], reason: string): DecodeResult {
  return { ok: false, error: new ProtocolError(code, reason) };
}

/**
 * Decodes and fully validates one message. Never throws: anything malformed, unknown, too deep or too large
 * yields a typed error so the caller can count it and carry on.
 */
export function decode(bytes: Uint8Array, limits: CodecLimits = DEFAULT_LIMITS): DecodeResult {
  if (bytes.byteLength > limits.maxMessageBytes) {
    return fail('too_large', `${bytes.byteLength} bytes exceeds the ${limits.maxMessageBytes}-byte limit`);
  }
  if (bytes.byteLength === 0) return fail('malformed_cbor', 'empty payload');
  let raw: unknown;
  try {
    raw = decoder.decode(bytes);
  } catch (err) {
    // cbor-x marks reads past the end of the input; a DataView overrun is a RangeError too.
    if ((err as { incomplete?: boolean }).incomplete === true) return fail('malformed_cbor', 'truncated CBOR');
    if (err instanceof RangeError && /call stack/i.test(err.message)) return fail('too_deep', 'nesting exhausted the decoder stack');
    return fail('malformed_cbor', err instanceof Error ? err.message.slice(0, 200) : String(err).slice(0, 200));
  }
  const problem = structureProblem(raw, limits.maxDepth, bytes.byteLength);
  if (problem === 'too_deep') return fail('too_deep', `nesting deeper than ${limits.maxDepth}`);
  if (problem === 'shared') return fail('malformed_cbor', 'shared or cyclic references (CBOR tags 28/29) are not accepted');
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || raw instanceof Uint8Array) {
    return fail('bad_envelope', 'the message is not a CBOR map');
  }
  const m = raw as Record<string, unknown>;
  if (m.v !== PROTOCOL_VERSION) {
    return fail('unsupported_version', `protocol version ${m.v === undefined ? 'missing' : preview(m.v)}; this node speaks ${PROTOCOL_VERSION}`);
  }
  for (const k in m) {
    if (!ENVELOPE_FIELDS.has(k)) return fail('bad_envelope', `unknown envelope field "${k.slice(0, 64)}"`);
  }
  for (const [field, schema] of headerChecks) {
    const err = schema.check(m[field], field);
    if (err !== undefined) return fail('bad_envelope', err);
  }
  if (m.re !== undefined) {
    const err = messageId().check(m.re, 're');
    if (err !== undefined) return fail('bad_envelope', err);
  }
  if (m.ack !== undefined && m.ack !== true) return fail('bad_envelope', 'ack: expected true when present');
  if (!isKind(m.kind)) return fail('unknown_kind', `unknown message kind ${m.kind === undefined ? 'missing' : preview(m.kind)}`);
  const kind: Kind = m.kind;
  const bodyErr = (BODY_SCHEMAS[kind] as Schema<unknown>).check(m.body, 'body');
  if (bodyErr !== undefined) return fail('bad_body', `${kind} ${bodyErr}`);
  // The decoded map is ours alone and now fully checked: reshape it in place rather than copy it.
  const hlc = m.hlc as [number, number];
  m.hlc = { wall: hlc[0], logical: hlc[1] };
  const msg = m as unknown as AnyEnvelope;
  return { ok: true, msg };
}
