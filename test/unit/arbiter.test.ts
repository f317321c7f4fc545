import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { arbitrate, recordAcceptance, recordAssignment, recordFailure, recordLoss, recordRejection, requeue, type Decision, type Job, type Submission } from '../../src/broker/arbiter.js';
import { RUN_OUTCOMES, type JobSpec, type RunOutcome } from '../../src/protocol/index.js';

const SPEC: JobSpec = { job_id: 'j', wasm_module: 'm.wasm', capabilities: {}, argv: [], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 30, max_memory_mb: 16 };
const EXECUTORS = ['e1', 'e2', 'e3'];
const MAX_REDEPLOYS = 3;

function freshJob(): Job {
  return { job_id: 'j', state: 'queued', priority: 'normal', owner: 'c', created_at: 0, updated_at: 0, attempts: [], spec: SPEC, digest: 'd', wait_for: [] };
}

type Event =
  | { type: 'assign'; executor: string }
  | { type: 'lose'; executor: string }
  | { type: 'submit'; sub: Submission }
  | { type: 'redeliver'; index: number }
  | { type: 'restart' };

const eventArb: fc.Arbitrary<Event> = fc.oneof(
  fc.record({ type: fc.constant('assign' as const), executor: fc.constantFrom(...EXECUTORS) }),
  fc.record({ type: fc.constant('lose' as const), executor: fc.constantFrom(...EXECUTORS) }),
  fc.record({
    type: fc.constant('submit' as const),
    sub: fc.record({ from: fc.constantFrom(...EXECUTORS, 'rogue'), attempt: fc.integer({ min: 1, max: 5 }), outcome: fc.constantFrom<RunOutcome>(...RUN_OUTCOMES) }),
  }),
  fc.record({ type: fc.constant('redeliver' as const), index: fc.nat() }),
  fc.record({ type: fc.constant('restart' as const) }),
);

/** Applies a decision the way the job manager does, minus the messages and the publishing. */
function apply(job: Job, sub: Submission, decision: Decision, now: number): void {
  if (decision.kind === 'accept') {
    recordAcceptance(job, sub.attempt, { attempt: sub.attempt, executor: sub.from, outcome: sub.outcome, message: '', duration_ms: 1, archive: 'j/result.zip', archive_bytes: 22, files: [], missing: [], named_results: [] }, now, now);
  } else if (decision.kind === 'reject' && !decision.unauthorized) {
    recordRejection(job, sub.attempt, decision.reason, now);
  } else if (decision.kind === 'retry') {
    recordFailure(job, sub.attempt, decision.reason, now);
    requeue(job, MAX_REDEPLOYS, decision.reason, now);
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
              expect(['host_error', 'cancelled']).not.toContain(sub.outcome);
              accepted = { sub, result: JSON.stringify(job.result) };
            }
            if (sub.from !== assignedTo) expect(decision).toMatchObject({ kind: 'reject', unauthorized: true });
            if (acceptedBefore !== undefined) {
              // Once a result is accepted, every submission gets a fixed answer: the accepted one is a
              // redelivery, anything else is rejected.
              const same = sub.from === acceptedBefore.sub.from && sub.attempt === acceptedBefore.sub.attempt;
              expect(decision.kind).toBe(same ? 'redelivered' : 'reject');
            }
          }
          if (accepted !== undefined) expect(JSON.stringify(job.result)).toBe(accepted.result);
          expect(job.attempts.filter((a) => a.outcome === 'accepted').length).toBe(accepted !== undefined ? 1 : 0);
          expect(job.attempts.length).toBeLessThanOrEqual(MAX_REDEPLOYS + 1);
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
});
