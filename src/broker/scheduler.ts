import { PRIORITIES, unmetRequirement, type Capabilities, type Priority, type Requirements } from '../protocol/index.js';

/** An executor as the scheduler sees it: what it offers and how busy it is. */
export interface ExecutorView {
  readonly id: string;
  readonly capabilities: Capabilities;
  /** Jobs it runs now (including ones assigned but not yet started). */
  readonly running: number;
  /** Jobs it may run at once. */
  readonly slots: number;
  /** One-minute load average per core, from its heartbeat. */
  readonly load: number;
}

export interface QueuedJob {
  readonly jobId: string;
  readonly priority: Priority;
  readonly requirements: Requirements;
  /** Local monotonic time it entered the queue, for aging and first-come order. */
  readonly enqueuedAt: number;
  /** Executors this job must not go to (e.g. the one it was lost on). */
  readonly exclude?: ReadonlySet<string>;
}

export interface Assignment {
  readonly jobId: string;
  readonly executor: string;
}

const RANK: Record<Priority, number> = Object.fromEntries(PRIORITIES.map((p, i) => [p, i])) as Record<Priority, number>;
/** Aging lifts waiting work up to 'high', never to 'critical': emergencies always go first. */
const AGED_CEILING = RANK.high;

/**
 * The broker's queue of jobs waiting for an executor. A job goes only to an executor that satisfies its
 * requirements and has a free slot, and among those to the least loaded one. Higher priority goes first;
 * every `agingMs` of waiting lifts a job one level (up to 'high'), so low-priority work cannot starve;
 * within a level the job that waited longest goes first.
 */
export class JobQueue {
  private readonly jobs = new Map<string, QueuedJob>();

  constructor(private readonly agingMs: number) {}

  get size(): number {
    return this.jobs.size;
  }

  add(job: QueuedJob): void {
    this.jobs.set(job.jobId, job);
  }

  remove(jobId: string): boolean {
    return this.jobs.delete(jobId);
  }

  has(jobId: string): boolean {
    return this.jobs.has(jobId);
  }

  ids(): IterableIterator<string> {
    return this.jobs.keys();
  }

  /** The effective rank of a job after aging. */
  rank(job: QueuedJob, now: number): number {
    const base = RANK[job.priority];
    if (base >= AGED_CEILING) return base;
    return Math.min(AGED_CEILING, base + Math.floor((now - job.enqueuedAt) / this.agingMs));
  }

  /** Jobs in the order they should be placed. */
  ordered(now: number): QueuedJob[] {
    return [...this.jobs.values()].sort((a, b) => this.rank(b, now) - this.rank(a, now) || a.enqueuedAt - b.enqueuedAt || (a.jobId < b.jobId ? -1 : 1));
  }

  /**
   * Places as many queued jobs as the executors have room for, and removes them from the queue. Run it
   * whenever an executor appears, reports (heartbeat) or finishes a job.
   */
  schedule(executors: readonly ExecutorView[], now: number): Assignment[] {
    const load = new Map(executors.map((e) => [e.id, e.running]));
    const assignments: Assignment[] = [];
    for (const job of this.ordered(now)) {
      const candidates = executors.filter((e) => (load.get(e.id) ?? 0) < e.slots && !job.exclude?.has(e.id) && unmetRequirement(e.capabilities, job.requirements) === undefined);
      if (candidates.length === 0) continue;
      const best = candidates.reduce((a, b) => (leastLoaded(a, b, load) <= 0 ? a : b));
      load.set(best.id, (load.get(best.id) ?? 0) + 1);
      this.jobs.delete(job.jobId);
      assignments.push({ jobId: job.jobId, executor: best.id });
    }
    return assignments;
  }

  /** Why a queued job has not been placed, for `ucp job ID`. */
  why(jobId: string, executors: readonly ExecutorView[]): string | undefined {
    const job = this.jobs.get(jobId);
    if (job === undefined) return undefined;
    if (executors.length === 0) return 'no executor is alive';
    const reasons = executors.map((e) => {
      if (job.exclude?.has(e.id)) return `${e.id}: excluded for this job`;
      const unmet = unmetRequirement(e.capabilities, job.requirements);
      if (unmet !== undefined) return `${e.id}: ${unmet}`;
      return `${e.id}: all ${e.slots} slots busy`;
    });
    return `waiting for a suitable executor (${reasons.join('; ')})`;
  }
}

/** Negative if `a` is less loaded than `b`: by share of slots in use, then load average, then id. */
function leastLoaded(a: ExecutorView, b: ExecutorView, running: ReadonlyMap<string, number>): number {
  const share = (e: ExecutorView) => (running.get(e.id) ?? 0) / Math.max(1, e.slots);
  return share(a) - share(b) || a.load - b.load || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
