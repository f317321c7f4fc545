import { arrayOf, bool, bytes, literal, object, optional, record, str, tuple, uint, type Infer } from './schema.js';
import { requirementsSchema } from './capabilities.js';
import { nodeId } from './names.js';

/** Job ids name data too (`<jobId>/...`), so they follow the rules of one data-name segment. */
export const JOB_ID_PATTERN = /^(?!\.{1,2}$)[A-Za-z0-9._-]{1,128}$/;
export const JOB_ID_RULE = "a job id is 1-128 letters, digits, '.', '_' or '-' (and not \".\" or \"..\")";
/**
 * Data names are any text without control characters (REC names data freely: "wasm-module", "infile",
 * "wasm_output_file"). Hierarchy comes from '/': `fire/district-3/temps` is below `fire`. Lone UTF-16
 * surrogates are refused too, as they are not UTF-8 text.
 */
export const DATA_NAME_PATTERN = /^[^\p{Cc}\p{Cs}]+$/u;
export const DATA_NAME_MAX = 512;
export const DATA_NAME_RULE = `a data name is 1-${DATA_NAME_MAX} characters of text without control characters`;
/**
 * Paths inside a job directory: relative, segments of [A-Za-z0-9._-], no empty, `.` or `..` segment, so
 * nothing escapes the sandbox root. (Plans may write them with a leading '/', as REC does; the client
 * strips it.)
 */
export const JOB_PATH_PATTERN = /^(?!.*(?:^|\/)\.{1,2}(?:\/|$))[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/;
export const JOB_PATH_RULE = "a job path may use letters, digits, '.', '_', '-' and '/' (no empty, \".\" or \"..\" parts)";

export function isDataName(name: string): boolean {
  return name.length >= 1 && name.length <= DATA_NAME_MAX && DATA_NAME_PATTERN.test(name);
}

export const PRIORITIES = ['low', 'normal', 'high', 'critical'] as const;
/**
 * The largest result archive a broker may keep in the job's record instead of on a datastore
 * (`scheduler.metadata_archive_bytes`). A sync message carries up to 500 records, and must stay
 * well under the 1 MiB a message may have.
 */
export const MAX_METADATA_ARCHIVE_BYTES = 4_096;
export type Priority = (typeof PRIORITIES)[number];

export const dataName = () => str({ min: 1, max: DATA_NAME_MAX, pattern: DATA_NAME_PATTERN, rule: DATA_NAME_RULE });
export const jobPath = () => str({ max: 512, pattern: JOB_PATH_PATTERN, rule: JOB_PATH_RULE });
export const jobId = () => str({ pattern: JOB_ID_PATTERN, rule: JOB_ID_RULE });
/** The most other clients a job's results may be delivered to. */
export const MAX_RECEIVERS = 16;

/**
 * One job, compatible with the Marburg REC implementation's JobInfo, plus our extensions: priority
 * (emergency severity), timeout and memory cap. Capability tags live in `capabilities`.
 */
export const jobSpecSchema = object({
  job_id: jobId(),
  /** Data name of the module. */
  wasm_module: dataName(),
  capabilities: requirementsSchema,
  /** Passed verbatim: argv[0] is the first listed argument, as in REC. */
  argv: arrayOf(str({ max: 4_096 }), { max: 256 }),
  env: record(str({ min: 1, max: 256, pattern: /^[^=\0]+$/, rule: "an environment variable name is 1-256 characters without '=' or NUL" }), str({ max: 4_096 }), { max: 256 }),
  stdin_file: optional(dataName()),
  dirs: arrayOf(jobPath(), { max: 256 }),
  /** Path in the job directory -> data name staged there before the run. */
  data: record(jobPath(), dataName(), { max: 1_024 }),
  stdout_file: optional(jobPath()),
  stderr_file: optional(jobPath()),
  /** Paths zipped into the result archive. */
  results: arrayOf(jobPath(), { max: 1_024 }),
  /** Path in the job directory -> data name published after the run. */
  named_results: record(jobPath(), dataName(), { max: 1_024 }),
  priority: literal(...PRIORITIES),
  timeout_s: uint({ min: 1, max: 7 * 24 * 3_600 }),
  /** wasm32 memory cannot exceed 4 GiB. */
  max_memory_mb: uint({ min: 1, max: 4_096 }),
  /**
   * false: no result archive is kept (REC without a results_receiver produces none); the named results
   * are published all the same. Absent means true.
   */
  keep_archive: optional(bool()),
  /** Client nodes besides the submitter that the result is delivered to and that may collect it. */
  receivers: optional(arrayOf(nodeId(), { max: MAX_RECEIVERS })),
});

export type JobSpec = Infer<typeof jobSpecSchema>;

/** Every data name a job reads before it starts, once each. */
export function inputsOf(spec: JobSpec): string[] {
  const names = new Set([spec.wasm_module, ...Object.values(spec.data)]);
  if (spec.stdin_file !== undefined) names.add(spec.stdin_file);
  return [...names];
}

/** The name under which a job's result archive is kept; deleting a job's data keeps it. */
export function resultArchiveName(jobId: string): string {
  return `${jobId}/result.zip`;
}

/**
 * Where an executor stages result objects too large to travel in its job_result: under the job, per
 * attempt (`<jobId>/.attempts/<attempt>/...`). Every name whose second segment is `.attempts` is reserved
 * for this: brokers refuse it from anyone but the executor assigned that attempt (and from it only while
 * the attempt may still deliver), and refuse job specs that name it, so a staged object can never be a
 * user's data nor be written by anyone else. The accepting broker renames the accepted attempt's staged
 * objects to the published names; the others are deleted (PROTOCOL.md, "Results larger than one message").
 */
export const STAGING_SEGMENT = '.attempts';

/** The prefix under which all of a job's attempts stage (with the trailing slash). */
export function stagingRoot(jobId: string): string {
  return `${jobId}/${STAGING_SEGMENT}/`;
}

/** The prefix of every name an attempt may stage (with the trailing slash). */
export function stagingPrefix(jobId: string, attempt: number): string {
  return `${stagingRoot(jobId)}${attempt}/`;
}

/** The staging name of an attempt's archive (`named` undefined) or of its n-th named result. */
export function stagingName(jobId: string, attempt: number, named?: number): string {
  return `${stagingPrefix(jobId, attempt)}${named === undefined ? 'result.zip' : `named/${named}`}`;
}

/** Whether a data name lies in the reserved staging space (its second segment is `.attempts`). */
export function isStagingName(name: string): boolean {
  const slash = name.indexOf('/');
  return slash > 0 && name.startsWith(STAGING_SEGMENT, slash + 1) && (name.length === slash + 1 + STAGING_SEGMENT.length || name[slash + 1 + STAGING_SEGMENT.length] === '/');
}

/**
 * The job and attempt a staging name belongs to, if it is one an attempt may write: `<jobId>/.attempts/
 * <attempt>/<rest>` with the attempt in plain decimal (no sign, no leading zero) and something below it.
 */
export function stagingOwner(name: string): { jobId: string; attempt: number } | undefined {
  if (!isStagingName(name)) return undefined;
  const [jobId, , attempt, ...rest] = name.split('/');
  if (jobId === undefined || attempt === undefined || rest.length === 0 || !/^[1-9][0-9]{0,8}$/.test(attempt)) return undefined;
  return { jobId, attempt: Number(attempt) };
}

/** Where a job is. `queued` waits for an executor or for data; succeeded and failed are final. */
export const JOB_STATES = ['queued', 'assigned', 'running', 'succeeded', 'failed'] as const;
export type JobState = (typeof JOB_STATES)[number];

export function isFinal(state: JobState): boolean {
  return state === 'succeeded' || state === 'failed';
}

/**
 * How one run of a job ended, as its executor reports it. `exited` carries the exit code (0 = success;
 * results are delivered either way). `timeout`, `memory_limit` and `output_limit` name the limit that ended
 * it. `crashed`: the job's sandbox process died under it. `result_too_large`/`result_undeliverable`: it ran,
 * but its results cannot travel (too large, or a file name a result cannot carry). `missing_input` names
 * the data it could not stage. `killed_executor`: the executor died while running this attempt and does not
 * run it again. `host_error` is the executor's own failure (a disk, a fetch), which says nothing about the
 * job: it is run again elsewhere.
 */
export const RUN_OUTCOMES = [
  'exited',
  'trap',
  'timeout',
  'memory_limit',
  'output_limit',
  'crashed',
  'missing_input',
  'invalid_module',
  'result_too_large',
  'result_undeliverable',
  'killed_executor',
  'cancelled',
  'host_error',
] as const;
export type RunOutcome = (typeof RUN_OUTCOMES)[number];

/** What became of one attempt: the first result of any attempt is accepted, later ones rejected. */
export const ATTEMPT_OUTCOMES = ['running', 'accepted', 'rejected', 'cancelled', 'lost', 'failed'] as const;
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number];

const wallMs = () => uint({ max: 2 ** 48 });
const hlcTime = () => tuple(uint({ max: 2 ** 48 }), uint({ max: 2 ** 32 }));
const clock = () => record(nodeId(), uint({ min: 1, max: 2 ** 48 }), { max: 1_024 });

/** A job as brokers report it to clients: `ucp job ID --json` prints this. */
export const jobViewSchema = object({
  job_id: jobId(),
  state: literal(...JOB_STATES),
  priority: literal(...PRIORITIES),
  /** The client that submitted it. */
  owner: nodeId(),
  /** Other clients the result is delivered to (REC's results_receiver naming another node). */
  receivers: optional(arrayOf(nodeId(), { max: MAX_RECEIVERS })),
  /** The broker that manages it and arbitrates its results. */
  broker: optional(nodeId()),
  created_at: wallMs(),
  updated_at: wallMs(),
  /** Why it is still queued, or why it failed. */
  reason: optional(str({ max: 2_048 })),
  attempts: arrayOf(
    object({
      attempt: uint({ min: 1 }),
      executor: nodeId(),
      outcome: literal(...ATTEMPT_OUTCOMES),
      assigned_at: wallMs(),
      started_at: optional(wallMs()),
      ended_at: optional(wallMs()),
      reason: optional(str({ max: 2_048 })),
      /** Its executor died while running it (reported as killed_executor when the executor restarted). */
      killed_executor: optional(bool()),
    }),
    { max: 1_024 },
  ),
  /** The accepted result, once there is one. */
  result: optional(
    object({
      attempt: uint({ min: 1 }),
      executor: nodeId(),
      outcome: literal(...RUN_OUTCOMES),
      exit_code: optional(uint({ max: 2 ** 32 })),
      message: str({ max: 2_048 }),
      duration_ms: uint(),
      /** Data name of the result archive, and its size; no archive when the job keeps none. */
      archive: optional(dataName()),
      archive_bytes: uint(),
      files: arrayOf(jobPath(), { max: 4_096 }),
      missing: arrayOf(jobPath(), { max: 1_024 }),
      named_results: arrayOf(dataName(), { max: 1_024 }),
      /** The broker that accepted it, and when: its HLC time and vector clock at the decision. */
      decided_by: optional(nodeId()),
      decided_at: optional(hlcTime()),
      decided_vc: optional(clock()),
      /**
       * Where the archive and the named results were stored. A small archive kept in the record itself
       * has its `bytes` here, and `store` names the broker that accepted it.
       */
      published: optional(record(dataName(), object({ store: nodeId(), size: uint(), at: hlcTime(), bytes: optional(bytes({ max: MAX_METADATA_ARCHIVE_BYTES })) }), { max: 1_025 })),
      /** SHA-256 of the report, so a redelivery is told apart from a different report of the same attempt. */
      digest: optional(str({ max: 128 })),
    }),
  ),
  /**
   * Reports of an already reported attempt whose content differed from the accepted one: its executor is
   * broken or lying, and the first report stands. Each distinct report is listed once.
   */
  conflicts: optional(arrayOf(object({ attempt: uint({ min: 1 }), executor: nodeId(), at: wallMs(), digest: str({ max: 128 }) }), { max: 64 })),
  /**
   * Acceptances that lost to this one: brokers on both sides of a partition each accepted a result, and
   * the causally earlier acceptance (else the earlier HLC time, else the lower broker id) won.
   */
  superseded: optional(
    arrayOf(object({ attempt: uint({ min: 1 }), executor: nodeId(), decided_by: nodeId(), decided_at: hlcTime() }), { max: 64 }),
  ),
});

export type JobView = Infer<typeof jobViewSchema>;
