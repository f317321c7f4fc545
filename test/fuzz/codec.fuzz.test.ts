import { Encoder } from 'cbor-x';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
  ATTEMPT_OUTCOMES,
  JOB_STATES,
  PRIORITIES,
  RUN_OUTCOMES,
  DEFAULT_LIMITS,
  KINDS,
  PROTOCOL_VERSION,
  ProtocolError,
  ROLES,
  decode,
  PROTOCOL_ERROR_CODES,
  encode,
  type BodyOf,
  type CodecLimits,
  type DecodeResult,
  type Envelope,
  type JobSpec,
  type JobView,
  type Kind,
  type ProtocolErrorCode,
} from '../../src/protocol/index.js';
import '../helpers/bytes-equality.js';

const KNOWN_CODES: ReadonlySet<ProtocolErrorCode> = new Set(PROTOCOL_ERROR_CODES);

// Tight limits as well as the defaults, so the size and depth branches are reached by small inputs too.
const limitsArb = (maxMessageBytes: number): fc.Arbitrary<CodecLimits> =>
  fc.constantFrom<CodecLimits>(DEFAULT_LIMITS, { maxMessageBytes, maxDepth: 4 });

/**
 * The property every input must satisfy: decode returns instead of throwing, and what it returns is either
 * a known error or a message that is a fixed point of encode/decode. Returns the outcome for coverage stats.
 */
function checkDecode(bytes: Uint8Array, limits: CodecLimits = DEFAULT_LIMITS): string {
  const result: DecodeResult = decode(bytes, limits);
  if (!result.ok) {
    expect(result.error).toBeInstanceOf(ProtocolError);
    expect(KNOWN_CODES.has(result.error.code), result.error.code).toBe(true);
    return result.error.code;
  }
  const again = decode(encode(result.msg));
  if (!again.ok) throw new Error(`re-encoded message no longer decodes: ${again.error.message}`);
  expect(again.msg).toEqual(result.msg);
  return 'ok';
}

// Node ids may not start with "__" (see names.ts); fast-check cannot generate from a lookahead.
const nodeIdArb = fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/).filter((id) => !id.startsWith('__'));
// Free-text map keys (status counters) may be anything but "__proto__", which cbor-x renames on decode.
const notProto = (k: string): boolean => k !== '__proto__';
const messageIdArb = fc.stringMatching(/^[A-Za-z0-9._:-]{1,64}$/);
const uintArb = fc.maxSafeNat();
const uintArb32 = fc.integer({ min: 0, max: 2 ** 32 });
/** Paths inside a job: segments of [A-Za-z0-9._-]. */
const jobPathArb = fc.array(fc.stringMatching(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,8}$/), { minLength: 1, maxLength: 4 }).map((segments) => segments.join('/'));
/** Data names: any text without control characters, REC's plain names and paths alike. */
const dataNameArb = fc.oneof(jobPathArb, fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).filter((s) => !/[\p{Cc}\p{Cs}]/u.test(s) && s.length <= 512));
const digestArb = fc.stringMatching(/^[0-9a-f]{64}$/);
/** A result object's content: inline bytes, or a reference to where it was staged. */
const resultContentArb = (maxLength: number) =>
  fc.oneof(fc.uint8Array({ maxLength }), fc.record({ name: dataNameArb, size: fc.maxSafeNat(), digest: digestArb }));
const atArb = fc.tuple(fc.integer({ min: 0, max: 2 ** 48 }), fc.integer({ min: 0, max: 2 ** 32 }));
const stampArb = fc.record({ at: atArb, writer: nodeIdArb, owner: nodeIdArb, replace: fc.boolean() });
const textArb = (max: number, min = 0): fc.Arbitrary<string> => fc.string({ minLength: min, maxLength: max, unit: 'binary' });

const jobIdArb = fc.stringMatching(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}$/);
/** A job listing's page cursor: phase, 15-digit time, job id. */
const cursorArb = fc.tuple(fc.constantFrom('a', 'f'), fc.integer({ min: 0, max: 2 ** 48 }), jobIdArb).map(([phase, at, id]) => `${phase}${String(at).padStart(15, '0')}:${id}`);
const priorityArb = fc.constantFrom(...PRIORITIES);
const specArb: fc.Arbitrary<JobSpec> = fc.record(
  {
    job_id: jobIdArb,
    wasm_module: dataNameArb,
    capabilities: fc.record({ cpu_cores: fc.integer({ min: 0, max: 64 }), free_memory: uintArb, tags: fc.array(textArb(16, 1), { maxLength: 3 }), requires_mains_power: fc.boolean() }, { requiredKeys: [] }),
    argv: fc.array(textArb(20), { maxLength: 4 }),
    env: fc.dictionary(fc.stringMatching(/^[A-Z_]{1,8}$/).filter(notProto), textArb(20), { maxKeys: 3 }),
    stdin_file: dataNameArb,
    dirs: fc.array(jobPathArb, { maxLength: 3 }),
    data: fc.dictionary(jobPathArb.filter(notProto), dataNameArb, { maxKeys: 3 }),
    stdout_file: jobPathArb,
    stderr_file: jobPathArb,
    results: fc.array(jobPathArb, { maxLength: 3 }),
    named_results: fc.dictionary(jobPathArb.filter(notProto), dataNameArb, { maxKeys: 3 }),
    priority: priorityArb,
    timeout_s: fc.integer({ min: 1, max: 604_800 }),
    max_memory_mb: fc.integer({ min: 1, max: 4_096 }),
    keep_archive: fc.boolean(),
    receivers: fc.array(nodeIdArb, { maxLength: 2 }),
  },
  { requiredKeys: ['job_id', 'wasm_module', 'capabilities', 'argv', 'env', 'dirs', 'data', 'results', 'named_results', 'priority', 'timeout_s', 'max_memory_mb'] },
);
const wallArb = fc.integer({ min: 0, max: 2 ** 48 });
const viewArb: fc.Arbitrary<JobView> = fc.record(
  {
    job_id: jobIdArb,
    state: fc.constantFrom(...JOB_STATES),
    priority: priorityArb,
    owner: nodeIdArb,
    receivers: fc.array(nodeIdArb, { maxLength: 2 }),
    broker: nodeIdArb,
    created_at: wallArb,
    updated_at: wallArb,
    reason: textArb(40),
    attempts: fc.array(
      fc.record(
        { attempt: fc.integer({ min: 1, max: 100 }), executor: nodeIdArb, outcome: fc.constantFrom(...ATTEMPT_OUTCOMES), assigned_at: wallArb, started_at: wallArb, ended_at: wallArb, reason: textArb(40) },
        { requiredKeys: ['attempt', 'executor', 'outcome', 'assigned_at'] },
      ),
      { maxLength: 3 },
    ),
    result: fc.record(
      {
        attempt: fc.integer({ min: 1, max: 100 }),
        executor: nodeIdArb,
        outcome: fc.constantFrom(...RUN_OUTCOMES),
        exit_code: fc.integer({ min: 0, max: 2 ** 32 }),
        message: textArb(40),
        duration_ms: uintArb,
        archive: dataNameArb,
        archive_bytes: uintArb,
        files: fc.array(jobPathArb, { maxLength: 3 }),
        missing: fc.array(jobPathArb, { maxLength: 3 }),
        named_results: fc.array(dataNameArb, { maxLength: 3 }),
      },
      { requiredKeys: ['attempt', 'executor', 'outcome', 'message', 'duration_ms', 'archive_bytes', 'files', 'missing', 'named_results'] },
    ),
  },
  { requiredKeys: ['job_id', 'state', 'priority', 'owner', 'created_at', 'updated_at', 'attempts'] },
);

const BODY_ARBS: { [K in Kind]: fc.Arbitrary<BodyOf<K>> } = {
  birth: fc.record({ software: textArb(64), host: textArb(255), pid: uintArb, heartbeat_interval_ms: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }) }),
  death: fc.record({ graceful: fc.boolean() }),
  heartbeat: fc.record({
    seq: uintArb,
    uptime_ms: uintArb,
    rss_bytes: uintArb,
    // -0 is written as the integer 0 by cbor-x, so it cannot survive a round trip; 0 stands in for it.
    load: fc.double({ min: 0, max: 1_000, noNaN: true }).map((x) => (x === 0 ? 0 : x)),
    outbox_pending: uintArb,
  }),
  ack: fc.record({ of: messageIdArb }),
  ping: fc.record({ data: fc.uint8Array({ maxLength: 64 }) }, { requiredKeys: [] }),
  pong: fc.record({ data: fc.uint8Array({ maxLength: 64 }) }, { requiredKeys: [] }),
  status_request: fc.constant({}),
  status: fc.record({
    software: textArb(64),
    uptime_ms: uintArb,
    outbox_pending: uintArb,
    peers: fc.array(fc.record({ id: nodeIdArb, role: fc.constantFrom(...ROLES), incarnation: uintArb, alive: fc.boolean() }), { maxLength: 4 }),
    counters: fc.dictionary(textArb(64).filter(notProto), uintArb, { maxKeys: 4, noNullPrototype: true }),
  }),
  notice: fc.record({ severity: fc.constantFrom('info' as const, 'warning' as const, 'critical' as const), text: textArb(200, 1) }),
  error: fc.record({ code: textArb(64), message: textArb(200) }),
  data_put: fc.record({ name: dataNameArb, bytes: fc.uint8Array({ maxLength: 64 }), stamp: stampArb }, { requiredKeys: ['name', 'bytes'] }),
  data_put_result: fc.record({ name: dataNameArb, outcome: fc.constantFrom('stored' as const, 'unchanged' as const, 'stale' as const), store: nodeIdArb }),
  data_get: fc.record({ name: dataNameArb, prefix: fc.boolean(), limit: fc.integer({ min: 1, max: 1_000 }), after: dataNameArb }, { requiredKeys: ['name', 'prefix', 'limit'] }),
  data_items: fc.record(
    { items: fc.array(fc.record({ name: dataNameArb, bytes: fc.uint8Array({ maxLength: 16 }), at: atArb, writer: nodeIdArb }), { maxLength: 3 }), next: dataNameArb },
    { requiredKeys: ['items'] },
  ),
  data_list: fc.record({ prefix: dataNameArb, limit: fc.integer({ min: 1, max: 1_000 }), after: dataNameArb }, { requiredKeys: ['limit'] }),
  data_listing: fc.record(
    { items: fc.array(fc.record({ name: dataNameArb, size: uintArb, store: nodeIdArb, at: atArb, owner: nodeIdArb }, { requiredKeys: ['name', 'size', 'store', 'at'] }), { maxLength: 3 }), next: dataNameArb },
    { requiredKeys: ['items'] },
  ),
  data_delete: fc.record({ name: dataNameArb, job_id: fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/), stamp: stampArb }, { requiredKeys: [] }),
  data_deleted: fc.record({ count: uintArb }),
  data_write: fc.record(
    { upload: fc.stringMatching(/^[0-9a-f]{8,32}$/), name: dataNameArb, index: uintArb32, bytes: fc.uint8Array({ maxLength: 64 }), last: fc.record({ size: uintArb, digest: fc.stringMatching(/^[0-9a-f]{64}$/), stamp: stampArb }, { requiredKeys: ['size', 'digest'] }) },
    { requiredKeys: ['upload', 'name', 'index', 'bytes'] },
  ),
  data_written: fc.record({ upload: fc.stringMatching(/^[0-9a-f]{8,32}$/), index: uintArb32 }),
  data_move: fc.record({
    moves: fc.array(fc.record({ from: dataNameArb, to: dataNameArb, size: uintArb, digest: digestArb }), { minLength: 1, maxLength: 3 }),
    at: atArb,
    writer: nodeIdArb,
  }),
  data_moved: fc.record({ results: fc.array(fc.record({ to: dataNameArb, outcome: fc.constantFrom('stored' as const, 'unchanged' as const, 'stale' as const) }), { maxLength: 3 }), store: nodeIdArb }),
  data_read: fc.record({ name: dataNameArb, from: uintArb, max_bytes: fc.integer({ min: 1, max: 1_048_576 }) }),
  data_chunk: fc.record(
    { name: dataNameArb, at: atArb, writer: nodeIdArb, size: uintArb, series: fc.boolean(), digest: fc.stringMatching(/^[0-9a-f]{64}$/), from: uintArb, bytes: fc.uint8Array({ maxLength: 64 }), next: uintArb },
    { requiredKeys: ['name', 'at', 'writer', 'size', 'series', 'from', 'bytes'] },
  ),
  data_append: fc.record({
    series: fc.array(
      fc.record(
        { name: dataNameArb, records: fc.array(fc.record({ seq: uintArb, t: fc.integer({ min: 0, max: 2 ** 48 }), line: fc.uint8Array({ maxLength: 32 }) }), { maxLength: 3 }), keep_last: fc.integer({ min: 1, max: 1_000 }), before_t: fc.integer({ min: 0, max: 2 ** 48 }) },
        { requiredKeys: ['name', 'records'] },
      ),
      { maxLength: 3 },
    ),
    stamp: stampArb,
  }, { requiredKeys: ['series'] }),
  data_appended: fc.record({
    results: fc.array(
      fc.record({ name: dataNameArb, outcome: fc.constantFrom('appended' as const, 'not_series' as const, 'not_owner' as const), stored: uintArb, duplicate: uintArb, outside_retention: uintArb, size: uintArb, store: nodeIdArb }),
      { maxLength: 3 },
    ),
  }),
  job_submit: fc.record({ spec: specArb, after: fc.array(jobIdArb, { maxLength: 3 }) }),
  job_accepted: fc.record({ job: viewArb, created: fc.boolean() }),
  job_assign: fc.record({ attempt: fc.integer({ min: 1, max: 100 }), spec: specArb, versions: fc.dictionary(dataNameArb.filter(notProto), atArb, { maxKeys: 3 }) }),
  job_started: fc.record({ job_id: jobIdArb, attempt: fc.integer({ min: 1, max: 100 }) }),
  job_result: fc.record(
    {
      job_id: jobIdArb,
      attempt: fc.integer({ min: 1, max: 100 }),
      outcome: fc.constantFrom(...RUN_OUTCOMES),
      exit_code: fc.integer({ min: 0, max: 2 ** 32 }),
      message: textArb(40),
      duration_ms: uintArb,
      archive: resultContentArb(64),
      files: fc.array(jobPathArb, { maxLength: 3 }),
      missing: fc.array(jobPathArb, { maxLength: 3 }),
      named: fc.array(fc.record({ path: jobPathArb, name: dataNameArb, bytes: resultContentArb(16) }), { maxLength: 2 }),
    },
    { requiredKeys: ['job_id', 'attempt', 'outcome', 'message', 'duration_ms', 'archive', 'files', 'missing', 'named'] },
  ),
  job_verdict: fc.record(
    { job_id: jobIdArb, attempt: fc.integer({ min: 1, max: 100 }), verdict: fc.constant('rejected' as const), accepted_attempt: fc.integer({ min: 1, max: 100 }), reason: textArb(40) },
    { requiredKeys: ['job_id', 'attempt', 'verdict', 'reason'] },
  ),
  sync_delta: fc.record({
    changes: fc.array(
      fc.record(
        {
          table: fc.constantFrom('jobs' as const, 'names' as const, 'nodes' as const),
          key: dataNameArb,
          origin: nodeIdArb,
          seq: fc.integer({ min: 1, max: 2 ** 40 }),
          vc: fc.dictionary(nodeIdArb.filter(notProto), fc.integer({ min: 1, max: 2 ** 48 }), { maxKeys: 3 }),
          hlc: atArb,
          job: fc.tuple(viewArb, specArb, fc.array(jobIdArb, { maxLength: 2 })).map(([view, spec, after]) => ({ ...view, spec, digest: 'ab', after })),
          location: fc.record({ store: nodeIdArb, size: uintArb, at: atArb }),
          peer: fc.record({ node_id: nodeIdArb, role: fc.constantFrom('executor' as const, 'datastore' as const), alive: fc.boolean(), job_slots: fc.integer({ min: 0, max: 4_096 }) }, { requiredKeys: ['node_id', 'role', 'alive'] }),
        },
        { requiredKeys: ['table', 'key', 'origin', 'seq', 'vc', 'hlc'] },
      ),
      { maxLength: 2 },
    ),
    versions: fc.dictionary(nodeIdArb.filter(notProto), uintArb, { maxKeys: 3 }),
    complete: fc.boolean(),
  }),
  job_delegate: fc.record({ job: fc.tuple(viewArb, specArb).map(([view, spec]) => ({ ...view, spec, digest: 'ab', after: [] })) }),
  sync_digest: fc.record({ versions: fc.dictionary(nodeIdArb.filter(notProto), uintArb, { maxKeys: 3 }) }),
  job_cancel: fc.record({ job_id: jobIdArb, attempt: fc.integer({ min: 1, max: 100 }), reason: textArb(40) }),
  job_update: fc.record({ job: viewArb, archive: fc.uint8Array({ maxLength: 64 }) }, { requiredKeys: ['job'] }),
  job_query: fc.record({ job_id: jobIdArb }),
  job_withdraw: fc.record({ job_id: jobIdArb }),
  job_info: fc.record({ job: viewArb }),
  job_list: fc.record(
    { limit: fc.integer({ min: 1, max: 500 }), after: cursorArb, owner: nodeIdArb, receiver: nodeIdArb, states: fc.uniqueArray(fc.constantFrom(...JOB_STATES), { minLength: 1 }), since: wallArb },
    { requiredKeys: ['limit'] },
  ),
  job_remove: fc.record({ job_id: jobIdArb, owner: nodeIdArb }, { requiredKeys: [] }),
  job_removed: fc.record({ count: fc.nat() }),
  job_listing: fc.record(
    {
      items: fc.array(
        fc.record(
          { job_id: jobIdArb, state: fc.constantFrom(...JOB_STATES), priority: priorityArb, owner: nodeIdArb, attempts: uintArb, executor: nodeIdArb, updated_at: wallArb, reason: textArb(40) },
          { requiredKeys: ['job_id', 'state', 'priority', 'owner', 'attempts', 'updated_at'] },
        ),
        { maxLength: 3 },
      ),
      next: cursorArb,
    },
    { requiredKeys: ['items'] },
  ),
};

const envelopeArb: fc.Arbitrary<Envelope> = fc
  .constantFrom(...KINDS)
  .chain((kind) =>
    fc.record(
      {
        kind: fc.constant(kind),
        body: BODY_ARBS[kind] as fc.Arbitrary<BodyOf<Kind>>,
        id: messageIdArb,
        from: nodeIdArb,
        role: fc.constantFrom(...ROLES),
        inc: uintArb,
        vc: fc.dictionary(nodeIdArb, fc.integer({ min: 1, max: 2 ** 48 }), { maxKeys: 6, noNullPrototype: true }),
        hlc: fc.record({ wall: fc.integer({ min: 0, max: 2 ** 48 }), logical: fc.integer({ min: 0, max: 2 ** 32 }) }),
        re: messageIdArb,
        ack: fc.constant(true as const),
      },
      { requiredKeys: ['kind', 'body', 'id', 'from', 'role', 'inc', 'vc', 'hlc'] },
    ),
  )
  .map((fields) => ({ v: PROTOCOL_VERSION, ...fields }) as Envelope);

type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; byte: number }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; len: number }
  | { op: 'duplicate'; at: number; len: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }) },
  // CBOR header bytes that change an item's major type or length are the interesting overwrites.
  { weight: 3, arbitrary: fc.record({ op: fc.constant('set' as const), at: fc.nat(), byte: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x00, 0x17, 0x18, 0x1b, 0x1f, 0x5f, 0x7f, 0x9f, 0xbf, 0xd8, 0xf6, 0xf7, 0xf9, 0xfb, 0xff)) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 8 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 16 }) }) },
);

function mutate(input: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let b = Uint8Array.from(input);
  for (const m of mutations) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    switch (m.op) {
      case 'flip':
        b[at]! ^= 1 << m.bit;
        break;
      case 'set':
        b[at] = m.byte;
        break;
      case 'truncate':
        b = b.slice(0, at);
        break;
      case 'insert':
        b = Uint8Array.from([...b.subarray(0, at), ...m.bytes, ...b.subarray(at)]);
        break;
      case 'delete':
        b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + m.len)]);
        break;
      case 'duplicate':
        b = Uint8Array.from([...b.subarray(0, at + m.len), ...b.subarray(at, at + m.len), ...b.subarray(at + m.len)]);
        break;
    }
  }
  return b;
}

const rawEncoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, variableMapSize: true });

function wireOf(msg: Envelope): Record<string, unknown> {
  const w: Record<string, unknown> = { ...msg, hlc: [msg.hlc.wall, msg.hlc.logical] };
  return w;
}

// fast-check's default size keeps arrays to a handful of items; the 'max' branch reaches long inputs.
const bytesArb = fc.oneof(fc.uint8Array({ maxLength: 16 }), fc.uint8Array({ maxLength: 300, size: 'max' }));

describe('codec fuzz', () => {
  it('round-trips every valid envelope exactly', () => {
    fc.assert(
      fc.property(envelopeArb, (msg) => {
        const result = decode(encode(msg));
        if (!result.ok) throw new Error(result.error.message);
        expect(result.msg).toEqual(msg);
      }),
      { numRuns: 1_000 },
    );
  });

  it('never throws on random bytes', () => {
    const outcomes = new Set<string>();
    fc.assert(
      fc.property(bytesArb, limitsArb(64), (bytes, limits) => {
        outcomes.add(checkDecode(bytes, limits));
      }),
      { numRuns: 3_000 },
    );
    // Random bytes are mostly not CBOR maps; these are the codes they can be expected to reach.
    for (const code of ['malformed_cbor', 'too_large', 'bad_envelope']) expect(outcomes).toContain(code);
  });

  it('never throws on mutated, truncated and bit-flipped valid messages', () => {
    const outcomes = new Set<string>();
    fc.assert(
      fc.property(envelopeArb, fc.array(mutationArb, { minLength: 1, maxLength: 6 }), limitsArb(160), (msg, mutations, limits) => {
        outcomes.add(checkDecode(mutate(encode(msg), mutations), limits));
      }),
      { numRuns: 3_000 },
    );
    // Proves the mutations land in every layer, not just the CBOR parser.
    for (const code of ['ok', 'malformed_cbor', 'too_large', 'bad_envelope', 'bad_body']) expect(outcomes).toContain(code);
  });

  it('never throws when one envelope or body field holds an arbitrary CBOR value', () => {
    const outcomes = new Set<string>();
    const fieldArb = fc.constantFrom('v', 'kind', 'id', 'from', 'role', 'inc', 'vc', 'hlc', 'body', 're', 'ack', 'extra');
    fc.assert(
      fc.property(envelopeArb, fieldArb, fc.boolean(), fc.anything({ maxDepth: 3, withBigInt: true, withTypedArray: true, withMap: true, withSet: true }), (msg, field, inBody, value) => {
        const wire = wireOf(msg);
        if (inBody) wire.body = { ...(msg.body as object), [field]: value };
        else wire[field] = value;
        let bytes: Uint8Array;
        try {
          bytes = rawEncoder.encode(wire);
        } catch {
          // Some generated JS values have no CBOR form; that says nothing about the decoder.
          fc.pre(false);
          return;
        }
        outcomes.add(checkDecode(bytes));
      }),
      { numRuns: 1_500 },
    );
    for (const code of ['bad_envelope', 'bad_body', 'unsupported_version', 'unknown_kind']) expect(outcomes).toContain(code);
  });
});
