import { describe, expect, it } from 'vitest';
import type { Job } from '../../src/broker/arbiter.js';
import { dependencyState, type DependencyLookup, type ProducerView } from '../../src/broker/dependencies.js';
import { mayWithdraw, recordWithdrawal } from '../../src/broker/withdrawal.js';
import type { JobSpec } from '../../src/protocol/index.js';

const spec = (extra: Partial<JobSpec> = {}): JobSpec => ({
  job_id: 'consumer',
  wasm_module: 'mod',
  capabilities: {},
  argv: [],
  env: {},
  dirs: [],
  data: {},
  results: [],
  named_results: {},
  priority: 'normal',
  timeout_s: 10,
  max_memory_mb: 16,
  ...extra,
});

/** A producer that publishes `partial` from `out.txt`. */
const producer = (extra: Partial<ProducerView> = {}): ProducerView => ({ state: 'queued', spec: { named_results: { 'out.txt': 'partial' } }, ...extra });

function lookup(producers: Record<string, ProducerView | undefined>, located: Record<string, [number, number]> = {}, why: Record<string, string> = {}): DependencyLookup {
  return { producer: (id) => producers[id], located: (name) => located[name], whyQueued: (id) => why[id] };
}

/** The consumer reads `partial` as stdin and waits for the job `p`. */
const consumer = { spec: spec({ stdin_file: 'partial' }), after: ['p'] };
const succeeded = (at: [number, number]): Partial<ProducerView> => ({ state: 'succeeded', result: { named_results: ['partial'], missing: [], published: { partial: { store: 'ds', size: 1, at } } } });

describe('chaining: a job waits for the accepted result of the job it reads from, in this run', () => {
  it('a job that waits for nobody is ready', () => {
    expect(dependencyState({ spec: spec(), after: [] }, lookup({}))).toEqual({ kind: 'ready' });
  });

  it('waits for a producer no broker knows yet, and for one not finished, saying why', () => {
    expect(dependencyState(consumer, lookup({}))).toEqual({ kind: 'wait', reason: 'waiting for job p, which no broker in sight knows yet', jobs: ['p'], names: [] });
    expect(dependencyState(consumer, lookup({ p: producer() }, {}, { p: 'waiting for a suitable executor (ex: missing tag "x")' }))).toEqual({
      kind: 'wait',
      reason: 'waiting for job p (queued: waiting for a suitable executor (ex: missing tag "x")) to publish "partial"',
      jobs: ['p'],
      names: [],
    });
    expect(dependencyState(consumer, lookup({ p: producer({ state: 'running' }) }))).toMatchObject({ kind: 'wait', reason: 'waiting for job p (running) to publish "partial"' });
  });

  it('an existing version of the name does not count: only the one the producer published', () => {
    // A previous run left "partial" at [5, 0]; this run's producer published [9, 0], not yet seen here.
    expect(dependencyState(consumer, lookup({ p: producer(succeeded([9, 0])) }, { partial: [5, 0] }))).toEqual({
      kind: 'wait',
      reason: 'waiting for "partial", published by job p, to reach this broker',
      jobs: [],
      names: ['partial'],
    });
    expect(dependencyState(consumer, lookup({ p: producer(succeeded([9, 0])) }, { partial: [9, 0] }))).toEqual({ kind: 'ready' });
    // A later write than the producer's is newer, not stale.
    expect(dependencyState(consumer, lookup({ p: producer(succeeded([9, 0])) }, { partial: [9, 1] }))).toEqual({ kind: 'ready' });
    // While the producer runs, an existing version is no reason to start.
    expect(dependencyState(consumer, lookup({ p: producer({ state: 'running' }) }, { partial: [5, 0] })).kind).toBe('wait');
  });

  it('fails with the producer\'s reason when it fails, or when it succeeded without publishing what is read', () => {
    expect(dependencyState(consumer, lookup({ p: producer({ state: 'failed', reason: 'exited: exited with code 5' }) }))).toEqual({
      kind: 'fail',
      reason: 'job p, whose "partial" this job reads, failed: exited: exited with code 5',
    });
    expect(dependencyState(consumer, lookup({ p: producer({ state: 'succeeded', result: { named_results: [], missing: ['out.txt'] } }) }))).toEqual({
      kind: 'fail',
      reason: 'job p succeeded without publishing "partial", which this job reads (it did not leave out.txt)',
    });
  });

  it('a failure anywhere wins over waits elsewhere', () => {
    const two = { spec: spec({ stdin_file: 'partial', data: { 'b.txt': 'other' } }), after: ['p', 'q'] };
    const q: ProducerView = { state: 'failed', reason: 'cancelled by its submitter c', spec: { named_results: { 'b.txt': 'other' } } };
    expect(dependencyState(two, lookup({ p: producer(), q }))).toEqual({ kind: 'fail', reason: 'job q, whose "other" this job reads, failed: cancelled by its submitter c' });
  });
});

describe('cancel by the submitter', () => {
  const job = (): Job => ({
    job_id: 'j',
    state: 'running',
    priority: 'normal',
    owner: 'laptop',
    created_at: 1,
    updated_at: 1,
    attempts: [
      { attempt: 1, executor: 'ex-1', outcome: 'lost', assigned_at: 1, ended_at: 2 },
      { attempt: 2, executor: 'ex-2', outcome: 'running', assigned_at: 3 },
    ],
    spec: spec({ job_id: 'j' }),
    digest: 'd',
    after: [],
  });

  it('only the submitter may cancel, and only a job that has not ended', () => {
    expect(mayWithdraw(job(), 'laptop')).toBeUndefined();
    expect(mayWithdraw(job(), 'intruder')).toEqual({ code: 'forbidden', message: 'job j was submitted by laptop; only its submitter or an operator can cancel it' });
    expect(mayWithdraw(job(), 'ops', true)).toBeUndefined();
    expect(mayWithdraw({ ...job(), state: 'succeeded' }, 'laptop')).toEqual({ code: 'already_ended', message: 'job j already ended (succeeded)' });
  });

  it('fails the job with who cancelled it and stops only the attempts still running', () => {
    const j = job();
    const stopped = recordWithdrawal(j, 'laptop', 10);
    expect(j).toMatchObject({ state: 'failed', reason: 'cancelled by its submitter laptop', updated_at: 10 });
    expect(stopped.map((a) => a.attempt)).toEqual([2]);
    expect(j.attempts.map((a) => a.outcome)).toEqual(['lost', 'cancelled']);
    expect(j.attempts[1]).toMatchObject({ ended_at: 10, reason: 'cancelled by its submitter laptop' });
  });
});
