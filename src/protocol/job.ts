import { arrayOf, literal, object, optional, record, str, uint, type Infer } from './schema.js';
import { requirementsSchema } from './capabilities.js';

/** Job ids name data too (`<jobId>/...`), so they follow the rules of one data-name segment. */
export const JOB_ID_PATTERN = /^(?!\.{1,2}$)[A-Za-z0-9._-]{1,128}$/;
/**
 * Hierarchical data names such as `fire/district-3/temps`: segments of [A-Za-z0-9._-], no empty, `.` or
 * `..` segment, no leading or trailing slash.
 */
export const DATA_NAME_PATTERN = /^(?!.*(?:^|\/)\.{1,2}(?:\/|$))[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/;
/** Paths inside a job directory: relative, no `.`/`..` segments, so nothing escapes the sandbox root. */
export const JOB_PATH_PATTERN = DATA_NAME_PATTERN;

export const PRIORITIES = ['low', 'normal', 'high', 'critical'] as const;
export type Priority = (typeof PRIORITIES)[number];

const dataName = () => str({ max: 512, pattern: DATA_NAME_PATTERN });
const jobPath = () => str({ max: 512, pattern: JOB_PATH_PATTERN });

/**
 * One job, compatible with the Marburg REC implementation's JobInfo, plus our extensions: priority
 * (emergency severity), timeout and memory cap. Capability tags live in `capabilities`.
 */
export const jobSpecSchema = object({
  job_id: str({ pattern: JOB_ID_PATTERN }),
  /** Data name of the module. */
  wasm_module: dataName(),
  capabilities: requirementsSchema,
  /** Passed verbatim: argv[0] is the first listed argument, as in REC. */
  argv: arrayOf(str({ max: 4_096 }), { max: 256 }),
  env: record(str({ min: 1, max: 256, pattern: /^[^=\0]+$/ }), str({ max: 4_096 }), { max: 256 }),
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
});

export type JobSpec = Infer<typeof jobSpecSchema>;

/** The name under which a job's result archive is kept; deleting a job's data keeps it. */
export function resultArchiveName(jobId: string): string {
  return `${jobId}/result.zip`;
}
