import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { arbitrate, failKiller, killStreak, recordAcceptance, recordAssignment, recordConflict, recordDeadline, recordFailure, recordKill, recordLoss, recordRejection, requeue, type Decision, type Job, type Submission } from '../../src/broker/arbiter.js';
import { RUN_OUTCOMES, type JobSpec, type RunOutcome } from '../../src/protocol/index.js';

const SPEC: JobSpec = { job_id: 'j', wasm_module: 'm.wasm', capabilities: {}, argv: [], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 30, max_memory_mb: 16 };
const EXECUTORS = ['e1', 'e2', 'e3'];
const MAX_REDEPLOYS = 3;

function freshJob(): Job {
  return { job_id: 'j', state: 'queued', priority: 'normal', owner: 'c', created_at: 0, updated_at: 0, attempts: [], spec: SPEC, digest: 'd', after: [] };
}

type Event =
  | { type: 'assign'; executor: string }
  | { type: 'lose'; executor: string }
  | { type: 'submit'; sub: Submission }
  | { type: 'redeliver'; index: number }
  | { type: 'restart' }
  | { type: 'deadline' };

const eventArb: fc.Arbitrary<Event> = fc.oneof(
  fc.record({ type: fc.constant('assign' as const), executor: fc.constantFrom(...EXECUTORS) }),
  fc.record({ type: fc.constant('lose' as const), executor: fc.constantFrom(...EXECUTORS) }),
  fc.record({
    type: fc.constant('submit' as const),
    sub: fc.record({ from: fc.constantFrom(...EXECUTORS, 'rogue'), attempt: fc.integer({ min: 1, max: 5 }), outcome: fc.constantFrom<RunOutcome>(...RUN_OUTCOMES), digest: fc.constantFrom('report-a', 'report-b') }),
  }),
  fc.record({ type: fc.constant('redeliver' as const), index: fc.nat() }),
  fc.record({ type: fc.constant('restart' as const) }),
  fc.record({ type: fc.constant('deadline' as const) }),
);

/** Applies a decision the way the job manager does, minus the messages and the publishing. */
function apply(job: Job, sub: Submission, decision: Decision, now: number): void {
  if (decision.kind === 'accept') {
    recordAcceptance(job, sub.attempt, { attempt: sub.attempt, executor: sub.from, outcome: sub.outcome, message: '', duration_ms: 1, archive: 'j/result.zip', archive_bytes: 22, files: [], missing: [], named_results: [], ...(sub.digest !== undefined ? { digest: sub.digest } : {}) }, now, now);
  } else if (decision.kind === 'conflict') {
    recordConflict(job, sub.attempt, sub.from, sub.digest!, now);
  } else if (decision.kind === 'reject' && !decision.unauthorized) {
    recordRejection(job, sub.attempt, decision.reason, now);
    if (decision.killed === true && recordKill(job, sub.attempt) && killStreak(job) >= 2) failKiller(job, 2, now);
  } else if (decision.kind === 'retry') {
    recordFailure(job, sub.attempt, decision.reason, now);
    if (decision.killed) recordKill(job, sub.attempt);
    if (killStreak(job) >= 2) failKiller(job, 2, now);
    else requeue(job, MAX_REDEPLOYS, decision.reason, now);
  }
}

describe('first come, first served', () => {
  it('accepts at most one result per job, only from the node assigned that attempt, and answers a redelivery the same way', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 60 }), (events) => {
        let job = freshJob();
        const history: Array<{ sub: Submission; decision: Decision }> = [];
        let accepted: { sub: Submission; result: string } | undefined;
        let now = 1;
        for (const event of events) {
          now++;
          if (event.type === 'assign') {
            if (job.state === 'queued') recordAssignment(job, event.executor, now);
          } else if (event.type === 'lose') {
            if (recordLoss(job, event.executor, 'lost', now)) requeue(job, MAX_REDEPLOYS, 'lost', now);
          } else if (event.type === 'restart') {
            job = structuredClone(job);
          } else if (event.type === 'deadline') {
            const current = job.attempts[job.attempts.length - 1];
            if (current !== undefined) recordDeadline(job, current.attempt, 'past its deadline', now);
          } else {
            const earlier = event.type === 'redeliver' ? history[event.index % Math.max(1, history.length)] : undefined;
            if (event.type === 'redeliver' && earlier === undefined) continue;
            const sub = earlier?.sub ?? (event as { sub: Submission }).sub;
            const assignedTo = job.attempts[sub.attempt - 1]?.executor;
            const acceptedBefore = accepted;
            const decision = arbitrate(job, 'j', sub);
            apply(job, sub, decision, now);
            history.push({ sub, decision });

            if (decision.kind === 'accept') {
              expect(accepted, 'a second result was accepted').toBeUndefined();
              expect(sub.from).toBe(assignedTo);
              expect(['host_error', 'cancelled', 'killed_executor']).not.toContain(sub.outcome);
              accepted = { sub, result: JSON.stringify(job.result) };
            }
            if (sub.from !== assignedTo) expect(decision).toMatchObject({ kind: 'reject', unauthorized: true });
            if (acceptedBefore !== undefined) {
              // Once a result is accepted, every submission gets a fixed answer: the accepted one is a
              // redelivery, a different report of the same attempt a flagged conflict, anything else is rejected.
              const same = sub.from === acceptedBefore.sub.from && sub.attempt === acceptedBefore.sub.attempt;
              expect(decision.kind).toBe(same ? (sub.digest === acceptedBefore.sub.digest ? 'redelivered' : 'conflict') : 'reject');
            }
          }
          if (accepted !== undefined) expect(JSON.stringify(job.result)).toBe(accepted.result);
          // Each distinct conflicting report is listed once, and only against the accepted attempt.
          for (const c of job.conflicts ?? []) expect([c.attempt, c.digest === accepted?.sub.digest]).toEqual([accepted?.sub.attempt, false]);
          expect(new Set((job.conflicts ?? []).map((c) => c.digest)).size).toBe((job.conflicts ?? []).length);
          expect(job.attempts.filter((a) => a.outcome === 'accepted').length).toBe(accepted !== undefined ? 1 : 0);
          expect(job.attempts.length).toBeLessThanOrEqual(MAX_REDEPLOYS + 1);
          // A job whose executors died running it twice in a row is over, with nothing left running.
          if (killStreak(job) >= 2 && accepted === undefined) {
            expect(job.state).toBe('failed');
            expect(job.attempts.filter((a) => a.outcome === 'running')).toEqual([]);
          }
          if (job.state === 'failed' && accepted === undefined) expect(job.result).toBeUndefined();
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it('a lost executor\'s attempt can still win if it reports first, and the redeployed attempt is then cancelled', () => {
    const job = freshJob();
    recordAssignment(job, 'e1', 1);
    expect(recordLoss(job, 'e1', 'heartbeat timeout', 2)).toBe(true);
    expect(requeue(job, MAX_REDEPLOYS, 'heartbeat timeout', 2)).toBe('queued');
    recordAssignment(job, 'e2', 3);
    const decision = arbitrate(job, 'j', { from: 'e1', attempt: 1, outcome: 'exited' });
    expect(decision.kind).toBe('accept');
    const cancelled = recordAcceptance(job, 1, { attempt: 1, executor: 'e1', outcome: 'exited', exit_code: 0, message: '', duration_ms: 5, archive: 'j/result.zip', archive_bytes: 22, files: [], missing: [], named_results: [] }, 4, 4);
    expect(cancelled.map((a) => a.executor)).toEqual(['e2']);
    expect(job.attempts.map((a) => a.outcome)).toEqual(['accepted', 'cancelled']);
    expect(arbitrate(job, 'j', { from: 'e2', attempt: 2, outcome: 'exited' })).toMatchObject({ kind: 'reject', acceptedAttempt: 1, unauthorized: false });
  });

  it('an accepted attempt that never reported its start gets started_at from its duration, never before its assignment', () => {
    const result = (duration: number) => ({ attempt: 1, executor: 'e1', outcome: 'exited' as const, exit_code: 0, message: '', duration_ms: duration, archive_bytes: 0, files: [], missing: [], named_results: [] });
    const quick = freshJob();
    recordAssignment(quick, 'e1', 1_000);
    recordAcceptance(quick, 1, result(7), 1_010, 1_011);
    expect(quick.attempts[0]).toMatchObject({ assigned_at: 1_000, started_at: 1_003, ended_at: 1_010 });
    const skewed = freshJob();
    recordAssignment(skewed, 'e1', 1_000);
    recordAcceptance(skewed, 1, result(60_000), 1_010, 1_011);
    expect(skewed.attempts[0]!.started_at).toBe(1_000);
    const reported = freshJob();
    recordAssignment(reported, 'e1', 1_000);
    reported.attempts[0]!.started_at = 1_001;
    recordAcceptance(reported, 1, result(7), 1_010, 1_011);
    expect(reported.attempts[0]!.started_at).toBe(1_001);
  });

  it('fails a job once its redeployments are used up, naming why', () => {
    const job = freshJob();
    for (let i = 0; i <= MAX_REDEPLOYS; i++) {
      recordAssignment(job, EXECUTORS[i % EXECUTORS.length]!, i);
      recordLoss(job, EXECUTORS[i % EXECUTORS.length]!, 'lost', i);
      requeue(job, MAX_REDEPLOYS, 'radio cut', i);
    }
    expect(job.state).toBe('failed');
    expect(job.reason).toContain('gave up after 4 attempts');
    expect(job.reason).toContain('radio cut');
  });

  it('a job whose executors die running it twice in a row is not placed again', () => {
    const job = freshJob();
    recordAssignment(job, 'e1', 1);
    // e1 restarts and says it died running attempt 1: placed again elsewhere.
    const first = arbitrate(job, 'j', { from: 'e1', attempt: 1, outcome: 'killed_executor' });
    expect(first).toMatchObject({ kind: 'retry', killed: true });
    apply(job, { from: 'e1', attempt: 1, outcome: 'killed_executor' }, first, 2);
    expect(job.state).toBe('queued');
    recordAssignment(job, 'e2', 3);
    const second = arbitrate(job, 'j', { from: 'e2', attempt: 2, outcome: 'killed_executor' });
    apply(job, { from: 'e2', attempt: 2, outcome: 'killed_executor' }, second, 4);
    expect(job.state).toBe('failed');
    expect(job.reason).toBe('killed_executor: its executors died while running it 2 times in a row (e1, e2); it is not placed again');
  });

  it('kills reported late still count: the attempt running by then is cancelled', () => {
    const job = freshJob();
    recordAssignment(job, 'e1', 1);
    recordLoss(job, 'e1', 'e1 restarted', 2);
    requeue(job, MAX_REDEPLOYS, 'lost', 2);
    recordAssignment(job, 'e2', 3);
    recordLoss(job, 'e2', 'e2 restarted', 4);
    requeue(job, MAX_REDEPLOYS, 'lost', 4);
    recordAssignment(job, 'e3', 5);
    for (const [from, attempt] of [['e1', 1], ['e2', 2]] as const) {
      const d = arbitrate(job, 'j', { from, attempt, outcome: 'killed_executor' });
      expect(d).toMatchObject({ kind: 'reject', killed: true });
      apply(job, { from, attempt, outcome: 'killed_executor' }, d, 6);
    }
    expect(job.state).toBe('failed');
    expect(job.attempts.map((a) => a.outcome)).toEqual(['rejected', 'rejected', 'cancelled']);
  });

  it('one kill, then a result elsewhere: the job succeeds', () => {
    const job = freshJob();
    recordAssignment(job, 'e1', 1);
    apply(job, { from: 'e1', attempt: 1, outcome: 'killed_executor' }, arbitrate(job, 'j', { from: 'e1', attempt: 1, outcome: 'killed_executor' }), 2);
    recordAssignment(job, 'e2', 3);
    const ok = arbitrate(job, 'j', { from: 'e2', attempt: 2, outcome: 'exited' });
    expect(ok.kind).toBe('accept');
  });

  it('the broker deadline fails only the current running attempt, once', () => {
    const job = freshJob();
    recordAssignment(job, 'e1', 1);
    recordLoss(job, 'e1', 'lost', 2);
    requeue(job, MAX_REDEPLOYS, 'lost', 2);
    expect(recordDeadline(job, 1, 'late', 3)).toBe(false);
    recordAssignment(job, 'e2', 4);
    expect(recordDeadline(job, 2, 'no result within 90 s', 5)).toBe(true);
    expect(job).toMatchObject({ state: 'failed', reason: 'timeout: no result within 90 s' });
    expect(recordDeadline(job, 2, 'again', 6)).toBe(false);
    expect(arbitrate(job, 'j', { from: 'e2', attempt: 2, outcome: 'exited' })).toMatchObject({ kind: 'reject' });
  });
});
