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
 *
 * Jobs are kept in lanes: one per set of requirements and priority, each a heap ordered by waiting time.
 * Within a lane the head is the job that waited longest, which is also the one aging lifted highest, so
 * the next job to place is always the best lane head among the lanes some free executor can serve:
 * placing one job costs a look at each lane head and a heap operation, however long the queue is, and a
 * queue no free executor can serve costs nothing.
 */
export class JobQueue {
  private readonly jobs = new Map<string, QueuedJob>();
  private readonly groups = new Map<string, Group>();

  constructor(private readonly agingMs: number) {}

  get size(): number {
    return this.jobs.size;
  }

  add(job: QueuedJob): void {
    this.remove(job.jobId);
    this.jobs.set(job.jobId, job);
    const key = requirementsKey(job.requirements);
    let group = this.groups.get(key);
    if (group === undefined) this.groups.set(key, (group = { requirements: job.requirements, lanes: PRIORITIES.map(() => new Heap<QueuedJob>(earlier)), live: 0 }));
    group.lanes[RANK[job.priority]]!.push(job);
    group.live++;
  }

  /** Takes a job out; its lane entry is dropped when it reaches the head. */
  remove(jobId: string): boolean {
    const job = this.jobs.get(jobId);
    if (job === undefined) return false;
    this.jobs.delete(jobId);
    this.settle(job, -1);
    return true;
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

  /** Jobs in the order they should be placed (a full sort: for inspection, not for scheduling). */
  ordered(now: number): QueuedJob[] {
    return [...this.jobs.values()].sort((a, b) => this.before(a, b, now));
  }

  /**
   * Places as many queued jobs as the executors have room for, and removes them from the queue. Run it
   * whenever an executor appears, reports (heartbeat) or finishes a job.
   */
  schedule(executors: readonly ExecutorView[], now: number): Assignment[] {
    const load = new Map(executors.map((e) => [e.id, e.running]));
    const free = () => executors.filter((e) => (load.get(e.id) ?? 0) < e.slots);
    let open = free();
    const assignments: Assignment[] = [];
    // Jobs whose only able executors are excluded for them: set aside for this pass, back afterwards.
    const setAside: QueuedJob[] = [];
    const able = new Map<Group, ExecutorView[]>();
    const ableFor = (group: Group) => {
      let list = able.get(group);
      if (list === undefined) able.set(group, (list = open.filter((e) => unmetRequirement(e.capabilities, group.requirements) === undefined)));
      return list;
    };
    while (open.length > 0) {
      let best: { job: QueuedJob; lane: Heap<QueuedJob>; group: Group } | undefined;
      for (const group of this.groups.values()) {
        if (group.live === 0 || ableFor(group).length === 0) continue;
        for (const lane of group.lanes) {
          const head = this.head(lane);
          if (head !== undefined && (best === undefined || this.before(head, best.job, now) < 0)) best = { job: head, lane, group };
        }
      }
      if (best === undefined) break;
      const { job, lane, group } = best;
      lane.pop();
      const candidates = ableFor(group).filter((e) => !job.exclude?.has(e.id));
      if (candidates.length === 0) {
        setAside.push(job);
        continue;
      }
      const chosen = candidates.reduce((a, b) => (leastLoaded(a, b, load) <= 0 ? a : b));
      load.set(chosen.id, (load.get(chosen.id) ?? 0) + 1);
      this.jobs.delete(job.jobId);
      this.settle(job, -1);
      assignments.push({ jobId: job.jobId, executor: chosen.id });
      if ((load.get(chosen.id) ?? 0) >= chosen.slots) {
        open = free();
        able.clear();
      }
    }
    for (const job of setAside) this.groupOf(job).lanes[RANK[job.priority]]!.push(job);
    return assignments;
  }

  /**
   * Lets a queued job go to an executor it was kept from. Returns false if the job is not queued or was
   * not kept from it.
   */
  readmit(jobId: string, executor: string): boolean {
    const job = this.jobs.get(jobId);
    if (job?.exclude?.has(executor) !== true) return false;
    const { exclude, ...rest } = job;
    const still = new Set([...exclude].filter((id) => id !== executor));
    this.add(still.size > 0 ? { ...rest, exclude: still } : rest);
    return true;
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

  /** Negative if `a` goes before `b`: higher rank after aging, then waited longer, then the lower id. */
  private before(a: QueuedJob, b: QueuedJob, now: number): number {
    return this.rank(b, now) - this.rank(a, now) || earlier(a, b);
  }

  /** A lane's first live job, dropping entries of jobs removed meanwhile. */
  private head(lane: Heap<QueuedJob>): QueuedJob | undefined {
    for (;;) {
      const top = lane.peek();
      if (top === undefined || this.jobs.get(top.jobId) === top) return top;
      lane.pop();
    }
  }

  private groupOf(job: QueuedJob): Group {
    return this.groups.get(requirementsKey(job.requirements))!;
  }

  /** Counts a job leaving its group; a group left empty goes, with whatever stale entries it held. */
  private settle(job: QueuedJob, by: number): void {
    const key = requirementsKey(job.requirements);
    const group = this.groups.get(key);
    if (group === undefined) return;
    group.live += by;
    if (group.live <= 0) this.groups.delete(key);
  }
}

interface Group {
  readonly requirements: Requirements;
  /** One heap per priority, indexed by rank. */
  readonly lanes: Array<Heap<QueuedJob>>;
  /** Jobs of the group still queued (lanes may also hold entries of removed ones). */
  live: number;
}

function earlier(a: QueuedJob, b: QueuedJob): number {
  return a.enqueuedAt - b.enqueuedAt || (a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : 0);
}

/** The same key for the same requirements, whatever the order of their fields and tags. */
function requirementsKey(r: Requirements): string {
  const entries = Object.entries(r)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => [k, Array.isArray(v) ? [...new Set(v)].sort() : v] as const)
    .sort(([a], [b]) => (a < b ? -1 : 1));
  return JSON.stringify(entries);
}

/** A binary min-heap. */
class Heap<T> {
  private readonly items: T[] = [];
  constructor(private readonly compare: (a: T, b: T) => number) {}

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const items = this.items;
    items.push(item);
    for (let i = items.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (this.compare(items[i]!, items[parent]!) >= 0) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && this.compare(items[l]!, items[m]!) < 0) m = l;
        if (r < items.length && this.compare(items[r]!, items[m]!) < 0) m = r;
        if (m === i) break;
        [items[i], items[m]] = [items[m]!, items[i]!];
        i = m;
      }
    }
    return top;
  }
}

/** Negative if `a` is less loaded than `b`: by share of slots in use, then load average, then id. */
function leastLoaded(a: ExecutorView, b: ExecutorView, running: ReadonlyMap<string, number>): number {
  const share = (e: ExecutorView) => (running.get(e.id) ?? 0) / Math.max(1, e.slots);
  return share(a) - share(b) || a.load - b.load || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
