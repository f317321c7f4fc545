import { isFinal } from '../protocol/index.js';
import type { Job } from './arbiter.js';
import type { AttemptRecord } from './job-record.js';

/** Why a job could not be cancelled, in words for the one who asked. */
export type WithdrawRefusal = { readonly code: 'forbidden' | 'already_ended'; readonly message: string };

/** May `requester` cancel `job`? Its submitter or an operator may, while the job has not ended. */
export function mayWithdraw(job: Pick<Job, 'job_id' | 'owner' | 'state' | 'reason'>, requester: string, operator = false): WithdrawRefusal | undefined {
  if (job.owner !== requester && !operator) return { code: 'forbidden', message: `job ${job.job_id} was submitted by ${job.owner}; only its submitter or an operator can cancel it` };
  if (isFinal(job.state)) return { code: 'already_ended', message: `job ${job.job_id} already ended (${job.state}${job.reason !== undefined ? `: ${job.reason}` : ''})` };
  return undefined;
}

/**
 * The submitter (or an operator) cancelled the job: it fails with that reason, and every attempt still running is
 * cancelled; those are returned so their executors can be told to stop.
 */
export function recordWithdrawal(job: Job, by: string, now: number): AttemptRecord[] {
  const reason = by === job.owner ? `cancelled by its submitter ${by}` : `cancelled by the operator ${by}`;
  job.state = 'failed';
  job.reason = reason;
  job.updated_at = now;
  const stopped: AttemptRecord[] = [];
  for (const a of job.attempts) {
    if (a.outcome !== 'running') continue;
    a.outcome = 'cancelled';
    a.ended_at = now;
    a.reason = reason;
    stopped.push(a);
  }
  return stopped;
}
