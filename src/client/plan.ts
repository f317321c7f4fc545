import { randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import {
  DATA_NAME_RULE,
  isDataName,
  isNodeId,
  JOB_ID_PATTERN,
  JOB_ID_RULE,
  JOB_PATH_PATTERN,
  JOB_PATH_RULE,
  jobSpecSchema,
  MAX_RECEIVERS,
  NODE_ID_RULE,
  PRIORITIES,
  quote,
  requirementsSchema,
  type JobSpec,
  type Priority,
} from '../protocol/index.js';

/**
 * Execution plans in the Marburg REC format, read exactly as REC writes them:
 *
 *   [named_data]                       data name = file, published first
 *   [[jobs]]
 *   [jobs.metadata]                    REC's JobInfo: wasm_module, argv, env, stdin_file, dirs, data,
 *                                      stdout_file, stderr_file, results, named_results, results_receiver,
 *                                      capabilities; job_id optional
 *   [jobs.metadata.capabilities]       requirements (cpu_cores, free_cpu_capacity, free_memory, ...)
 *   [jobs.metadata.env]                environment
 *   [jobs.metadata.data]               path in the job directory = data name
 *   [jobs.metadata.named_results]      path in the job directory = data name to publish
 *   [jobs.data]                        data sent with the job: data name = file
 *
 * As in REC: paths in the job may start with '/' (the job directory is the job's root either way), a job
 * without `job_id` gets a fresh UUID4 (so running a plan again runs it again), files are relative to the
 * plan file or absolute, and a job keeps a result archive only when it names a `results_receiver`.
 * ucp's extensions (a given `job_id` kept for idempotent resubmission, `priority`, `timeout_s`,
 * `max_memory_mb`, capability `tags`, battery and power needs) are not REC: a plan using them runs only here.
 *
 * Every problem is reported before anything is submitted, one line each, naming the job and field.
 */

export interface PlanDefaults {
  readonly priority: Priority;
  readonly timeoutS: number;
  readonly maxMemoryMb: number;
}

export interface DataFile {
  readonly name: string;
  /** Absolute path of the file whose bytes become the data. */
  readonly file: string;
}

/**
 * Who gets a job's result archive: nobody (REC keeps none without a results_receiver), the submitter
 * (REC's `dtn://...` endpoints), or another client node as well as the submitter (`ucp://<node>`).
 */
export type ResultsReceiver = { readonly kind: 'none' } | { readonly kind: 'submitter' } | { readonly kind: 'node'; readonly node: string };

export interface PlannedJob {
  readonly index: number;
  readonly spec: JobSpec;
  /** Whether the plan gave the job id (ucp's extension) or it was generated. */
  readonly idGiven: boolean;
  /** Data sent with this job. */
  readonly inline: readonly DataFile[];
  readonly receiver: ResultsReceiver;
  /** Ids of the plan's jobs whose named results this job reads. */
  readonly dependsOn: readonly string[];
}

export interface ExecutionPlan {
  readonly file: string;
  readonly namedData: readonly DataFile[];
  /** In plan order. Submit them in `submissionOrder`. */
  readonly jobs: readonly PlannedJob[];
  /** Data this plan reads but does not provide: it must already exist in the network. */
  readonly externalRefs: ReadonlyArray<{ job: string; field: string; name: string }>;
}

export class PlanError extends Error {
  readonly code = 'plan_invalid';
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    // One problem is one line, like every other error; several are listed one per line.
    super(problems.length === 1 ? `${file}: ${problems[0]}` : `${file}: ${problems.length} problems:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'PlanError';
  }
}

const TOP_LEVEL = new Set(['named_data', 'jobs']);
const JOB_LEVEL = new Set(['metadata', 'data']);
/** More jobs than this in one plan is a mistake, not an emergency response. */
const MAX_JOBS = 10_000;
const MAX_ARGS = 256;
const MAX_ARG_CHARS = 4_096;
const MAX_ENV = 256;
const MAX_PATHS = 1_024;
const MAX_DIRS = 256;
/** REC's JobInfo fields that the client fills in itself: a value in the plan is ignored, as REC does. */
const SET_BY_CLIENT = new Set(['submitter']);

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function kind(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a date';
  if (isTable(v)) return 'a table';
  if (typeof v === 'number' || typeof v === 'bigint') return 'a number';
  if (typeof v === 'boolean') return 'true/false';
  return `${typeof v === 'string' ? 'text' : typeof v}`;
}

export function loadPlan(file: string, defaults: PlanDefaults): ExecutionPlan {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PlanError(path, [code === 'ENOENT' ? 'no such plan file' : `cannot read the plan: ${code ?? (err as Error).message}`]);
  }
  return parsePlan(text, path, defaults);
}

/** The plan's problems, gathered: each check adds its lines and returns what it could read. */
class Reader {
  readonly problems: string[] = [];

  constructor(private readonly base: string) {}

  add(problem: string): void {
    this.problems.push(problem);
  }

  text(where: string, value: unknown, max = MAX_ARG_CHARS): string | undefined {
    if (typeof value !== 'string') return void this.add(`${where}: expected text, got ${kind(value)}`);
    if (value.length > max) return void this.add(`${where}: ${value.length} characters; at most ${max}`);
    return value;
  }

  dataName(where: string, value: unknown): string | undefined {
    const name = this.text(where, value, Infinity);
    if (name === undefined) return undefined;
    if (!isDataName(name)) return void this.add(`${where}: ${quote(name)}: ${DATA_NAME_RULE}`);
    return name;
  }

  /** A path in the job directory; REC writes them from the job's root ('/output'), which is the same place. */
  jobPath(where: string, value: unknown): string | undefined {
    const raw = this.text(where, value, 512);
    if (raw === undefined) return undefined;
    const path = raw.replace(/^\/+/, '');
    if (path.split('/').includes('..')) return void this.add(`${where}: ${quote(raw)}: a job path must stay inside the job directory (no ".." parts)`);
    if (path === '') return void this.add(`${where}: ${quote(raw)}: a job path must name a file or folder inside the job directory`);
    if (!JOB_PATH_PATTERN.test(path)) return void this.add(`${where}: ${quote(raw)}: ${JOB_PATH_RULE}`);
    return path;
  }

  table(where: string, value: unknown, what: string): Record<string, unknown> | undefined {
    if (!isTable(value)) return void this.add(`${where}: expected a table of ${what}, got ${kind(value)}`);
    return value;
  }

  list(where: string, value: unknown, max: number): unknown[] | undefined {
    if (!Array.isArray(value)) return void this.add(`${where}: expected an array, got ${kind(value)}`);
    if (value.length > max) return void this.add(`${where}: ${value.length} entries; at most ${max}`);
    return value;
  }

  /**
   * A file named in the plan: relative to the plan file's folder, or absolute. It may be anywhere: the plan
   * is the user's own file on the user's own machine (REC's own plans name `../wasi-smoke.wasm`).
   */
  file(where: string, name: string, value: unknown): DataFile | undefined {
    const path = this.text(where, value, 4_096);
    if (path === undefined) return undefined;
    const abs = resolve(this.base, path);
    let stat;
    try {
      stat = statSync(abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return void this.add(`${where}: ${code === 'ENOENT' ? 'file not found' : `cannot read (${code})`}: ${path}${path !== abs ? ` (${abs})` : ''}`);
    }
    if (!stat.isFile()) return void this.add(`${where}: ${path} is not a file`);
    return { name, file: abs };
  }

  /** `[named_data]` or `[jobs.data]`: data name = file. */
  dataFiles(where: string, value: unknown): DataFile[] {
    const table = this.table(where, value, 'data name = file');
    if (table === undefined) return [];
    const files: DataFile[] = [];
    for (const [name, path] of Object.entries(table)) {
      const at = `${where}.${quote(name)}`;
      const ok = this.dataName(`${where} key`, name);
      const f = this.file(at, name, path);
      if (ok !== undefined && f !== undefined) files.push(f);
    }
    return files;
  }
}

export function parsePlan(text: string, file: string, defaults: PlanDefaults): ExecutionPlan {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (err) {
    const where = err instanceof TomlError ? `line ${err.line}, column ${err.column}: ` : '';
    throw new PlanError(file, [`${where}not valid TOML: ${((err as Error).message.split('\n')[0] ?? '').trim()}`]);
  }
  const r = new Reader(dirname(file));
  for (const key of Object.keys(doc)) if (!TOP_LEVEL.has(key)) r.add(`unknown top-level key ${quote(key)} (a plan has [named_data] and [[jobs]])`);

  const namedData = doc.named_data !== undefined ? r.dataFiles('named_data', doc.named_data) : [];

  const rawJobs = doc.jobs;
  if (!Array.isArray(rawJobs) || rawJobs.length === 0) {
    r.add('the plan has no [[jobs]]');
    throw new PlanError(file, r.problems);
  }
  if (rawJobs.length > MAX_JOBS) {
    r.add(`the plan has ${rawJobs.length} jobs; at most ${MAX_JOBS} fit in one plan`);
    throw new PlanError(file, r.problems);
  }

  const jobs: Array<Omit<PlannedJob, 'dependsOn'>> = [];
  rawJobs.forEach((raw: unknown, index) => {
    const job = readJob(r, raw, index, defaults);
    if (job !== undefined) jobs.push(job);
  });

  const plan = link(file, namedData, jobs, r);
  if (r.problems.length > 0) throw new PlanError(file, r.problems);
  return plan;
}

function readJob(r: Reader, raw: unknown, index: number, defaults: PlanDefaults): Omit<PlannedJob, 'dependsOn'> | undefined {
  const at = `jobs[${index}]`;
  if (!isTable(raw)) return void r.add(`${at}: expected a table`);
  for (const key of Object.keys(raw)) if (!JOB_LEVEL.has(key)) r.add(`${at}: unknown key ${quote(key)} (a job has [jobs.metadata] and [jobs.data])`);
  const meta = raw.metadata;
  if (!isTable(meta)) return void r.add(meta === undefined ? `${at}.metadata: missing [jobs.metadata]` : `${at}.metadata: expected one [jobs.metadata] table`);
  const before = r.problems.length;
  const m = `${at}.metadata`;
  const spec: Partial<Record<keyof JobSpec, unknown>> = {
    capabilities: {},
    argv: [],
    env: {},
    dirs: [],
    data: {},
    results: [],
    named_results: {},
    priority: defaults.priority,
    timeout_s: defaults.timeoutS,
    max_memory_mb: defaults.maxMemoryMb,
  };
  let idGiven = false;
  let receiver: ResultsReceiver = { kind: 'none' };
  // Own keys only: "constructor" or "toString" in a plan must not find Object.prototype's.
  for (const [key, value] of Object.entries(meta)) {
    const f = `${m}.${key}`;
    switch (key) {
      case 'job_id': {
        const id = r.text(f, value, 128);
        if (id === undefined) break;
        if (!JOB_ID_PATTERN.test(id)) r.add(`${f}: ${quote(id)}: ${JOB_ID_RULE}`);
        else {
          spec.job_id = id;
          idGiven = true;
        }
        break;
      }
      case 'wasm_module':
      case 'stdin_file': {
        const name = r.dataName(f, value);
        if (name !== undefined) spec[key] = name;
        break;
      }
      case 'stdout_file':
      case 'stderr_file': {
        const path = r.jobPath(f, value);
        if (path !== undefined) spec[key] = path;
        break;
      }
      case 'argv': {
        const list = r.list(f, value, MAX_ARGS);
        if (list === undefined) break;
        const args = list.map((a, i) => r.text(`${f}[${i}]`, a));
        if (args.every((a) => a !== undefined)) spec.argv = args;
        break;
      }
      case 'env': {
        const table = r.table(f, value, 'NAME = "value"');
        if (table === undefined) break;
        const entries = Object.entries(table);
        if (entries.length > MAX_ENV) {
          r.add(`${f}: ${entries.length} variables; at most ${MAX_ENV}`);
          break;
        }
        const env: Record<string, string> = {};
        for (const [name, v] of entries) {
          if (name === '' || name.includes('=') || name.includes('\0') || name.length > 256) r.add(`${f}: ${quote(name)}: an environment variable name is 1-256 characters without '=' or NUL`);
          const text = r.text(`${f}.${name}`, v);
          if (text !== undefined) env[name] = text;
        }
        spec.env = env;
        break;
      }
      case 'dirs':
      case 'results': {
        const list = r.list(f, value, key === 'dirs' ? MAX_DIRS : MAX_PATHS);
        if (list === undefined) break;
        spec[key] = list.map((p, i) => r.jobPath(`${f}[${i}]`, p));
        break;
      }
      case 'data':
      case 'named_results': {
        const table = r.table(f, value, key === 'data' ? '"path in the job" = data name' : '"path in the job" = data name to publish');
        if (table === undefined) break;
        const out: Record<string, string> = {};
        const entries = Object.entries(table);
        if (entries.length > MAX_PATHS) {
          r.add(`${f}: ${entries.length} entries; at most ${MAX_PATHS}`);
          break;
        }
        for (const [path, name] of entries) {
          const p = r.jobPath(`${f} key`, path);
          const n = r.dataName(`${f}.${quote(path)}`, name);
          if (p === undefined || n === undefined) continue;
          if (Object.hasOwn(out, p)) r.add(`${f}: ${quote(path)} names the same path as another entry`);
          out[p] = n;
        }
        spec[key] = out;
        break;
      }
      case 'capabilities': {
        const table = r.table(f, value, 'requirements');
        if (table === undefined) break;
        const shape = requirementsSchema.shape as Record<string, { check: (v: unknown, p: string) => string | undefined }>;
        for (const [field, v] of Object.entries(table)) {
          const schema = Object.hasOwn(shape, field) ? shape[field] : undefined;
          if (schema === undefined) r.add(`${f}: unknown requirement ${quote(field)} (known: ${Object.keys(shape).join(', ')})`);
          else {
            const err = schema.check(v, `${f}.${field}`);
            if (err !== undefined) r.add(err);
          }
        }
        spec.capabilities = table;
        break;
      }
      case 'results_receiver': {
        const text = r.text(f, value, 256);
        if (text === undefined) break;
        const parsed = parseReceiver(text);
        if (typeof parsed === 'string') r.add(`${f}: ${quote(text)}: ${parsed}`);
        else receiver = parsed;
        break;
      }
      case 'priority':
        if (typeof value !== 'string' || !(PRIORITIES as readonly string[]).includes(value)) r.add(`${f}: expected one of ${PRIORITIES.join(', ')}, got ${typeof value === 'string' ? quote(value) : kind(value)}`);
        else spec.priority = value;
        break;
      case 'timeout_s':
      case 'max_memory_mb': {
        const schema = jobSpecSchema.shape[key];
        const err = schema.check(value, f);
        if (err !== undefined) r.add(err);
        else spec[key] = value;
        break;
      }
      default:
        if (!SET_BY_CLIENT.has(key)) r.add(`${m}: unknown field ${quote(key)}`);
    }
  }
  if (meta.wasm_module === undefined) r.add(`${m}.wasm_module: missing (the data name of the module to run)`);
  const inline = raw.data !== undefined ? r.dataFiles(`${at}.data`, raw.data) : [];
  if (r.problems.length > before) return undefined;
  if (receiver.kind === 'none') spec.keep_archive = false;
  if (receiver.kind === 'node') spec.receivers = [receiver.node];
  // REC gives every job a fresh UUID4; a given id is ucp's extension, kept so a resubmission is recognised.
  spec.job_id ??= randomUUID();
  const full = spec as JobSpec;
  // Everything above was checked field by field; this is the wire's own check, which must agree.
  const err = jobSpecSchema.check(full, m);
  if (err !== undefined) return void r.add(err);
  return { index, spec: full, idGiven, inline, receiver };
}

/**
 * REC's results_receiver is an endpoint id. `dtn://...` (the submitting client's endpoint in REC's plans)
 * means the submitter; `dtn:none` means nobody, as an absent one does; `ucp://<node>` or a bare node id
 * names another client node, which gets the result as well as the submitter.
 */
export function parseReceiver(text: string): ResultsReceiver | string {
  const value = text.trim();
  if (value === '' || value === 'dtn:none') return { kind: 'none' };
  if (value.startsWith('dtn:')) return { kind: 'submitter' };
  const node = value.startsWith('ucp://') ? value.slice('ucp://'.length).replace(/\/+$/, '') : value;
  if (isNodeId(node)) return { kind: 'node', node };
  return value.startsWith('ucp://')
    ? `after ucp:// comes a node id; ${NODE_ID_RULE}`
    : 'expected dtn://... (the submitter collects the result), ucp://<node> or a node id (that client collects it as well)';
}

/** Resolves which job's named results each job reads, finds duplicates and cycles, and lists external data. */
function link(file: string, namedData: DataFile[], jobs: Array<Omit<PlannedJob, 'dependsOn'>>, r: Reader): ExecutionPlan {
  const ids = new Map<string, number>();
  for (const j of jobs) {
    const other = ids.get(j.spec.job_id);
    if (other !== undefined) r.add(`jobs[${j.index}].metadata.job_id: ${quote(j.spec.job_id)} is already used by jobs[${other}]`);
    else ids.set(j.spec.job_id, j.index);
  }
  // One name given two different files would publish whichever came last.
  const files = new Map<string, { file: string; where: string }>();
  const provide = (d: DataFile, where: string) => {
    const seen = files.get(d.name);
    if (seen !== undefined && seen.file !== d.file) r.add(`${where}: data ${quote(d.name)} is also given by ${seen.where} with another file (${seen.file})`);
    else if (seen === undefined) files.set(d.name, { file: d.file, where });
  };
  for (const d of namedData) provide(d, 'named_data');
  for (const j of jobs) for (const d of j.inline) provide(d, `jobs[${j.index}].data`);

  const producer = new Map<string, string>();
  for (const j of jobs) {
    for (const name of Object.values(j.spec.named_results)) {
      const other = producer.get(name);
      if (other !== undefined) r.add(`jobs[${j.index}].metadata.named_results: ${quote(name)} is also published by job ${other}`);
      else producer.set(name, j.spec.job_id);
    }
  }
  const externalRefs: Array<{ job: string; field: string; name: string }> = [];
  const planned: PlannedJob[] = jobs.map((j) => {
    const reads: Array<[string, string]> = [['wasm_module', j.spec.wasm_module], ...Object.entries(j.spec.data).map(([path, name]): [string, string] => [`data.${quote(path)}`, name])];
    if (j.spec.stdin_file !== undefined) reads.push(['stdin_file', j.spec.stdin_file]);
    const dependsOn = new Set<string>();
    for (const [field, name] of reads) {
      const from = producer.get(name);
      if (from === j.spec.job_id) r.add(`jobs[${j.index}].metadata.${field}: reads ${quote(name)}, which the job itself publishes`);
      else if (from !== undefined) dependsOn.add(from);
      else if (!files.has(name)) externalRefs.push({ job: j.spec.job_id, field: `jobs[${j.index}].metadata.${field}`, name });
    }
    return { ...j, dependsOn: [...dependsOn] };
  });
  const cycle = findCycle(planned);
  if (cycle !== undefined) r.add(`jobs wait for each other's results in a cycle: ${cycle.join(' -> ')}`);
  return { file, namedData, jobs: planned, externalRefs };
}

/**
 * The order to submit jobs in: every job after the jobs it reads from, otherwise as in the plan, so a
 * broker never hears of a job before the jobs it waits for.
 */
export function submissionOrder(plan: ExecutionPlan): PlannedJob[] {
  const byId = new Map(plan.jobs.map((j) => [j.spec.job_id, j]));
  const done = new Set<string>();
  const order: PlannedJob[] = [];
  const visit = (root: PlannedJob) => {
    // Iterative depth-first: plans can be long chains.
    const stack: Array<{ job: PlannedJob; next: number }> = [{ job: root, next: 0 }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (done.has(top.job.spec.job_id)) {
        stack.pop();
        continue;
      }
      const dep = top.job.dependsOn[top.next++];
      if (dep === undefined) {
        done.add(top.job.spec.job_id);
        order.push(top.job);
        stack.pop();
        continue;
      }
      const d = byId.get(dep);
      if (d !== undefined && !done.has(dep)) stack.push({ job: d, next: 0 });
    }
  };
  for (const j of plan.jobs) visit(j);
  return order;
}

/** A dependency cycle among the jobs, as a path of job ids, if there is one. Iterative: plans can be long. */
function findCycle(jobs: readonly PlannedJob[]): string[] | undefined {
  const deps = new Map(jobs.map((j) => [j.spec.job_id, j.dependsOn]));
  const state = new Map<string, 'visiting' | 'done'>();
  for (const root of deps.keys()) {
    if (state.has(root)) continue;
    const path: string[] = [];
    const stack: Array<{ id: string; next: number }> = [{ id: root, next: 0 }];
    state.set(root, 'visiting');
    path.push(root);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const children = deps.get(top.id) ?? [];
      if (top.next < children.length) {
        const child = children[top.next++]!;
        if (state.get(child) === 'visiting') return [...path.slice(path.indexOf(child)), child];
        if (!state.has(child)) {
          state.set(child, 'visiting');
          path.push(child);
          stack.push({ id: child, next: 0 });
        }
      } else {
        state.set(top.id, 'done');
        path.pop();
        stack.pop();
      }
    }
  }
  return undefined;
}
