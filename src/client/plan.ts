import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { DATA_NAME_PATTERN, jobSpecSchema, type JobSpec, type Priority } from '../protocol/index.js';

/**
 * Execution plans in the Marburg REC format, which must run unchanged:
 *
 *   [named_data]                       data name = file (relative to the plan), published first
 *   [[jobs]]
 *   [jobs.metadata]                    REC's JobInfo fields, plus priority, timeout_s, max_memory_mb
 *   [jobs.metadata.capabilities]       requirements (cpu_cores, free_memory, ..., tags, battery)
 *   [jobs.metadata.env]                environment
 *   [jobs.metadata.data]               path in the job directory = data name
 *   [jobs.metadata.named_results]      path in the job directory = data name to publish
 *   [jobs.data]                        inline data sent with the job: data name = file
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

export interface PlannedJob {
  readonly index: number;
  readonly spec: JobSpec;
  /** Inline data sent with this job. */
  readonly inline: readonly DataFile[];
  /** Who gets the result: 'client' (REC's dtn://client/) or another receiver as written. */
  readonly resultsReceiver: string;
  /** Ids of the plan's jobs whose named results this job reads. */
  readonly dependsOn: readonly string[];
}

export interface ExecutionPlan {
  readonly file: string;
  readonly namedData: readonly DataFile[];
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
    super(`${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'PlanError';
  }
}

/** Fields of [jobs.metadata] that are not JobInfo fields on the wire. */
const CLIENT_ONLY_FIELDS = new Set(['results_receiver']);
const TOP_LEVEL = new Set(['named_data', 'jobs']);
/** More jobs than this in one plan is a mistake, not an emergency response. */
const MAX_JOBS = 10_000;
const JOB_LEVEL = new Set(['metadata', 'data']);
/** JobInfo fields that may be left out of a plan, and what they mean then. */
const OPTIONAL_DEFAULTS = (d: PlanDefaults): Partial<Record<keyof JobSpec, unknown>> => ({
  capabilities: {},
  argv: [],
  env: {},
  dirs: [],
  data: {},
  results: [],
  named_results: {},
  priority: d.priority,
  timeout_s: d.timeoutS,
  max_memory_mb: d.maxMemoryMb,
});

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

export function loadPlan(file: string, defaults: PlanDefaults): ExecutionPlan {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new PlanError(path, [`cannot read the plan: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
  }
  return parsePlan(text, path, defaults);
}

export function parsePlan(text: string, file: string, defaults: PlanDefaults): ExecutionPlan {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (err) {
    const where = err instanceof TomlError ? `line ${err.line}, column ${err.column}: ` : '';
    throw new PlanError(file, [`${where}not valid TOML: ${((err as Error).message.split('\n')[0] ?? '').trim()}`]);
  }
  const problems: string[] = [];
  const base = dirname(file);
  const dataFile = (where: string, name: string, value: unknown): DataFile | undefined => {
    if (!DATA_NAME_PATTERN.test(name)) problems.push(`${where}: "${name}" is not a data name (segments of A-Z a-z 0-9 . _ - separated by /)`);
    if (typeof value !== 'string') {
      problems.push(`${where}."${name}": expected a file path, got ${typeof value}`);
      return undefined;
    }
    // A plan may come from elsewhere: it must not be able to publish files outside its own folder
    // (~/.ssh, /etc) into the network.
    const abs = resolve(base, value);
    if (isAbsolute(value) || !existsSync(abs) || !statSync(abs).isFile()) {
      problems.push(isAbsolute(value) ? `${where}."${name}": ${value} must be relative to the plan's folder` : `${where}."${name}": file not found: ${value}`);
      return undefined;
    }
    const inside = relative(realpathSync(base), realpathSync(abs));
    if (inside.startsWith('..') || isAbsolute(inside)) {
      problems.push(`${where}."${name}": ${value} is outside the plan's folder`);
      return undefined;
    }
    return { name, file: abs };
  };

  for (const key of Object.keys(doc)) if (!TOP_LEVEL.has(key)) problems.push(`unknown top-level key "${key}" (expected [named_data] or [[jobs]])`);

  const namedData: DataFile[] = [];
  if (doc.named_data !== undefined) {
    if (!isTable(doc.named_data)) problems.push('named_data: expected a table of data name = file');
    else for (const [name, value] of Object.entries(doc.named_data)) {
      const f = dataFile('named_data', name, value);
      if (f !== undefined) namedData.push(f);
    }
  }

  const rawJobs = doc.jobs;
  if (!Array.isArray(rawJobs) || rawJobs.length === 0) {
    problems.push('the plan has no [[jobs]]');
    throw new PlanError(file, problems);
  }
  if (rawJobs.length > MAX_JOBS) {
    problems.push(`the plan has ${rawJobs.length} jobs; at most ${MAX_JOBS} fit in one plan`);
    throw new PlanError(file, problems);
  }

  const jobs: Array<Omit<PlannedJob, 'dependsOn'>> = [];
  rawJobs.forEach((raw: unknown, index) => {
    const at = `jobs[${index}]`;
    if (!isTable(raw)) {
      problems.push(`${at}: expected a table`);
      return;
    }
    for (const key of Object.keys(raw)) if (!JOB_LEVEL.has(key)) problems.push(`${at}: unknown key "${key}" (expected [jobs.metadata] and [jobs.data])`);
    const meta = raw.metadata;
    if (!isTable(meta)) {
      problems.push(meta === undefined ? `${at}.metadata: missing [jobs.metadata]` : `${at}.metadata: expected one [jobs.metadata] table`);
      return;
    }
    const candidate: Record<string, unknown> = { ...OPTIONAL_DEFAULTS(defaults) };
    const before = problems.length;
    for (const [key, value] of Object.entries(meta)) {
      if (CLIENT_ONLY_FIELDS.has(key)) continue;
      // Own keys only: "constructor" or "toString" in a plan must not find Object.prototype's.
      const shape = jobSpecSchema.shape as Record<string, { check: (v: unknown, p: string) => string | undefined }>;
      const schema = Object.hasOwn(shape, key) ? shape[key] : undefined;
      if (schema === undefined) {
        problems.push(`${at}.metadata: unknown field "${key}"`);
        continue;
      }
      const err = schema.check(value, `${at}.metadata.${key}`);
      if (err !== undefined) problems.push(err);
      else candidate[key] = value;
    }
    for (const [key, schema] of Object.entries(jobSpecSchema.shape)) {
      if (candidate[key] === undefined && schema.optional !== true && !(key in meta)) problems.push(`${at}.metadata.${key}: missing`);
    }
    const receiver = meta.results_receiver;
    if (receiver !== undefined && typeof receiver !== 'string') problems.push(`${at}.metadata.results_receiver: expected text`);
    const inline: DataFile[] = [];
    if (raw.data !== undefined) {
      if (!isTable(raw.data)) problems.push(`${at}.data: expected a table of data name = file`);
      else for (const [name, value] of Object.entries(raw.data)) {
        const f = dataFile(`${at}.data`, name, value);
        if (f !== undefined) inline.push(f);
      }
    }
    if (problems.length > before) return;
    jobs.push({
      index,
      spec: candidate as JobSpec,
      inline,
      resultsReceiver: typeof receiver === 'string' && !receiver.startsWith('dtn://client') ? receiver : 'client',
    });
  });

  const plan = link(file, namedData, jobs, problems);
  if (problems.length > 0) throw new PlanError(file, problems);
  return plan;
}

/** Resolves which job's named results each job reads, finds duplicates and cycles, and lists external data. */
function link(file: string, namedData: DataFile[], jobs: Array<Omit<PlannedJob, 'dependsOn'>>, problems: string[]): ExecutionPlan {
  const ids = new Map<string, number>();
  for (const j of jobs) {
    const other = ids.get(j.spec.job_id);
    if (other !== undefined) problems.push(`jobs[${j.index}].metadata.job_id: "${j.spec.job_id}" is already used by jobs[${other}]`);
    else ids.set(j.spec.job_id, j.index);
  }
  const producer = new Map<string, string>();
  const provided = new Set(namedData.map((d) => d.name));
  for (const j of jobs) for (const d of j.inline) provided.add(d.name);
  for (const j of jobs) {
    for (const name of Object.values(j.spec.named_results)) {
      const other = producer.get(name);
      if (other !== undefined) problems.push(`jobs[${j.index}].metadata.named_results: "${name}" is also published by job "${other}"`);
      else producer.set(name, j.spec.job_id);
    }
  }
  const externalRefs: Array<{ job: string; field: string; name: string }> = [];
  const planned: PlannedJob[] = jobs.map((j) => {
    const reads: Array<[string, string]> = [['wasm_module', j.spec.wasm_module], ...Object.entries(j.spec.data).map(([path, name]): [string, string] => [`data."${path}"`, name])];
    if (j.spec.stdin_file !== undefined) reads.push(['stdin_file', j.spec.stdin_file]);
    const dependsOn = new Set<string>();
    for (const [field, name] of reads) {
      const from = producer.get(name);
      if (from === j.spec.job_id) problems.push(`jobs[${j.index}].metadata.${field}: reads "${name}", which the job itself publishes`);
      else if (from !== undefined) dependsOn.add(from);
      else if (!provided.has(name)) externalRefs.push({ job: j.spec.job_id, field: `jobs[${j.index}].metadata.${field}`, name });
    }
    return { ...j, dependsOn: [...dependsOn] };
  });
  const cycle = findCycle(planned);
  if (cycle !== undefined) problems.push(`jobs wait for each other's results in a cycle: ${cycle.join(' -> ')}`);
  return { file, namedData, jobs: planned, externalRefs };
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
