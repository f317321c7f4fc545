import { isFinal, type JobView, type RunOutcome } from '../protocol/index.js';
import { currentAttempt, type AttemptRecord, type JobRecord } from './job-record.js';

/**
 * First come, first served, as pure functions over a job's record, so the rules can be checked against
 * random interleavings without a hub. The job manager decides with `arbitrate`, performs the side effects
 * (publishing, committing, messages), then applies the matching `record*` change.
 */

export type Mutable<T> = { -readonly [K in keyof T]: T[K] };
export type Job = Mutable<JobRecord> & { attempts: Array<Mutable<AttemptRecord>> };

export interface Submission {
  readonly from: string;
  readonly attempt: number;
  readonly outcome: RunOutcome;
  /** Hash of the report's content: the same attempt reported again must say the same thing. */
  readonly digest?: string;
}

export type Decision =
  /** The first result: publish it, then record it with recordAcceptance. */
  | { readonly kind: 'accept' }
  /** The accepted submission again (a redelivery): the same answer, nothing changes. */
  | { readonly kind: 'redelivered' }
  /** The accepted attempt reported again with different content: the first report stands, this one is flagged. */
  | { readonly kind: 'conflict'; readonly reason: string; readonly acceptedAttempt: number }
  /** A later result, or one from a node never assigned the attempt. */
  | { readonly kind: 'reject'; readonly reason: string; readonly acceptedAttempt?: number; readonly unauthorized: boolean; readonly killed?: boolean }
  /**
   * The current attempt's executor failed on its own account, or died running it (`killed`): no result;
   * run the job again, unless it has now killed executors twice in a row.
   */
  | { readonly kind: 'retry'; readonly reason: string; readonly killed: boolean };

export function arbitrate(job: JobRecord | undefined, jobId: string, sub: Submission): Decision {
  const attempt = job?.attempts[sub.attempt - 1];
  if (job === undefined || attempt === undefined || attempt.executor !== sub.from) {
    return { kind: 'reject', reason: `unauthorized: ${sub.from} was never assigned attempt ${sub.attempt} of job ${jobId}`, unauthorized: true, ...(job?.result !== undefined ? { acceptedAttempt: job.result.attempt } : {}) };
  }
  const accepted = job.result;
  if (accepted !== undefined) {
    if (accepted.attempt === sub.attempt) {
      if (accepted.digest === undefined || sub.digest === undefined || accepted.digest === sub.digest) return { kind: 'redelivered' };
      return { kind: 'conflict', reason: `conflict: attempt ${sub.attempt} was already reported with a different result, which stands`, acceptedAttempt: accepted.attempt };
    }
    return { kind: 'reject', reason: `attempt ${accepted.attempt} on ${accepted.executor} delivered first`, acceptedAttempt: accepted.attempt, unauthorized: false };
  }
  if (isFinal(job.state)) return { kind: 'reject', reason: `the job already ended: ${job.reason ?? job.state}`, unauthorized: false };
  if (sub.outcome === 'host_error' || sub.outcome === 'cancelled' || sub.outcome === 'killed_executor') {
    const killed = sub.outcome === 'killed_executor';
    if (attempt === currentAttempt(job) && attempt.outcome === 'running') return { kind: 'retry', reason: `${sub.outcome} on ${sub.from}`, killed };
    return { kind: 'reject', reason: `attempt ${sub.attempt} ended without a result (${sub.outcome})`, unauthorized: false, killed };
  }
  return { kind: 'accept' };
}

/** A new attempt on `executor`; returns its number. */
export function recordAssignment(job: Job, executor: string, now: number): number {
  const attempt = job.attempts.length + 1;
  job.attempts.push({ attempt, executor, outcome: 'running', assigned_at: now });
  job.state = 'assigned';
  job.updated_at = now;
  delete job.reason;
  return attempt;
}

/**
 * Records the accepted result. The other attempts still running are cancelled; they are returned so their
 * executors can be told to stop.
 */
export function recordAcceptance(job: Job, attempt: number, result: NonNullable<JobView['result']>, arrivedAt: number, now: number): AttemptRecord[] {
  job.result = result;
  const succeeded = result.outcome === 'exited' && result.exit_code === 0;
  job.state = succeeded ? 'succeeded' : 'failed';
  if (succeeded) delete job.reason;
  else job.reason = `${result.outcome}: ${result.message}`.slice(0, 2_048);
  job.updated_at = now;
  const cancelled: AttemptRecord[] = [];
  for (const a of job.attempts) {
    if (a.attempt === attempt) {
      // A job that ended within moments did not report its start (see the executor): its run's duration
      // says when it began, never before its assignment.
      a.started_at ??= Math.max(a.assigned_at, arrivedAt - result.duration_ms);
      close(a, 'accepted', undefined, arrivedAt);
    }
    else if (a.outcome === 'running') {
      close(a, 'cancelled', `attempt ${attempt} delivered first`, now);
      cancelled.push(a);
    }
  }
  return cancelled;
}

/**
 * A later result for an attempt still running, or for one given up as lost (its executor came back):
 * that attempt lost the race, and the record says so. Returns true if it changed.
 */
export function recordRejection(job: Job, attempt: number, reason: string, now: number): boolean {
  const a = job.attempts[attempt - 1];
  if (a === undefined || (a.outcome !== 'running' && a.outcome !== 'lost')) return false;
  close(a, 'rejected', reason, now);
  return true;
}

/**
 * Lists a conflicting report of an accepted attempt on the job, once per distinct report. Returns true if
 * it was new.
 */
export function recordConflict(job: Job, attempt: number, executor: string, digest: string, now: number): boolean {
  const conflicts = (job.conflicts ?? []) as NonNullable<JobView['conflicts']>;
  if (conflicts.some((c) => c.attempt === attempt && c.digest === digest)) return false;
  // Bounded like every list on the wire: the first ones say enough about a broken or lying executor.
  if (conflicts.length >= 64) return false;
  job.conflicts = [...conflicts, { attempt, executor, at: now, digest }];
  job.updated_at = now;
  return true;
}

/**
 * The job's executor is gone: every attempt running there is lost. Returns true if the job must be
 * placed again (its current attempt was lost and it has not ended).
 */
export function recordLoss(job: Job, executor: string, reason: string, now: number): boolean {
  let currentLost = false;
  const current = currentAttempt(job);
  for (const a of job.attempts) {
    if (a.executor !== executor || a.outcome !== 'running') continue;
    close(a, 'lost', reason, now);
    if (a === current) currentLost = true;
  }
  if (currentLost) job.updated_at = now;
  return currentLost && !isFinal(job.state);
}

/** The current attempt failed on the executor's own account. */
export function recordFailure(job: Job, attempt: number, reason: string, now: number): void {
  const a = job.attempts[attempt - 1];
  if (a !== undefined && a.outcome === 'running') close(a, 'failed', reason, now);
  job.updated_at = now;
}

/** The executor of `attempt` says it died while running it. Returns true if the record changed. */
export function recordKill(job: Job, attempt: number): boolean {
  const a = job.attempts[attempt - 1];
  if (a === undefined || a.killed_executor === true) return false;
  a.killed_executor = true;
  return true;
}

/**
 * The longest run of consecutive attempts that killed their executor. Reports arrive late (a unit says
 * so only once it restarts), so the run may end before the current attempt.
 */
export function killStreak(job: JobRecord): number {
  let longest = 0;
  let run = 0;
  for (const a of job.attempts) {
    run = a.killed_executor === true ? run + 1 : 0;
    longest = Math.max(longest, run);
  }
  return longest;
}

/**
 * The job killed executors `limit` times in a row: it fails and is not placed again, so one poisoned job
 * cannot take down unit after unit. Attempts still running are cancelled; they are returned so their
 * executors can be told to stop.
 */
export function failKiller(job: Job, limit: number, now: number): AttemptRecord[] {
  const victims = job.attempts.filter((a) => a.killed_executor === true).map((a) => a.executor);
  job.state = 'failed';
  job.updated_at = now;
  job.reason = `killed_executor: its executors died while running it ${limit} times in a row (${victims.join(', ')}); it is not placed again`.slice(0, 2_048);
  const cancelled: AttemptRecord[] = [];
  for (const a of job.attempts) {
    if (a.outcome !== 'running') continue;
    close(a, 'cancelled', 'the job killed its executors', now);
    cancelled.push(a);
  }
  return cancelled;
}

/**
 * The broker's own deadline for the current attempt passed with no result: whatever its executor does,
 * the job ends here (failed) rather than staying running forever.
 */
export function recordDeadline(job: Job, attempt: number, reason: string, now: number): boolean {
  const a = job.attempts[attempt - 1];
  if (a === undefined || a.outcome !== 'running' || a !== currentAttempt(job) || isFinal(job.state)) return false;
  close(a, 'failed', reason, now);
  job.state = 'failed';
  job.reason = `timeout: ${reason}`.slice(0, 2_048);
  job.updated_at = now;
  return true;
}

/**
 * After a loss or failure: queue the job again, or fail it when it has had `maxRedeploys` redeployments
 * already. Returns the new state.
 */
export function requeue(job: Job, maxRedeploys: number, why: string, now: number): 'queued' | 'failed' {
  job.updated_at = now;
  if (job.attempts.length > maxRedeploys) {
    job.state = 'failed';
    job.reason = `gave up after ${job.attempts.length} attempts (scheduler.max_redeploy_attempts = ${maxRedeploys}); the last: ${why}`.slice(0, 2_048);
    return 'failed';
  }
  job.state = 'queued';
  job.reason = `attempt ${job.attempts.length} ended without a result: ${why}`.slice(0, 2_048);
  return 'queued';
}

function close(attempt: Mutable<AttemptRecord>, outcome: AttemptRecord['outcome'], reason: string | undefined, at: number): void {
  attempt.outcome = outcome;
  attempt.ended_at = at;
  if (reason !== undefined) attempt.reason = reason.slice(0, 2_048);
}
