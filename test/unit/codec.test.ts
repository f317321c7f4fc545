import { Decoder, Encoder } from 'cbor-x';
import { afterEach, describe, expect, it, vi } from 'vitest';

import {
  DEFAULT_LIMITS,
  KINDS,
  PROTOCOL_VERSION,
  ProtocolError,
  Topics,
  parseTopic,
  decode,
  decodeBundle,
  encodeBundle,
  isBundle,
  PROTOCOL_ERROR_CODES,
  encode,
  type AnyEnvelope,
  type BodyOf,
  type CodecLimits,
  type DecodeResult,
  type Envelope,
  type JobSpec,
  type JobView,
  type Kind,
  type ProtocolErrorCode,
  type Role,
} from '../../src/protocol/index.js';
import '../helpers/bytes-equality.js';


// Same options as the codec, so tests can put arbitrary (invalid) maps on the wire.
const rawEncoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, variableMapSize: true });
const rawBytes = (value: unknown): Uint8Array => rawEncoder.encode(value);

/**
 * Valid bodies for every kind. The mapped type makes a new kind without a case a compile error; the
 * coverage test below makes it a test failure too, for anyone running vitest without tsc.
 */
const SPEC: JobSpec = {
  job_id: 'fw-stats',
  wasm_module: 'fire/bin/stats.wasm',
  capabilities: { cpu_cores: 1, tags: ['firefighting'], min_battery_percent: 20 },
  argv: ['stats', '--district', '3'],
  env: { DISTRICT: '3' },
  dirs: ['output'],
  data: { 'input/temps.txt': 'fire/district-3/temps' },
  results: ['out.txt', 'output'],
  named_results: { 'stats.txt': 'fire/district-3/stats' },
  priority: 'critical',
  timeout_s: 30,
  max_memory_mb: 64,
};
const VIEW: JobView = {
  job_id: 'fw-stats',
  state: 'running',
  priority: 'critical',
  owner: 'client-7',
  created_at: 1_700_000_000_000,
  updated_at: 1_700_000_000_100,
  attempts: [
    { attempt: 1, executor: 'fire-unit-1', outcome: 'failed', assigned_at: 1_700_000_000_001, ended_at: 1_700_000_000_050, reason: 'disk full' },
    { attempt: 2, executor: 'fire-unit-2', outcome: 'running', assigned_at: 1_700_000_000_060, started_at: 1_700_000_000_070 },
  ],
};
const RESULT: NonNullable<JobView['result']> = {
  attempt: 2,
  executor: 'fire-unit-2',
  outcome: 'exited',
  exit_code: 0,
  message: 'exited with code 0',
  duration_ms: 12,
  archive: 'fw-stats/result.zip',
  archive_bytes: 300,
  files: ['out.txt', 'output/stdout.txt'],
  missing: [],
  named_results: ['fire/district-3/stats'],
};

const { exit_code: _exitCode, ...TRAPPED_BASE } = RESULT;
const TRAPPED: NonNullable<JobView['result']> = { ...TRAPPED_BASE, outcome: 'trap', message: 'trap: unreachable' };

const BODY_CASES: { [K in Kind]: ReadonlyArray<BodyOf<K>> } = {
  birth: [{ software: 'ucp-edge/0.1.0', host: 'edge-07.depot-b.local', pid: 4242, heartbeat_interval_ms: 1_000 }],
  death: [{ graceful: false }, { graceful: true }],
  heartbeat: [
    { seq: 17, uptime_ms: 123_456, rss_bytes: 52_428_800, load: 0.375, outbox_pending: 2 },
    { seq: 0, uptime_ms: 0, rss_bytes: 0, load: 1_000, outbox_pending: 0 },
    {
      seq: 3,
      uptime_ms: 9,
      rss_bytes: 1,
      load: 0.5,
      outbox_pending: 0,
      capabilities: { cpu_cores: 4, free_cpu_capacity: 250, free_memory: 2 ** 31, free_disk_space: 2 ** 34, tags: ['firefighting'], battery_percent: 80, on_mains_power: false },
      running_jobs: ['job-1', 'avg.temp'],
    },
    { seq: 4, uptime_ms: 9, rss_bytes: 1, load: 0, outbox_pending: 0, free_bytes: 2 ** 40 },
  ],
  ack: [{ of: '3.1z' }],
  ping: [{ data: new Uint8Array([0, 255, 7, 128]) }, {}],
  pong: [{ data: new Uint8Array(0) }, {}],
  status_request: [{}],
  status: [
    {
      software: 'ucp-edge/0.1.0',
      uptime_ms: 9_000,
      outbox_pending: 1,
      peers: [
        { id: 'b1', role: 'broker', incarnation: 3, alive: true },
        { id: 'exec.7', role: 'executor', incarnation: 1, alive: false },
      ],
      counters: { bad_body: 2, too_large: 1 },
    },
    { software: '', uptime_ms: 0, outbox_pending: 0, peers: [], counters: {} },
    {
      software: 's',
      uptime_ms: 1,
      outbox_pending: 0,
      peers: [],
      counters: {},
      bridge: {
        field_connected: true,
        buffer: { records: 2, bytes: 100, backlog: 0, oldest_ms: 5, dropped_bytes: 0, dropped_age: 1 },
        forwarded: { stored: 10, duplicate: 0, outside_retention: 2, batches: 1, failures: 0, drained: 0, drain_ms: 0 },
        bad_payloads: [{ device: 'pump-1', topic: 'sensors/pump-1/level', reason: 'unparsable', count: 3, last: 'not JSON' }],
        edge_nodes: [{ group: 'plant', node: 'edge-1', state: 'offline', bd_seq: 3, seq_gaps: 1, stale_deaths_ignored: 1, rebirths_requested: 1, offline_devices: [] }],
        commands: [{ job_id: 'tank-high.1', device: 'pump-1', topic: 'devices/pump-1/cmd', state: 'acked', at: 1, ms: 40 }],
      },
    },
  ],
  notice: [
    { severity: 'critical', text: 'evacuate sector 4, move units to depot B' },
    { severity: 'info', text: 'x'.repeat(4_096) },
  ],
  error: [{ code: 'not_found', message: 'no such job' }],
  data_put: [{ name: 'fire/district-3/temps', bytes: new Uint8Array([1, 2, 3]) }, { name: 'Messwerte Bezirk 3 (°C)', bytes: new Uint8Array([4]), stamp: { at: [1_718_000_000_000, 2], writer: 'client-a', owner: 'client-a', replace: false } }],
  data_put_result: [{ name: 'fire/district-3/temps', outcome: 'stored', store: 'ds-1' }, { name: 'a', outcome: 'stale', store: 'ds-2' }],
  data_get: [{ name: 'fire', prefix: true, limit: 100, after: 'fire/a' }, { name: 'x', prefix: false, limit: 1 }],
  data_items: [{ items: [{ name: 'fire/a', bytes: new Uint8Array(0), at: [1, 0], writer: 'w' }], next: 'fire/a' }, { items: [] }],
  data_list: [{ limit: 50 }, { prefix: 'job-1', limit: 1_000, after: 'job-1/a' }],
  data_listing: [{ items: [{ name: 'job-1/result.zip', size: 1_234, store: 'ds-1', at: [5, 1], owner: 'client-a' }] }, { items: [], next: 'z' }],
  data_delete: [{ name: 'fire/a' }, { job_id: 'job-1', stamp: { at: [9, 1], writer: 'ops', owner: 'client-a', replace: true } }],
  data_deleted: [{ count: 0 }, { count: 12 }],
  data_write: [
    { upload: '9f2c1d', name: 'rec/cam-1', index: 0, bytes: new Uint8Array(16) },
    { upload: '9f2c1d', name: 'rec/cam-1', index: 3, bytes: new Uint8Array(3), last: { size: 786_435, digest: 'a'.repeat(64), stamp: { at: [1_718_000_000_000, 2], writer: 'client-a', owner: 'client-a', replace: false } } },
    { upload: '9f2c1d', name: 'rec/cam-1', index: 1, bytes: new Uint8Array(3), last: { size: 262_147, digest: 'a'.repeat(64) } },
  ],
  data_written: [{ upload: '9f2c1d', index: 2 }],
  data_move: [
    { moves: [{ from: 'fw-stats/.attempts/2/result.zip', to: 'fw-stats/result.zip', size: 5_242_880, digest: 'c'.repeat(64) }], at: [1_718_000_000_000, 4], writer: 'fire-unit-1' },
    {
      moves: [
        { from: 'fw-stats/.attempts/2/result.zip', to: 'fw-stats/result.zip', size: 0, digest: 'd'.repeat(64) },
        { from: 'fw-stats/.attempts/2/named/0', to: 'fire/district-3/stats', size: 3_145_728, digest: 'e'.repeat(64) },
      ],
      at: [1, 0],
      writer: 'w',
    },
  ],
  data_moved: [{ results: [{ to: 'fw-stats/result.zip', outcome: 'stored' }, { to: 'fire/district-3/stats', outcome: 'unchanged' }], store: 'ds-1' }, { results: [], store: 'ds-2' }],
  data_read: [{ name: 'rec/cam-1', from: 262_144, max_bytes: 262_144 }],
  data_chunk: [
    { name: 'rec/cam-1', at: [5, 1], writer: 'client-a', size: 786_435, series: false, digest: 'b'.repeat(64), from: 0, bytes: new Uint8Array(8), next: 8 },
    { name: 'field/p1/level', at: [5, 2], writer: 'bridge-1', size: 40, series: true, from: 12, bytes: new Uint8Array(40) },
  ],
  data_append: [
    { series: [{ name: 'field/p1/level', records: [{ seq: 0, t: 1_718_000_000_000, line: new Uint8Array([123, 125, 10]) }], keep_last: 100, before_t: 1_717_000_000_000 }] },
    { series: [], stamp: { at: [0, 0], writer: 'b', owner: 'b', replace: false } },
  ],
  data_appended: [{ results: [{ name: 'field/p1/level', outcome: 'appended', stored: 1, duplicate: 0, outside_retention: 0, size: 3, store: 'ds-1' }, { name: 'field/p2/level', outcome: 'not_owner', stored: 0, duplicate: 0, outside_retention: 4, size: 9, store: 'ds-1' }] }],
  job_submit: [
    { spec: SPEC, after: [] },
    { spec: { ...SPEC, stdin_file: 'fire/stdin', stdout_file: 'output/stdout.txt', stderr_file: 'output/stderr.txt', keep_archive: false, receivers: ['command-post'] }, after: ['fw-stats'] },
  ],
  job_accepted: [{ job: VIEW, created: true }],
  job_assign: [{ attempt: 1, spec: SPEC, versions: { 'fire/bin/stats.wasm': [1_700_000_000_000, 2] } }],
  job_started: [{ job_id: 'fw-stats', attempt: 2 }],
  job_result: [
    { job_id: 'fw-stats', attempt: 1, outcome: 'exited', exit_code: 0, message: 'exited with code 0', duration_ms: 41, archive: new Uint8Array([0x50, 0x4b, 5, 6]), files: ['out.txt'], missing: [], named: [{ path: 'stats.txt', name: 'fire/district-3/stats', bytes: new Uint8Array([1, 2]) }] },
    { job_id: 'fw-stats', attempt: 3, outcome: 'missing_input', message: 'missing input "x"', duration_ms: 0, archive: new Uint8Array(), files: [], missing: [], named: [] },
    {
      job_id: 'fw-stats',
      attempt: 2,
      outcome: 'exited',
      exit_code: 0,
      message: 'exited with code 0',
      duration_ms: 900,
      archive: { name: 'fw-stats/.attempts/2/result.zip', size: 5_242_880, digest: 'c'.repeat(64) },
      files: ['big.bin'],
      missing: [],
      named: [
        { path: 'stats.bin', name: 'fire/district-3/stats', bytes: { name: 'fw-stats/.attempts/2/named/0', size: 3_145_728, digest: 'e'.repeat(64) } },
        { path: 'small.txt', name: 'fire/district-3/small', bytes: new Uint8Array([1]) },
      ],
    },
  ],
  job_verdict: [
    { job_id: 'fw-stats', attempt: 1, verdict: 'rejected', accepted_attempt: 2, reason: 'attempt 2 delivered first' },
    { job_id: 'fw-stats', attempt: 2, verdict: 'rejected', reason: 'unauthorized' },
  ],
  sync_delta: [
    {
      changes: [
        { table: 'jobs', key: 'fw-stats', origin: 'west', seq: 7, vc: { west: 7, east: 2 }, hlc: [1_700_000_000_000, 1], job: { ...VIEW, broker: 'west', spec: SPEC, digest: 'ab12', after: [] } },
        { table: 'names', key: 'fire/district-3/temps', origin: 'east', seq: 3, vc: { east: 3 }, hlc: [1_700_000_000_001, 0], location: { store: 'ds-1', size: 30, at: [1_700_000_000_001, 0] } },
        { table: 'names', key: 'fire/old', origin: 'east', seq: 4, vc: { east: 4 }, hlc: [1_700_000_000_002, 0] },
        {
          table: 'nodes',
          key: 'east/fire-unit-1',
          origin: 'east',
          seq: 5,
          vc: { east: 5 },
          hlc: [1_700_000_000_003, 0],
          peer: { node_id: 'fire-unit-1', role: 'executor', alive: true, capabilities: { cpu_cores: 4, free_cpu_capacity: 350, free_memory: 2 ** 30, free_disk_space: 2 ** 34, tags: ['firefighting'], on_mains_power: false, battery_percent: 80 }, job_slots: 4 },
        },
      ],
      versions: { west: 7, east: 4 },
      complete: true,
    },
    { changes: [], versions: {}, complete: false },
  ],
  job_delegate: [{ job: { ...VIEW, broker: 'west', spec: SPEC, digest: 'ab12', after: [] } }],
  sync_digest: [{ versions: {} }, { versions: { west: 12, east: 0 } }],
  job_cancel: [{ job_id: 'fw-stats', attempt: 1, reason: 'attempt 2 delivered first' }],
  job_update: [{ job: VIEW }, { job: { ...VIEW, state: 'succeeded', result: RESULT }, archive: new Uint8Array([1]) }],
  job_query: [{ job_id: 'fw-stats' }],
  job_withdraw: [{ job_id: '6f1c2a52-8d0e-4c4b-9d7e-2f8a1b3c4d5e' }],
  job_info: [{ job: { ...VIEW, state: 'failed', reason: 'trap: unreachable', result: TRAPPED } }],
  job_list: [{ limit: 100 }, { limit: 500, after: 'f001700000000000:fw-a', owner: 'client-7' }, { limit: 10, receiver: 'command-post', states: ['queued', 'running'], since: 1_700_000_000_000 }],
  job_remove: [{ job_id: 'flood-1' }, { owner: 'mallory' }],
  job_removed: [{ count: 0 }, { count: 3_000 }],
  job_listing: [{ items: [{ job_id: 'fw-stats', state: 'running', priority: 'high', owner: 'client-7', attempts: 1, executor: 'fire-unit-1', updated_at: 1_700_000_000_000 }], next: 'a001700000000000:fw-stats' }, { items: [] }],
};

function envelope<K extends Kind>(kind: K, body: BodyOf<K>, extra: { re?: string; ack?: boolean } = {}): Envelope<K> {
  return {
    v: PROTOCOL_VERSION,
    kind,
    id: '2.a1',
    from: 'edge-07',
    role: 'executor',
    inc: 2,
    vc: { b1: 4, 'b2.x': 2 ** 48 },
    hlc: { wall: 1_718_000_000_000, logical: 3 },
    body,
    ...extra,
  };
}

/** The wire map of a valid message, for tests that break one field of it. */
function wire(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = {
    v: PROTOCOL_VERSION,
    kind: 'notice',
    id: '2.a1',
    from: 'edge-07',
    role: 'executor',
    inc: 2,
    vc: { b1: 4 },
    hlc: [1_718_000_000_000, 3],
    body: { severity: 'warning', text: 'pump 3 pressure high' },
  };
  const out = { ...base, ...overrides };
  for (const [k, v] of Object.entries(out)) if (v === undefined) delete out[k];
  return out;
}

const ALL_CODES: readonly ProtocolErrorCode[] = PROTOCOL_ERROR_CODES;

function expectOk(result: DecodeResult): AnyEnvelope {
  if (!result.ok) throw new Error(`expected ok, got ${result.error.message}`);
  return result.msg;
}

function expectError(result: DecodeResult, code: ProtocolErrorCode, reason?: RegExp | string): ProtocolError {
  if (result.ok) throw new Error(`expected ${code}, got ok ${JSON.stringify(result.msg.kind)}`);
  expect(result.error).toBeInstanceOf(ProtocolError);
  expect(result.error.code).toBe(code);
  if (reason !== undefined) expect(result.error.reason).toMatch(reason);
  return result.error;
}

const allCases = (): Array<[string, Envelope]> =>
  KINDS.flatMap((kind) =>
    (BODY_CASES[kind] as ReadonlyArray<BodyOf<Kind>>).flatMap((body, i): Array<[string, Envelope]> => [
      [`${kind}#${i}`, envelope(kind, body)],
      [`${kind}#${i} re`, envelope(kind, body, { re: '1.zz' })],
      [`${kind}#${i} ack`, envelope(kind, body, { ack: true })],
      [`${kind}#${i} re+ack`, envelope(kind, body, { re: 'req:42', ack: true })],
    ]),
  );

describe('codec round trip', () => {
  it('has a round-trip case for exactly the kinds in KINDS', () => {
    expect(Object.keys(BODY_CASES).sort()).toEqual([...KINDS].sort());
    for (const kind of KINDS) expect(BODY_CASES[kind].length, kind).toBeGreaterThan(0);
  });

  it.each(allCases())('%s survives encode then decode unchanged', (_name, msg) => {
    const decoded = expectOk(decode(encode(msg)));
    expect(decoded).toEqual(msg);
    // Absent optional fields must stay absent, not come back as undefined keys.
    expect(Object.keys(decoded).sort()).toEqual(Object.keys(msg).sort());
  });

  it('omits ack: false from the wire, since only ack: true means anything', () => {
    const msg = envelope('death', { graceful: true }, { ack: false });
    const bytes = encode(msg);
    expect(bytes.equals(encode(envelope('death', { graceful: true })))).toBe(true);
    expect(expectOk(decode(bytes))).not.toHaveProperty('ack');
  });

  it('decodes from a Uint8Array view at a non-zero offset, as MQTT payload slices are', () => {
    const bytes = encode(envelope('ack', { of: '9.9' }));
    const padded = new Uint8Array(bytes.byteLength + 5);
    padded.set(bytes, 3);
    expect(expectOk(decode(padded.subarray(3, 3 + bytes.byteLength)))).toEqual(envelope('ack', { of: '9.9' }));
  });

  it('accepts a hand-built minimal message (plain CBOR, no cbor-x extensions needed)', () => {
    const msg = expectOk(decode(rawBytes(wire({ kind: 'status_request', body: {}, vc: {} }))));
    expect(msg.kind).toBe('status_request');
    expect(msg.hlc).toEqual({ wall: 1_718_000_000_000, logical: 3 });
    expect(msg.vc).toEqual({});
  });
});

describe('codec envelope validation', () => {
  it('the baseline wire map used below is valid', () => {
    expect(expectOk(decode(rawBytes(wire()))).kind).toBe('notice');
  });

  const headerFields = ['id', 'from', 'role', 'inc', 'vc', 'hlc'] as const;

  it.each(headerFields)('a missing %s is bad_envelope naming the field', (field) => {
    expectError(decode(rawBytes(wire({ [field]: undefined }))), 'bad_envelope', new RegExp(`^${field}\\b`));
  });

  const wrong: Array<[string, unknown]> = [
    ['id', 42],
    ['id', ''],
    ['id', 'has space'],
    ['id', 'x'.repeat(65)],
    ['from', 7],
    ['from', 'edge/07'],
    ['from', 'edge+'],
    ['from', ''],
    ['role', 'king'],
    ['role', 1],
    ['inc', -1],
    ['inc', 1.5],
    ['inc', '2'],
    ['inc', 2 ** 53],
    ['vc', []],
    ['vc', 'b1:4'],
    ['vc', { b1: 0 }],
    ['vc', { b1: -3 }],
    ['vc', { b1: 'four' }],
    ['vc', { 'bad/id': 1 }],
    ['vc', Object.fromEntries(Array.from({ length: 1_025 }, (_, i) => [`n${i}`, 1]))],
    ['hlc', { wall: 1, logical: 2 }],
    ['hlc', [1]],
    ['hlc', [1, 2, 3]],
    ['hlc', [1, -2]],
    ['hlc', ['1', 2]],
    ['hlc', [1.5, 2]],
    ['re', 5],
    ['re', ''],
    ['re', 'a b'],
    ['ack', false],
    ['ack', 1],
    ['ack', 'yes'],
  ];

  it.each(wrong)('%s = %j is bad_envelope naming the field', (field, value) => {
    expectError(decode(rawBytes(wire({ [field]: value }))), 'bad_envelope', new RegExp(`^${field}\\b`));
  });

  it('an unknown envelope field is bad_envelope naming it', () => {
    expectError(decode(rawBytes(wire({ ttl: 30 }))), 'bad_envelope', /"ttl"/);
  });

  it.each([
    ['missing', undefined],
    ['2', 2],
    ['0', 0],
    ['"1"', '1'],
    ['1.5', 1.5],
  ])('v %s is unsupported_version', (_name, v) => {
    expectError(decode(rawBytes(wire({ v }))), 'unsupported_version');
  });

  it('checks the version before anything else, so a future envelope shape is not misreported', () => {
    // A v2 message may well carry fields v1 does not know; the useful answer is "wrong version".
    expectError(decode(rawBytes(wire({ v: 2, priority: 'high', kind: 'teleport' }))), 'unsupported_version');
  });

  it.each([
    ['an unknown name', 'teleport'],
    ['missing', undefined],
    ['a number', 3],
    ['an Object.prototype name', 'toString'],
    ['"__proto__"', '__proto__'],
    ['"constructor"', 'constructor'],
  ])('kind %s is unknown_kind', (_name, kind) => {
    expectError(decode(rawBytes(wire({ kind }))), 'unknown_kind');
  });

  it.each([
    ['a number', 5],
    ['an array', []],
    ['text', 'hello'],
    ['bytes', new Uint8Array([0xa0])],
    ['null', null],
  ])('a top-level %s is bad_envelope', (_name, value) => {
    expectError(decode(rawBytes(value)), 'bad_envelope', /not a CBOR map/);
  });
});

describe('codec body validation', () => {
  const cases: Array<[string, Kind, unknown, RegExp]> = [
    ['missing body', 'notice', undefined, /^notice body: expected map/],
    ['body as array', 'death', [true], /^death body: expected map/],
    ['missing field', 'birth', { software: 's', host: 'h', heartbeat_interval_ms: 1 }, /body\.pid: missing/],
    ['extra field', 'death', { graceful: true, reason: 'bye' }, /body: unknown field "reason"/],
    ['extra field on an empty body', 'status_request', { verbose: true }, /unknown field "verbose"/],
    ['wrong type', 'heartbeat', { seq: '1', uptime_ms: 0, rss_bytes: 0, load: 0, outbox_pending: 0 }, /body\.seq: expected unsigned integer/],
    ['text too long', 'notice', { severity: 'info', text: 'x'.repeat(5_000) }, /body\.text: text length 5000 outside 1\.\.4096/],
    ['text empty', 'notice', { severity: 'info', text: '' }, /body\.text: text length 0/],
    ['bad literal', 'notice', { severity: 'panic', text: 'x' }, /body\.severity: expected "info"/],
    ['load above range', 'heartbeat', { seq: 1, uptime_ms: 0, rss_bytes: 0, load: 1_000.5, outbox_pending: 0 }, /body\.load: 1000\.5 outside/],
    ['negative load', 'heartbeat', { seq: 1, uptime_ms: 0, rss_bytes: 0, load: -0.1, outbox_pending: 0 }, /body\.load/],
    ['interval zero', 'birth', { software: 's', host: 'h', pid: 1, heartbeat_interval_ms: 0 }, /body\.heartbeat_interval_ms: 0 outside 1\./],
    ['nested field', 'status', {
      software: 's', uptime_ms: 0, outbox_pending: 0, counters: {},
      peers: [{ id: 'b1', role: 'broker', incarnation: 1, alive: true }, { id: 'b2', role: 'pope', incarnation: 1, alive: true }],
    }, /body\.peers\[1\]\.role/],
    ['negative counter in a nested record', 'status', {
      software: 's', uptime_ms: 0, outbox_pending: 0, counters: { ok: -1 }, peers: [],
    }, /body\.counters\.ok/],
    ['ack of a bad id', 'ack', { of: 'no spaces allowed' }, /body\.of: "no spaces allowed": a message id is 1-64 letters/],
    ['a data name with a control character', 'data_get', { name: 'a\u0007b', prefix: false, limit: 1 }, /body\.name: "a\\u0007b": a data name is 1-512 characters of text without control characters$/],
    ['an empty data name', 'data_get', { name: '', prefix: false, limit: 1 }, /body\.name: text length 0 outside 1\.\.512/],
    ['a job path that climbs out', 'job_result', { job_id: 'j', attempt: 1, outcome: 'exited', message: '', duration_ms: 0, archive: new Uint8Array(), files: ['../x'], missing: [], named: [] }, /body\.files\[0\]: "\.\.\/x": a job path may use letters/],
    ['ping data not bytes', 'ping', { data: [1, 2, 3] }, /body\.data: expected bytes, got array/],
    ...((): Array<[string, Kind, unknown, RegExp]> => {
      const result = { job_id: 'j', attempt: 2, outcome: 'exited', message: '', duration_ms: 1, files: [], missing: [], named: [] };
      const staged = { name: 'j/.attempts/2/result.zip', size: 5, digest: 'a'.repeat(64) };
      return [
        ['a staged archive without its digest', 'job_result', { ...result, archive: { name: staged.name, size: 5 } }, /body\.archive: expected bytes, got object; or .*body\.archive\.digest: missing/],
        ['a staged archive with a bad digest', 'job_result', { ...result, archive: { ...staged, digest: 'A'.repeat(64) } }, /body\.archive\.digest/],
        ['a staged archive with an extra field', 'job_result', { ...result, archive: { ...staged, store: 'ds' } }, /body\.archive: unknown field "store"/],
        ['a staged archive with a negative size', 'job_result', { ...result, archive: { ...staged, size: -1 } }, /body\.archive\.size/],
        ['a staged named result naming no data name', 'job_result', { ...result, archive: new Uint8Array(), named: [{ path: 'a', name: 'x/a', bytes: { ...staged, name: 'a\u0000b' } }] }, /body\.named\[0\]\.bytes\.name/],
        ['an archive as text', 'job_result', { ...result, archive: 'zip' }, /body\.archive: expected bytes, got string; or .*body\.archive: expected map/],
        ['a move of nothing', 'data_move', { moves: [], at: [1, 0], writer: 'b' }, /body\.moves: array length 0 outside 1\.\./],
        ['a move without a digest', 'data_move', { moves: [{ from: 'a', to: 'b', size: 1 }], at: [1, 0], writer: 'b' }, /body\.moves\[0\]\.digest: missing/],
        ['a moved outcome unknown', 'data_moved', { results: [{ to: 'a', outcome: 'moved' }], store: 'ds' }, /body\.results\[0\]\.outcome/],
      ];
    })(),
    ['a job listing cursor that is a bare job id', 'job_list', { limit: 10, after: 'fw-a' }, /body\.after: "fw-a": a page cursor is the `next` of the previous job listing/],
    ['a job listing state that does not exist', 'job_list', { limit: 10, states: ['lost'] }, /body\.states\[0\]: expected "queued"/],
    ['an empty job listing state list', 'job_list', { limit: 10, states: [] }, /body\.states/],
    ['a job listing since that is not a time', 'job_list', { limit: 10, since: -5 }, /body\.since/],
  ];

  it.each(cases)('%s is bad_body naming the field', (_name, kind, body, reason) => {
    expectError(decode(rawBytes(wire({ kind, body }))), 'bad_body', reason);
  });

  it('enforces the 1 MiB ping payload cap separately from the message size limit', () => {
    const limits: CodecLimits = { maxMessageBytes: 4 << 20, maxDepth: 32 };
    const ok = decode(encode(envelope('ping', { data: new Uint8Array(1 << 20) })), limits);
    expect(expectOk(ok).kind).toBe('ping');
    expectError(decode(encode(envelope('ping', { data: new Uint8Array((1 << 20) + 1) })), limits), 'bad_body', /body\.data: 1048577 bytes exceeds 1048576/);
  });
});

describe('codec limits and malformed input', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('refuses an oversized payload as too_large without handing it to the CBOR parser', () => {
    const spy = vi.spyOn(Decoder.prototype, 'decode');
    // 0xff on its own is a stray "break": invalid CBOR, so any parse attempt would say malformed_cbor.
    const junk = new Uint8Array(DEFAULT_LIMITS.maxMessageBytes + 1).fill(0xff);
    expectError(decode(junk), 'too_large', /1048577 bytes exceeds the 1048576-byte limit/);
    expect(spy).not.toHaveBeenCalled();
    // The same bytes under the limit do reach the parser and fail there: size alone decided above.
    expectError(decode(junk.subarray(0, 64)), 'malformed_cbor');
    expect(spy).toHaveBeenCalled();
  });

  it('draws the size limit inclusively: exactly maxMessageBytes is parsed', () => {
    const bytes = encode(envelope('notice', { severity: 'info', text: 'abc' }));
    expectOk(decode(bytes, { maxMessageBytes: bytes.byteLength, maxDepth: 32 }));
    expectError(decode(bytes, { maxMessageBytes: bytes.byteLength - 1, maxDepth: 32 }), 'too_large');
  });

  /** `levels` nested arrays as the ping body's data, with a scalar at the bottom. */
  const nestedPing = (levels: number): Uint8Array => {
    let inner: unknown = 1;
    for (let i = 0; i < levels; i++) inner = [inner];
    return rawBytes(wire({ kind: 'ping', body: { data: inner } }));
  };

  it.each([4, 8, 32])('refuses nesting past maxDepth %i as too_deep, and checks depth before the body', (maxDepth) => {
    // Depth counts edges from the envelope map: body is 1, body.data is 2, so the scalar under
    // k arrays sits at depth k + 2.
    const limits: CodecLimits = { maxMessageBytes: 1 << 20, maxDepth };
    expectError(decode(nestedPing(maxDepth - 2), limits), 'bad_body', /body\.data: expected bytes/);
    expectError(decode(nestedPing(maxDepth - 1), limits), 'too_deep', new RegExp(`deeper than ${maxDepth}`));
  });

  it('counts maps as well as arrays toward the depth', () => {
    let inner: unknown = 1;
    for (let i = 0; i < 40; i++) inner = { k: inner };
    expectError(decode(rawBytes(wire({ body: { severity: 'info', text: 'x', deep: inner } }))), 'too_deep');
  });

  it.each([
    ['arrays', [0x81], 200_000],
    ['maps', [0xa1, 0x00], 1_000_000],
  ])('extremely deep nested %s are too_deep, not a stack overflow escaping decode', (_name, unit, size) => {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = unit[i % unit.length]!;
    let result: DecodeResult | undefined;
    expect(() => {
      result = decode(bytes, { maxMessageBytes: size, maxDepth: 32 });
    }).not.toThrow();
    expectError(result!, 'too_deep');
    // A blown stack mid-parse must not leave the shared decoder in a bad state.
    expectOk(decode(encode(envelope('ack', { of: '1.1' }))));
  });

  it('turns every truncation of every valid message into a ProtocolError, never a throw', () => {
    // Plain checks in the loop: thousands of expect() calls would dominate the run time.
    const problems: string[] = [];
    let checked = 0;
    // The bare and re+ack variants cover every byte layout; the other two only repeat them.
    for (const [name, msg] of allCases().filter(([n]) => !n.endsWith(' re') && !n.endsWith(' ack'))) {
      const bytes = encode(msg);
      for (let n = 1; n < bytes.byteLength; n++) {
        try {
          const result = decode(bytes.subarray(0, n));
          if (result.ok) problems.push(`${name} cut at ${n}/${bytes.byteLength}: decoded as ok`);
          else if (!(result.error instanceof ProtocolError) || !ALL_CODES.includes(result.error.code)) {
            problems.push(`${name} cut at ${n}: unexpected error ${String(result.error)}`);
          }
        } catch (err) {
          problems.push(`${name} cut at ${n}: threw ${String(err)}`);
        }
        checked++;
      }
    }
    expect(problems).toEqual([]);
    expect(checked).toBeGreaterThan(1_000);
  });

  it('refuses trailing bytes after a complete message as malformed_cbor', () => {
    const bytes = encode(envelope('death', { graceful: true }));
    expectError(decode(Buffer.concat([bytes, Buffer.from([0x00])])), 'malformed_cbor');
    // Two messages glued together are not one message.
    expectError(decode(Buffer.concat([bytes, bytes])), 'malformed_cbor');
  });

  it('refuses an empty payload as malformed_cbor', () => {
    expectError(decode(new Uint8Array(0)), 'malformed_cbor', /empty payload/);
  });

  it('refuses garbage as malformed_cbor', () => {
    expectError(decode(new Uint8Array([0xff])), 'malformed_cbor');
    expectError(decode(new Uint8Array([0x1c])), 'malformed_cbor'); // reserved additional-info value
    expectError(decode(new Uint8Array([0xd8, 0x1d, 0x00])), 'malformed_cbor'); // shared ref to nothing
  });

  it('does not pollute prototypes through a "__proto__" map key anywhere in a message', () => {
    const evil = '{"polluted":"yes","toString":1}';
    const top = JSON.parse(`{"v":1,"kind":"death","id":"1.1","from":"n1","role":"broker","inc":1,"vc":{},"hlc":[1,1],"body":{"graceful":true},"__proto__":${evil}}`) as unknown;
    const inBody = JSON.parse(`{"v":1,"kind":"death","id":"1.1","from":"n1","role":"broker","inc":1,"vc":{},"hlc":[1,1],"body":{"graceful":true,"__proto__":${evil}}}`) as unknown;
    const inStatus = JSON.parse(`{"v":1,"kind":"status","id":"1.1","from":"n1","role":"broker","inc":1,"vc":{},"hlc":[1,1],"body":{"software":"s","uptime_ms":0,"outbox_pending":0,"peers":[],"counters":{"__proto__":${evil}}}}`) as unknown;
    // Sanity: JSON.parse made an own key, so the encoder really puts "__proto__" on the wire.
    expect(Buffer.from(rawBytes(top)).includes(Buffer.from('__proto__'))).toBe(true);

    const results = [decode(rawBytes(top)), decode(rawBytes(inBody)), decode(rawBytes(inStatus))];
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
    expect(typeof Object.prototype.toString).toBe('function');
    expectError(results[0]!, 'bad_envelope', /unknown envelope field/);
    expectError(results[1]!, 'bad_body', /unknown field/);
    expectError(results[2]!, 'bad_body', /counters/);
    for (const r of results) if (!r.ok) expect(Object.getPrototypeOf(r.error)).toBe(ProtocolError.prototype);
  });

  // Hostile inputs that once crashed the decoder or stalled it: each must now yield a typed error.
  describe('hostile CBOR', () => {
    // cbor-x decodes integers outside the safe range (and tag 2/3 bignums) as BigInt; the error paths quote
    // the value with JSON.stringify, which throws on BigInt. Any peer can crash decode with 12 bytes.
    it.each([
      ['v', wire({ v: 2n ** 64n - 1n })],
      ['kind', wire({ kind: 2n ** 60n })],
      ['role', wire({ role: -(2n ** 63n) })],
      ['notice severity', wire({ body: { severity: 2n ** 60n, text: 'x' } })],
    ])('decode returns an error instead of throwing on a BigInt %s', (_name, map) => {
      const bytes = rawBytes(map);
      let result: DecodeResult | undefined;
      expect(() => {
        result = decode(bytes);
      }).not.toThrow();
      expect(result?.ok).toBe(false);
    });

    it('(the BigInt cases above really put unsafe integers on the wire)', () => {
      // 0x1b / 0x3b: 64-bit unsigned / negative integer heads, which cbor-x turns into BigInt.
      expect(Buffer.from(rawBytes(wire({ v: 2n ** 64n - 1n }))).includes(Buffer.from('61761bffffffffffffffff', 'hex'))).toBe(true);
      expect(Buffer.from(rawBytes(wire({ role: -(2n ** 63n) }))).includes(Buffer.from('3b7fffffffffffffff', 'hex'))).toBe(true);
    });

    it('truncated numbers are classified malformed_cbor, not too_deep', () => {
      // A float64 header with two of its eight bytes: cbor-x's DataView read throws a RangeError.
      expectError(decode(new Uint8Array([0xfb, 0x3f, 0xd7])), 'malformed_cbor');
    });

    it('a vector clock entry for node id "__proto__" is refused, not renamed to another node', () => {
      const vc: Record<string, number> = {};
      Object.defineProperty(vc, '__proto__', { value: 5, enumerable: true, writable: true, configurable: true });
      const result = decode(encode({ ...envelope('death', { graceful: true }), vc }));
      expectError(result, 'bad_envelope', /vc key/);
    });

    it('value-sharing tags (a 135-byte message with 2^22 paths) are refused as shared references', () => {
      // def(k) = 28([def(k-1), 29(ref to def(k-1))]): linear bytes, 2^k paths for the depth walk.
      const K = 22;
      const out: number[] = [];
      const def = (k: number): void => {
        out.push(0xd8, 0x1c);
        if (k === 0) {
          out.push(0x80);
          return;
        }
        out.push(0x82);
        def(k - 1);
        out.push(0xd8, 0x1d, 0x18, K - k + 1);
      };
      def(K);
      expectError(decode(new Uint8Array(out)), 'malformed_cbor', /shared or cyclic/);
    });
  });
});

describe('Topics', () => {
  const topics = new Topics('field-1');
  const nodes = ['n1', 'edge-07.depot_b', 'A', '0', '_proto_', 'x'.repeat(64)];
  const roles: Role[] = ['broker', 'executor', 'datastore', 'client', 'operator', 'hub', 'bridge'];

  it('builds topics under ucp/<cluster>/<class>/... that name the sender and its role', () => {
    expect(topics.root).toBe('ucp/field-1');
    expect(topics.inbox('n1', 'broker', 'b1')).toBe('ucp/field-1/inbox/n1/broker/b1');
    expect(topics.presence('executor', 'n1')).toBe('ucp/field-1/presence/executor/n1');
    expect(topics.heartbeat('datastore', 'n1')).toBe('ucp/field-1/heartbeat/datastore/n1');
    expect(topics.inboxOf('n1')).toBe('ucp/field-1/inbox/n1/+/+');
    expect(topics.all('heartbeat')).toBe('ucp/field-1/heartbeat/+/+');
  });

  it.each(nodes.flatMap((node) => roles.map((role) => [node, role] as const)))('parse inverts build for %s as %s', (node, role) => {
    expect(topics.parse(topics.inbox(node, role, 'sender-1'))).toEqual({ cls: 'inbox', to: node, role, from: 'sender-1' });
    expect(topics.parse(topics.inbox('n1', role, node))).toEqual({ cls: 'inbox', to: 'n1', role, from: node });
    expect(topics.parse(topics.presence(role, node))).toEqual({ cls: 'presence', role, from: node });
    expect(topics.parse(topics.heartbeat(role, node))).toEqual({ cls: 'heartbeat', role, from: node });
    expect(parseTopic(topics.presence(role, node))).toEqual({ cluster: 'field-1', cls: 'presence', role, from: node });
  });

  it.each([
    ['another cluster', 'ucp/field-2/inbox/n1/client/c1'],
    ['a cluster sharing our prefix', 'ucp/field-10/inbox/n1/client/c1'],
    ['the bare root', 'ucp/field-1'],
    ['a root with a trailing slash', 'ucp/field-1/'],
    ['a missing sender', 'ucp/field-1/inbox/n1'],
    ['a missing sender id', 'ucp/field-1/inbox/n1/client'],
    ['an empty sender level', 'ucp/field-1/inbox/n1/client/'],
    ['an extra level', 'ucp/field-1/inbox/n1/client/c1/extra'],
    ['an extra presence level', 'ucp/field-1/presence/client/c1/extra'],
    ['a presence topic without a role', 'ucp/field-1/presence/n1'],
    ['an unknown role', 'ucp/field-1/presence/king/n1'],
    ['a role from the prototype', 'ucp/field-1/presence/constructor/n1'],
    ['an unknown role in an inbox', 'ucp/field-1/inbox/n1/king/c1'],
    ['an empty level in the middle', 'ucp/field-1//inbox/n1/client/c1'],
    ['a leading slash', '/ucp/field-1/inbox/n1/client/c1'],
    ['an unknown class', 'ucp/field-1/jobs/client/n1'],
    ['the old sync class', 'ucp/field-1/sync/broker/b1'],
    ['a class name from the prototype', 'ucp/field-1/constructor/client/n1'],
    ['a single-level wildcard sender', 'ucp/field-1/inbox/n1/client/+'],
    ['a multi-level wildcard', 'ucp/field-1/inbox/#'],
    ['a wildcard class', 'ucp/field-1/+/client/n1'],
    ['a node id with a space', 'ucp/field-1/presence/client/n 1'],
    ['a node id with a non-ASCII letter', 'ucp/field-1/presence/client/nö'],
    ['a node id of 65 characters', `ucp/field-1/presence/client/${'x'.repeat(65)}`],
    ['the subscription filter itself', 'ucp/field-1/presence/+/+'],
    ['a node id starting with "__"', 'ucp/field-1/inbox/__proto__/client/c1'],
  ])('parse rejects %s', (_name, topic) => {
    expect(topics.parse(topic)).toBeUndefined();
  });

  it.each(['', 'a/b', '+', '#', 'n+1', 'n 1', 'x'.repeat(65), '__proto__', '__x'])('builders refuse node id %j', (node) => {
    expect(() => topics.inbox(node, 'client', 'c1')).toThrow(/invalid node id/);
    expect(() => topics.inbox('n1', 'client', node)).toThrow(/invalid node id/);
    expect(() => topics.presence('client', node)).toThrow(/invalid node id/);
    expect(() => topics.heartbeat('client', node)).toThrow(/invalid node id/);
  });

  it.each(['', 'a/b', 'a+b', '#', 'a.b', 'a b', 'ü', 'x'.repeat(65)])('constructor refuses cluster name %j', (cluster) => {
    expect(() => new Topics(cluster)).toThrow(/invalid cluster name/);
  });

  it('constructor accepts a 64-character cluster name', () => {
    expect(new Topics('c'.repeat(64)).presence('client', 'n')).toBe(`ucp/${'c'.repeat(64)}/presence/client/n`);
  });
});

describe('bundles', () => {
  const pings = (n: number) => Array.from({ length: n }, (_, i) => ({ ...envelope('ping', {}), id: `2.${i.toString(36)}` }));

  it.each([1, 23, 24, 255, 256, 1_024])('%i envelopes travel as one CBOR array and come back in order, unchanged', (n) => {
    const msgs = pings(n);
    const bytes = encodeBundle(msgs.map((m) => encode(m)));
    expect(isBundle(bytes)).toBe(true);
    // Plain CBOR: any CBOR library reads it as an array of the envelopes' maps.
    expect(new Decoder({ mapsAsObjects: true }).decode(bytes)).toHaveLength(n);
    expect(decodeBundle(bytes).map(expectOk)).toEqual(msgs);
  });

  it('a single envelope is not a bundle, and decode refuses a bundle as one message', () => {
    const single = encode(envelope('ping', {}));
    expect(isBundle(single)).toBe(false);
    expectError(decode(encodeBundle([single, single])), 'bad_envelope', /not a CBOR map/);
  });

  it('a bad envelope inside a bundle fails alone; the others are decoded', () => {
    const good = encode(envelope('ping', {}));
    const results = decodeBundle(encodeBundle([good, rawBytes(wire({ kind: 'nonsense' })), rawBytes(wire({ v: 99 })), good]));
    expect(results.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['ok', 'unknown_kind', 'unsupported_version', 'ok']);
  });

  it('refuses an empty bundle, one of more than 1,024 envelopes, a bundle over the size limit and a truncated one', () => {
    expectError(decodeBundle(rawBytes([]))[0]!, 'bad_envelope', /1 to 1024 envelopes, not 0/);
    const many = rawBytes(Array.from({ length: 1_025 }, () => 1));
    expectError(decodeBundle(many)[0]!, 'bad_envelope', /not 1025/);
    expect(() => encodeBundle(Array.from({ length: 1_025 }, () => encode(envelope('ping', {}))))).toThrow(RangeError);
    const bytes = encodeBundle(pings(3).map((m) => encode(m)));
    expectError(decodeBundle(bytes, { maxMessageBytes: bytes.byteLength - 1, maxDepth: 32 })[0]!, 'too_large');
    expectError(decodeBundle(bytes.subarray(0, bytes.byteLength - 2))[0]!, 'malformed_cbor', /truncated/);
  });

  it('an envelope in a bundle gets the same depth limit as one sent alone', () => {
    const limits: CodecLimits = { maxMessageBytes: 1 << 20, maxDepth: 8 };
    const nested = (levels: number) => {
      let inner: unknown = 'x';
      for (let i = 0; i < levels; i++) inner = [inner];
      return rawBytes(wire({ body: { severity: 'info', text: 'x', deep: inner } }));
    };
    // Accepted or refused alone, the same envelope gets the same answer inside a bundle.
    for (const levels of [5, 6, 7]) {
      const alone = decode(nested(levels), limits);
      const bundled = decodeBundle(encodeBundle([nested(levels)]), limits)[0]!;
      expect(bundled.ok ? 'ok' : bundled.error.code, `${levels} levels`).toBe(alone.ok ? 'ok' : alone.error.code);
    }
    expectError(decodeBundle(encodeBundle([nested(7)]), limits)[0]!, 'too_deep');
  });
});
