import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JobQueue, type ExecutorView, type QueuedJob } from '../../src/broker/scheduler.js';
import { PRIORITIES, unmetRequirement, type Capabilities, type Priority } from '../../src/protocol/index.js';

const caps = (tags: string[] = [], cores = 4): Capabilities => ({
  cpu_cores: cores,
  free_cpu_capacity: cores * 100,
  free_memory: 2 ** 31,
  free_disk_space: 2 ** 34,
  tags,
  on_mains_power: true,
});
const exec = (id: string, opts: Partial<ExecutorView> = {}): ExecutorView => ({ id, capabilities: caps(), running: 0, slots: 2, load: 0, ...opts });
const job = (jobId: string, priority: Priority = 'normal', enqueuedAt = 0, extra: Partial<QueuedJob> = {}): QueuedJob => ({ jobId, priority, requirements: {}, enqueuedAt, ...extra });

describe('job queue and scheduling', () => {
  it('a critical job overtakes queued low ones', () => {
    const q = new JobQueue(60_000);
    for (let i = 0; i < 5; i++) q.add(job(`low-${i}`, 'low', i));
    q.add(job('fire', 'critical', 100));
    const placed = q.schedule([exec('e1', { slots: 1 })], 200);
    expect(placed).toEqual([{ jobId: 'fire', executor: 'e1' }]);
    expect(q.size).toBe(5);
  });

  it('aging lifts waiting low work up to high, never above critical', () => {
    const q = new JobQueue(1_000);
    q.add(job('old-low', 'low', 0));
    q.add(job('new-high', 'high', 9_000));
    q.add(job('new-critical', 'critical', 9_500));
    expect(q.rank(job('old-low', 'low', 0), 10_000)).toBe(2);
    expect(q.ordered(10_000).map((j) => j.jobId)).toEqual(['new-critical', 'old-low', 'new-high']);
    // Without the wait, the low job would come last.
    expect(q.ordered(0).map((j) => j.jobId).at(-1)).toBe('old-low');
  });

  it('places a job only on an executor that satisfies it, and says why it waits', () => {
    const q = new JobQueue(60_000);
    q.add(job('hose', 'high', 0, { requirements: { tags: ['firefighting'] } }));
    const ambulance = exec('ambulance-2', { capabilities: caps(['medical']) });
    expect(q.schedule([ambulance], 1)).toEqual([]);
    expect(q.why('hose', [ambulance])).toBe('waiting for a suitable executor (ambulance-2: missing tag "firefighting")');
    const fireUnit = exec('fire-unit-1', { capabilities: caps(['firefighting']) });
    expect(q.schedule([ambulance, fireUnit], 2)).toEqual([{ jobId: 'hose', executor: 'fire-unit-1' }]);
  });

  it('prefers the least loaded executor and never overfills one', () => {
    const q = new JobQueue(60_000);
    for (let i = 0; i < 5; i++) q.add(job(`j${i}`, 'normal', i));
    const placed = q.schedule([exec('busy', { running: 1, slots: 2 }), exec('idle', { running: 0, slots: 2 }), exec('hot', { running: 0, slots: 2, load: 0.9 })], 10);
    expect(placed.map((p) => p.executor)).toEqual(['idle', 'hot', 'busy', 'idle', 'hot']);
    expect(q.size).toBe(0);
  });

  it('never sends a job to an executor excluded for it', () => {
    const q = new JobQueue(60_000);
    q.add(job('redeploy', 'normal', 0, { exclude: new Set(['lost-1']) }));
    expect(q.schedule([exec('lost-1')], 1)).toEqual([]);
    expect(q.why('redeploy', [exec('lost-1')])).toMatch(/lost-1: excluded/);
  });

  it('a job readmitted to an executor goes there, keeps its place in line and its other exclusions', () => {
    const q = new JobQueue(60_000);
    q.add(job('redeploy', 'normal', 0, { exclude: new Set(['lost-1', 'lost-2']) }));
    q.add(job('later', 'normal', 5));
    expect(q.readmit('redeploy', 'lost-1')).toBe(true);
    expect(q.readmit('redeploy', 'lost-1')).toBe(false);
    expect(q.readmit('not-queued', 'lost-1')).toBe(false);
    // One slot: the job that waited longest still goes first, and not to the executor still excluded.
    expect(q.schedule([exec('lost-2'), exec('lost-1', { slots: 1 })], 10)).toEqual([
      { jobId: 'redeploy', executor: 'lost-1' },
      { jobId: 'later', executor: 'lost-2' },
    ]);
    expect(q.size).toBe(0);
  });

  it('property: every placement satisfies the job, respects slots, and no job is placed twice', () => {
    const tagSet = ['a', 'b', 'c'];
    fc.assert(
      fc.property(
        fc.array(fc.record({ tags: fc.subarray(tagSet), slots: fc.integer({ min: 0, max: 3 }), running: fc.integer({ min: 0, max: 3 }), load: fc.double({ min: 0, max: 2, noNaN: true }) }), { maxLength: 5 }),
        fc.array(fc.record({ tags: fc.subarray(tagSet, { maxLength: 2 }), priority: fc.constantFrom<Priority>('low', 'normal', 'high', 'critical'), at: fc.nat(100) }), { maxLength: 12 }),
        (execSpecs, jobSpecs) => {
          const executors = execSpecs.map((e, i) => exec(`e${i}`, { capabilities: caps(e.tags), slots: e.slots, running: e.running, load: e.load }));
          const q = new JobQueue(50);
          jobSpecs.forEach((j, i) => q.add(job(`j${i}`, j.priority, j.at, { requirements: { tags: j.tags } })));
          const placed = q.schedule(executors, 200);
          expect(new Set(placed.map((p) => p.jobId)).size).toBe(placed.length);
          for (const p of placed) {
            const e = executors.find((x) => x.id === p.executor)!;
            const spec = jobSpecs[Number(p.jobId.slice(1))]!;
            expect(unmetRequirement(e.capabilities, { tags: spec.tags })).toBeUndefined();
          }
          for (const e of executors) {
            const added = placed.filter((p) => p.executor === e.id).length;
            if (added > 0) expect(e.running + added).toBeLessThanOrEqual(e.slots);
          }
          expect(q.size + placed.length).toBe(jobSpecs.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('property: places exactly what the plain rule places (sort everything, take each job in turn), for any queue and any executors', () => {
    const tagSet = ['a', 'b', 'c'];
    /** The rule written the obvious way, O(n log n) per call: the model the lanes must agree with. */
    const model = (jobs: QueuedJob[], executors: ExecutorView[], now: number, q: JobQueue) => {
      const load = new Map(executors.map((e) => [e.id, e.running]));
      const ordered = [...jobs].sort((a, b) => q.rank(b, now) - q.rank(a, now) || a.enqueuedAt - b.enqueuedAt || (a.jobId < b.jobId ? -1 : 1));
      const out: Array<{ jobId: string; executor: string }> = [];
      for (const j of ordered) {
        const candidates = executors.filter((e) => (load.get(e.id) ?? 0) < e.slots && !j.exclude?.has(e.id) && unmetRequirement(e.capabilities, j.requirements) === undefined);
        if (candidates.length === 0) continue;
        const share = (e: ExecutorView) => (load.get(e.id) ?? 0) / Math.max(1, e.slots);
        const best = candidates.reduce((a, b) => (share(a) - share(b) || a.load - b.load || (a.id < b.id ? -1 : 1)) <= 0 ? a : b);
        load.set(best.id, (load.get(best.id) ?? 0) + 1);
        out.push({ jobId: j.jobId, executor: best.id });
      }
      return out;
    };
    fc.assert(
      fc.property(
        fc.array(fc.record({ tags: fc.subarray(tagSet), slots: fc.integer({ min: 0, max: 3 }), running: fc.integer({ min: 0, max: 3 }), load: fc.constantFrom(0, 0.5, 1) }), { maxLength: 5 }),
        fc.array(
          fc.record({
            tags: fc.subarray(tagSet, { maxLength: 2 }),
            priority: fc.constantFrom<Priority>(...PRIORITIES),
            at: fc.nat(200),
            exclude: fc.subarray(['e0', 'e1', 'e2', 'e3', 'e4'], { maxLength: 2 }),
            removed: fc.boolean(),
          }),
          { maxLength: 30 },
        ),
        fc.integer({ min: 0, max: 400 }),
        (execSpecs, jobSpecs, now) => {
          const executors = execSpecs.map((e, i) => exec(`e${i}`, { capabilities: caps(e.tags), slots: e.slots, running: e.running, load: e.load }));
          const q = new JobQueue(50);
          const live: QueuedJob[] = [];
          jobSpecs.forEach((j, i) => {
            const queued = job(`j${i}`, j.priority, j.at, { requirements: j.tags.length > 0 ? { tags: j.tags } : {}, ...(j.exclude.length > 0 ? { exclude: new Set(j.exclude) } : {}) });
            q.add(queued);
            if (j.removed) q.remove(queued.jobId);
            else live.push(queued);
          });
          const expected = model(live, executors, now, q);
          expect(q.schedule(executors, now)).toEqual(expected);
          expect(q.size).toBe(live.length - expected.length);
          // What is left is scheduled the same way again (jobs set aside this pass were put back).
          const rest = live.filter((j) => !expected.some((p) => p.jobId === j.jobId));
          const more = executors.map((e) => ({ ...e, running: 0, slots: 3 }));
          expect(q.schedule(more, now + 100)).toEqual(model(rest, more, now + 100, q));
        },
      ),
      { numRuns: 1_000 },
    );
  });
});
