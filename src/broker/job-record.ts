import { createHash, type Hash } from 'node:crypto';
import type { BodyOf, JobSpec, JobView } from '../protocol/index.js';

/** A job as its broker keeps it in LMDB: what clients see, plus what is needed to run it again. */
export interface JobRecord extends JobView {
  readonly spec: JobSpec;
  /** Hash of the spec, so a retried submission is told apart from a different job reusing the id. */
  readonly digest: string;
  /** Jobs of the same plan whose named results it reads: it waits for their accepted results. */
  readonly after: readonly string[];
}

export type AttemptRecord = JobView['attempts'][number];

/** Deterministic across processes: keys are sorted, so field order in a plan does not matter. */
export function specDigest(spec: JobSpec): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex');
}

/** What a result report says, as a hash: a redelivery hashes the same, a different report does not. */
export function resultDigest(report: BodyOf<'job_result'>): string {
  const hash = createHash('sha256');
  const { archive, named, duration_ms: _duration, ...rest } = report;
  hash.update(canonicalJson(rest));
  content(hash, archive);
  for (const item of named) content(hash.update(`\0${item.path}\0${item.name}\0`), item.bytes);
  return hash.digest('hex');
}

/**
 * A staged object counts by its size and SHA-256: a restarted executor stages the same bytes again under
 * the same name, and its redelivered report must hash as before. Inline bytes hash as they always did.
 */
function content(hash: Hash, c: BodyOf<'job_result'>['archive']): void {
  if (c instanceof Uint8Array) hash.update(c);
  else hash.update(`\0staged\0${c.size}\0${c.digest}`);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The client-facing part of a record. */
export function viewOf(rec: JobRecord, reason?: string): JobView {
  const why = reason ?? rec.reason;
  return {
    job_id: rec.job_id,
    state: rec.state,
    priority: rec.priority,
    owner: rec.owner,
    ...(rec.spec.receivers !== undefined && rec.spec.receivers.length > 0 ? { receivers: rec.spec.receivers } : {}),
    ...(rec.broker !== undefined ? { broker: rec.broker } : {}),
    created_at: rec.created_at,
    updated_at: rec.updated_at,
    ...(why !== undefined ? { reason: why.slice(0, 2_048) } : {}),
    attempts: rec.attempts,
    ...(rec.result !== undefined ? { result: withoutKeptBytes(rec.result) } : {}),
    ...(rec.superseded !== undefined && rec.superseded.length > 0 ? { superseded: rec.superseded } : {}),
    ...(rec.conflicts !== undefined && rec.conflicts.length > 0 ? { conflicts: rec.conflicts } : {}),
  };
}

/**
 * A result as clients see it: an archive kept in the record is fetched by its name like any other (a
 * job's final update carries it anyway), not copied into every view of the job.
 */
function withoutKeptBytes(result: NonNullable<JobRecord['result']>): NonNullable<JobView['result']> {
  const published = result.published;
  if (published === undefined || !Object.values(published).some((p) => p.bytes !== undefined)) return result;
  return { ...result, published: Object.fromEntries(Object.entries(published).map(([name, { bytes: _, ...where }]) => [name, where])) };
}

/** The attempt a job is on now, if one was made. */
export function currentAttempt(rec: JobRecord): AttemptRecord | undefined {
  return rec.attempts[rec.attempts.length - 1];
}
