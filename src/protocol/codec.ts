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

/** The bytes `value` takes inside a message, as encode() writes it. */
export function encodedSize(value: unknown): number {
  return encoder.encode(value).byteLength;
}

type Failure = { ok: false; error: ProtocolError };
export type DecodeResult = { ok: true; msg: AnyEnvelope } | Failure;

function fail(code: ProtocolError['code'], reason: string): Failure {
  return { ok: false, error: new ProtocolError(code, reason) };
}

/**
 * Most envelopes one bundle may carry. A sender bundles what it sends one node in one turn of its event
 * loop; under load that is a few dozen, and the message size limit bounds the rest.
 */
export const MAX_BUNDLE_ENVELOPES = 1_024;

/**
 * One inbox payload carrying several envelopes: a CBOR array of them (PROTOCOL.md, "Bundles"). The
 * envelopes are already encoded, so the array is only a header before their bytes, nothing re-encoded.
 */
export function encodeBundle(payloads: readonly Uint8Array[]): Buffer {
  const n = payloads.length;
  if (n > MAX_BUNDLE_ENVELOPES) throw new RangeError(`a bundle carries at most ${MAX_BUNDLE_ENVELOPES} envelopes, not ${n}`);
  // CBOR major type 4 (array) with its length in the initial byte, or in the one or two bytes after it.
  const header = n < 24 ? [0x80 | n] : n < 256 ? [0x98, n] : [0x99, n >> 8, n & 0xff];
  let size = header.length;
  for (const p of payloads) size += p.byteLength;
  const out = Buffer.allocUnsafe(size);
  out.set(header, 0);
  let at = header.length;
  for (const p of payloads) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Whether a payload is a bundle (a CBOR array) rather than a single envelope (a CBOR map). */
export function isBundle(bytes: Uint8Array): boolean {
  return bytes.byteLength > 0 && bytes[0]! >> 5 === 4;
}

/**
 * Decodes and fully validates one message. Never throws: anything malformed, unknown, too deep or too large
 * yields a typed error so the caller can count it and carry on.
 */
export function decode(bytes: Uint8Array, limits: CodecLimits = DEFAULT_LIMITS): DecodeResult {
  const raw = decodeCbor(bytes, limits);
  if ('ok' in raw) return raw;
  const problem = structureProblem(raw.value, limits.maxDepth, bytes.byteLength);
  if (problem === 'too_deep') return fail('too_deep', `nesting deeper than ${limits.maxDepth}`);
  if (problem === 'shared') return fail('malformed_cbor', 'shared or cyclic references (CBOR tags 28/29) are not accepted');
  return validate(raw.value);
}

/**
 * Decodes a bundle: one result per envelope, each validated on its own, so that one bad envelope is
 * dropped and counted while the others are handled. A payload that is not a well-formed bundle as a
 * whole yields a single failure.
 */
export function decodeBundle(bytes: Uint8Array, limits: CodecLimits = DEFAULT_LIMITS): DecodeResult[] {
  const raw = decodeCbor(bytes, limits);
  if ('ok' in raw) return [raw];
  if (!Array.isArray(raw.value)) return [fail('bad_envelope', 'a bundle is a CBOR array of envelopes')];
  if (raw.value.length === 0 || raw.value.length > MAX_BUNDLE_ENVELOPES) return [fail('bad_envelope', `a bundle carries 1 to ${MAX_BUNDLE_ENVELOPES} envelopes, not ${raw.value.length}`)];
  // The array is one level more: each envelope in it gets the same depth as one sent alone.
  const problem = structureProblem(raw.value, limits.maxDepth + 1, bytes.byteLength);
  if (problem === 'too_deep') return [fail('too_deep', `nesting deeper than ${limits.maxDepth}`)];
  if (problem === 'shared') return [fail('malformed_cbor', 'shared or cyclic references (CBOR tags 28/29) are not accepted')];
  return raw.value.map(validate);
}

function decodeCbor(bytes: Uint8Array, limits: CodecLimits): { value: unknown } | Failure {
  if (bytes.byteLength > limits.maxMessageBytes) {
    return fail('too_large', `${bytes.byteLength} bytes exceeds the ${limits.maxMessageBytes}-byte limit`);
  }
  if (bytes.byteLength === 0) return fail('malformed_cbor', 'empty payload');
  try {
    return { value: decoder.decode(bytes) };
  } catch (err) {
    // cbor-x marks reads past the end of the input; a DataView overrun is a RangeError too.
    if ((err as { incomplete?: boolean }).incomplete === true) return fail('malformed_cbor', 'truncated CBOR');
    if (err instanceof RangeError && /call stack/i.test(err.message)) return fail('too_deep', 'nesting exhausted the decoder stack');
    return fail('malformed_cbor', err instanceof Error ? err.message.slice(0, 200) : String(err).slice(0, 200));
  }
}

/** Checks a decoded value (its structure already bounded) as an envelope. */
function validate(raw: unknown): DecodeResult {
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
