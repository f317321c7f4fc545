import { JOB_ID_PATTERN, PRIORITIES, type Priority } from '../src/protocol/index.js';
import { numberDecoder, rawDecoder, textDecoder } from './codecs/plain.js';
import { structuredDecoder } from './codecs/structured.js';
import type { Decoder } from './codecs/codec.js';
import { parseFieldPath } from './field-path.js';
import { NameTemplate } from './name-template.js';
import { TopicPattern } from './topic-pattern.js';

export const CODECS = ['json', 'cbor', 'number', 'text', 'raw', 'sparkplug-b'] as const;
export type CodecName = (typeof CODECS)[number];
export const VALUE_TYPES = ['number', 'integer', 'boolean', 'string', 'any'] as const;
export type ValueType = (typeof VALUE_TYPES)[number];

export interface Target {
  readonly template: NameTemplate;
  /** A target ending in `/latest` keeps only the newest reading. */
  readonly latest: boolean;
}

/** One [[mapping]]: which device topics, how to read them, where their readings go. */
export interface Mapping {
  readonly index: number;
  readonly name: string;
  readonly topic: TopicPattern;
  readonly codec: CodecName;
  /** Absent for sparkplug-b, whose decoding keeps state per edge node. */
  readonly decoder?: Decoder;
  readonly type: ValueType;
  readonly min?: number;
  readonly max?: number;
  readonly unit?: string;
  readonly device: NameTemplate;
  readonly targets: readonly Target[];
  readonly keepLast?: number;
  readonly maxAgeMs?: number;
  readonly dedup: 'none' | 'payload' | 'seq';
  readonly dedupWindowMs: number;
  readonly rateLimit: number;
}

export type TriggerWhen = 'every' | 'count' | 'interval' | 'threshold';

export interface TriggerJob {
  readonly wasmModule: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Where the triggering reading is staged in the job directory. */
  readonly input: string;
  /** The file the job writes as its result (published to the device, stored). */
  readonly output: string;
  readonly timeoutS: number;
  readonly maxMemoryMb: number;
  readonly priority: Priority;
  readonly tags: readonly string[];
}

export interface TriggerResult {
  /** Series the result is appended to. */
  readonly store?: NameTemplate;
  /** MQTT topic on the field broker the result is published to. */
  readonly commandTopic?: NameTemplate;
  /** Sparkplug B: the metric a DCMD (or NCMD, for a node) sets to the result's value. */
  readonly sparkplugMetric?: string;
  readonly ackTopic?: NameTemplate;
  readonly ackTimeoutMs: number;
}

/** One [[trigger]]: readings that start a job, and where its result goes. */
export interface Trigger {
  readonly index: number;
  readonly name: string;
  /** Stored reading names it watches, e.g. `field/{device}/level`. */
  readonly on: TopicPattern;
  readonly when: TriggerWhen;
  readonly above?: number;
  readonly below?: number;
  readonly count: number;
  readonly intervalMs: number;
  readonly job: TriggerJob;
  readonly result: TriggerResult;
}

export interface BridgeDocument {
  readonly mappings: readonly Mapping[];
  readonly triggers: readonly Trigger[];
}

export class BridgeConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super(`${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}: ${problems.join('; ')}`);
  }
}

/** Reads one table's keys, collecting every problem rather than stopping at the first. */
class Fields {
  private readonly used = new Set<string>();

  constructor(
    private readonly table: Record<string, unknown>,
    private readonly where: string,
    private readonly problems: string[],
  ) {}

  private take(key: string): unknown {
    this.used.add(key);
    return this.table[key];
  }

  fail(key: string, message: string): undefined {
    this.problems.push(`${this.where}.${key}: ${message}`);
    return undefined;
  }

  string(key: string, required: true): string;
  string(key: string, required?: false): string | undefined;
  string(key: string, required = false): string | undefined {
    const v = this.take(key);
    if (v === undefined) return required ? (this.fail(key, 'missing'), '') : undefined;
    if (typeof v !== 'string') return this.fail(key, `must be text, got ${JSON.stringify(v)}`);
    return v;
  }

  number(key: string, opts: { min?: number; max?: number; integer?: boolean } = {}): number | undefined {
    const v = this.take(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || (opts.integer === true && !Number.isSafeInteger(v))) return this.fail(key, `must be ${opts.integer === true ? 'an integer' : 'a number'}, got ${JSON.stringify(v)}`);
    if ((opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) return this.fail(key, `must be in ${opts.min ?? '-inf'}..${opts.max ?? 'inf'}, got ${v}`);
    return v;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const v = this.take(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) return this.fail(key, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`) ?? fallback;
    return v as T;
  }

  strings(key: string): string[] | undefined {
    const v = this.take(key);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) return this.fail(key, 'must be an array of text');
    return v as string[];
  }

  table_(key: string): Record<string, unknown> | undefined {
    const v = this.take(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Date) return this.fail(key, 'must be a table');
    return v as Record<string, unknown>;
  }

  /** Builds something that may throw (a pattern, a template); its message becomes the problem. */
  build<T>(key: string, make: () => T): T | undefined {
    try {
      return make();
    } catch (err) {
      return this.fail(key, (err as Error).message);
    }
  }

  finish(): void {
    for (const key of Object.keys(this.table)) {
      if (!this.used.has(key)) this.problems.push(`${this.where}: unknown key "${key}"`);
    }
  }
}

function mapping(table: Record<string, unknown>, index: number, problems: string[]): Mapping | undefined {
  const where = `mapping[${index}]`;
  const f = new Fields(table, where, problems);
  const name = f.string('name') ?? `mapping-${index}`;
  const topic = f.build('topic', () => new TopicPattern(f.string('topic', true)));
  const codec = f.oneOf('codec', CODECS, 'json');
  const path = f.string('path');
  const fieldsTable = f.table_('fields');
  const fields: Record<string, string> | undefined = fieldsTable !== undefined ? {} : undefined;
  for (const [metric, p] of Object.entries(fieldsTable ?? {})) {
    if (typeof p !== 'string') f.fail(`fields.${metric}`, 'must be a field path');
    else fields![metric] = p;
  }
  const seqPath = f.string('seq_path');
  const unitPath = f.string('unit_path');
  const timePath = f.string('time_path');
  for (const [k, p] of [['path', path], ['seq_path', seqPath], ['unit_path', unitPath], ['time_path', timePath], ...Object.entries(fields ?? {}).map(([m, p]) => [`fields.${m}`, p])] as Array<[string, string | undefined]>) {
    if (p !== undefined) f.build(k, () => parseFieldPath(p));
  }
  const structured = codec === 'json' || codec === 'cbor';
  if (!structured && (path !== undefined || fields !== undefined || unitPath !== undefined || timePath !== undefined)) f.fail('codec', `${codec} payloads have no fields: drop path, fields, unit_path and time_path`);
  if (path !== undefined && fields !== undefined) f.fail('fields', 'give either path (one value) or fields (several), not both');
  let decoder: Decoder | undefined;
  if (structured) {
    decoder = f.build('path', () => structuredDecoder(codec, { ...(path !== undefined ? { path } : {}), ...(fields !== undefined ? { fields } : {}), ...(seqPath !== undefined ? { seqPath } : {}), ...(unitPath !== undefined ? { unitPath } : {}), ...(timePath !== undefined ? { timePath } : {}) }));
  } else if (codec === 'number') decoder = numberDecoder;
  else if (codec === 'text') decoder = textDecoder;
  else if (codec === 'raw') decoder = rawDecoder;
  const type = f.oneOf('type', VALUE_TYPES, codec === 'number' ? 'number' : codec === 'text' ? 'string' : 'any');
  const min = f.number('min');
  const max = f.number('max');
  const unit = f.string('unit');
  const dedup = f.oneOf('dedup', ['none', 'payload', 'seq'] as const, 'none');
  if (dedup === 'seq' && seqPath === undefined && codec !== 'sparkplug-b') f.fail('dedup', 'dedup = "seq" needs seq_path: where the device puts its sequence number');
  const dedupWindowS = f.number('dedup_window_s', { min: 0, max: 86_400 * 365 }) ?? 3_600;
  const rateLimit = f.number('rate_limit', { min: 0 }) ?? 0;
  const keepLast = f.number('keep_last', { min: 1, integer: true });
  const maxAgeS = f.number('max_age_s', { min: 1 });
  const defaultDevice = codec === 'sparkplug-b' ? '{edge}' : topic?.names.includes('device') === true ? '{device}' : '';
  const deviceText = f.string('device') ?? defaultDevice;
  if (deviceText === '') f.fail('device', `say how to name the device: the topic pattern has no {device}, so give device = "..." with placeholders from ${topic?.pattern ?? 'the topic'}`);
  const device = deviceText !== '' ? f.build('device', () => new NameTemplate(deviceText)) : undefined;
  const targetValue = table['target'];
  const targetTexts = typeof targetValue === 'string' ? [f.string('target', true)] : (f.strings('target') ?? (f.fail('target', 'missing: where readings go, e.g. "field/{device}/{metric}"'), []));
  const targets: Target[] = [];
  const known = new Set([...(topic?.names ?? []), 'device', 'metric', ...(codec === 'sparkplug-b' ? ['group', 'node', 'edge'] : [])]);
  for (const text of targetTexts) {
    const template = f.build('target', () => new NameTemplate(text));
    if (template === undefined) continue;
    const unknown = template.names.filter((n) => !known.has(n));
    if (unknown.length > 0) f.fail('target', `"${text}" uses {${unknown.join('}, {')}}, which neither the topic nor the codec provides`);
    if (template.names.includes('metric') && !topic?.names.includes('metric') && fields === undefined && codec !== 'sparkplug-b') f.fail('target', `"${text}" uses {metric}, but neither the topic nor fields name metrics`);
    targets.push({ template, latest: text.endsWith('/latest') });
  }
  f.finish();
  if (topic === undefined || device === undefined) return undefined;
  return {
    index,
    name,
    topic,
    codec,
    ...(decoder !== undefined ? { decoder } : {}),
    type,
    ...(min !== undefined ? { min } : {}),
    ...(max !== undefined ? { max } : {}),
    ...(unit !== undefined ? { unit } : {}),
    device,
    targets,
    ...(keepLast !== undefined ? { keepLast } : {}),
    ...(maxAgeS !== undefined ? { maxAgeMs: maxAgeS * 1_000 } : {}),
    dedup,
    dedupWindowMs: dedupWindowS * 1_000,
    rateLimit,
  };
}

function trigger(table: Record<string, unknown>, index: number, problems: string[]): Trigger | undefined {
  const where = `trigger[${index}]`;
  const f = new Fields(table, where, problems);
  const name = f.string('name') ?? `trigger-${index}`;
  if (!JOB_ID_PATTERN.test(name) || name.length > 64) f.fail('name', 'must be 1-64 of A-Z a-z 0-9 . _ - (it names the jobs it starts)');
  const on = f.build('on', () => new TopicPattern(f.string('on', true)));
  const when = f.oneOf('when', ['every', 'count', 'interval', 'threshold'] as const, 'every');
  const above = f.number('above');
  const below = f.number('below');
  if (when === 'threshold' && above === undefined && below === undefined) f.fail('when', 'a threshold needs above and/or below');
  const count = f.number('count', { min: 1, integer: true }) ?? 1;
  const intervalS = f.number('interval_s', { min: 0 }) ?? 0;
  const jobTable = f.table_('job') ?? (f.fail('job', 'missing: the job to run, [trigger.job] with wasm_module'), {});
  const jf = new Fields(jobTable, `${where}.job`, problems);
  const job: TriggerJob = {
    wasmModule: jf.string('wasm_module', true),
    argv: jf.strings('argv') ?? [],
    env: Object.fromEntries(Object.entries(jf.table_('env') ?? {}).map(([k, v]) => [k, String(v)])),
    input: jf.string('input') ?? 'reading.json',
    output: jf.string('output') ?? 'result.json',
    timeoutS: jf.number('timeout_s', { min: 1, max: 604_800, integer: true }) ?? 60,
    maxMemoryMb: jf.number('max_memory_mb', { min: 1, max: 4_096, integer: true }) ?? 64,
    priority: jf.oneOf('priority', PRIORITIES, 'high'),
    tags: jf.strings('tags') ?? [],
  };
  jf.finish();
  const resultTable = f.table_('result') ?? {};
  const rf = new Fields(resultTable, `${where}.result`, problems);
  const store = rf.string('store');
  const commandTopic = rf.string('command_topic');
  const sparkplugMetric = rf.string('sparkplug_metric');
  const ackTopic = rf.string('ack_topic');
  const result: TriggerResult = {
    ...(store !== undefined ? { store: rf.build('store', () => new NameTemplate(store))! } : {}),
    ...(commandTopic !== undefined ? { commandTopic: rf.build('command_topic', () => topicTemplate(commandTopic))! } : {}),
    ...(sparkplugMetric !== undefined ? { sparkplugMetric } : {}),
    ...(ackTopic !== undefined ? { ackTopic: rf.build('ack_topic', () => topicTemplate(ackTopic))! } : {}),
    ackTimeoutMs: (rf.number('ack_timeout_s', { min: 0.01, max: 86_400 }) ?? 10) * 1_000,
  };
  if (commandTopic !== undefined && sparkplugMetric !== undefined) rf.fail('sparkplug_metric', 'give either command_topic or sparkplug_metric, not both');
  if (ackTopic !== undefined && commandTopic === undefined) rf.fail('ack_topic', 'an acknowledgement is awaited only for a command_topic');
  rf.finish();
  f.finish();
  if (on === undefined) return undefined;
  return { index, name, on, when, ...(above !== undefined ? { above } : {}), ...(below !== undefined ? { below } : {}), count, intervalMs: intervalS * 1_000, job, result };
}

function topicTemplate(text: string): NameTemplate {
  return new NameTemplate(text, 'topic');
}

/** Validates the [[mapping]] and [[trigger]] tables of a bridge's config file. */
export function parseBridgeDocument(file: string, tables: Record<string, Array<Record<string, unknown>>>): BridgeDocument {
  const problems: string[] = [];
  const mappings = (tables['mapping'] ?? []).map((t, i) => mapping(t, i, problems)).filter((m): m is Mapping => m !== undefined);
  const triggers = (tables['trigger'] ?? []).map((t, i) => trigger(t, i, problems)).filter((t): t is Trigger => t !== undefined);
  if ((tables['mapping'] ?? []).length === 0) problems.push('no [[mapping]]: say which device topics the bridge reads (see config/bridge-*.toml)');
  if (problems.length > 0) throw new BridgeConfigError(file, problems);
  return { mappings, triggers };
}
