import { writeFile } from 'node:fs/promises';
import { isFinal, quote, type BodyOf, type JobSpec, type JobState, type JobView } from '../protocol/index.js';
import type { NodeStore, Table } from '../store/index.js';
import { RemoteError, TransportError, type NodeLink } from '../transport/index.js';
import type { DataClient } from './data-client.js';
import { PlanError, submissionOrder, type ExecutionPlan } from './plan.js';

/** A job this client submitted, kept in its LMDB store so results can be collected after a restart. */
export interface SubmittedJob {
  readonly jobId: string;
  readonly broker: string;
  readonly plan: string;
  readonly submittedAt: number;
  /** When its result was written out (`ucp run` or `ucp results`). */
  collectedAt?: number;
}

export type JobListItem = BodyOf<'job_listing'>['items'][number];
export interface ListFilter {
  readonly owner?: string;
  readonly receiver?: string;
  readonly states?: readonly JobState[];
  readonly since?: number;
}

export interface Finished {
  readonly job: JobView;
  /** The result archive when the broker sent it along with the final update. */
  readonly archive?: Uint8Array;
}

export interface WaitOptions {
  /**
   * Give up after this long; the jobs not finished by then are missing from the answer. Every job is asked
   * about once even with 0, so a finished job is answered at once.
   */
  readonly timeoutMs?: number;
  /** Stop waiting when this aborts (Ctrl-C); the answer holds what finished until then. */
  readonly signal?: AbortSignal;
  /** Every state change seen, for progress output. */
  readonly onUpdate?: (job: JobView) => void;
}

export type PlanEvent = { type: 'published'; name: string; bytes: number } | { type: 'submitted'; job: JobView; created: boolean; index: number };

/** Ctrl-C while a plan was being submitted: the jobs submitted so far run, the rest were not sent. */
export class SubmissionInterrupted extends Error {
  readonly code = 'interrupted';
  constructor(
    readonly submitted: number,
    readonly total: number,
  ) {
    super(`interrupted after submitting ${submitted} of ${total} job(s)`);
  }
}

/** How often jobs still running are asked about, in case an update was lost (a broker restart, a hub hiccup). */
const POLL_MS = 2_000;
/** Times a job request goes unanswered before the client gives up. */
const ASK_ATTEMPTS = 3;
/** Jobs listed per request. */
const LIST_PAGE = 500;

/**
 * Jobs through a broker: publish a plan's data, submit its jobs, follow them to the end and fetch their
 * result archives. What it submitted is recorded in the client's store, so `ucp results` can collect it
 * after a restart, even from another broker.
 */
export class JobClient {
  /** Absent for a client without a store (one-off queries): it then remembers nothing. */
  private readonly submitted?: Table<SubmittedJob>;
  private readonly listeners = new Set<(update: BodyOf<'job_update'>) => void>();

  /** Register before the link connects, so no update is missed. */
  constructor(
    private readonly link: NodeLink,
    store: NodeStore | undefined,
    private readonly data: DataClient,
  ) {
    this.submitted = store?.table<SubmittedJob>('submitted_jobs');
    link.on('job_update', (msg) => {
      for (const listener of this.listeners) listener(msg.body);
    });
  }

  /** Calls `listener` with every update a broker pushes; returns the function that stops it. */
  subscribe(listener: (update: BodyOf<'job_update'>) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Jobs this client submitted whose results it has not written out yet, oldest first. */
  uncollected(): SubmittedJob[] {
    if (this.submitted === undefined) return [];
    return [...this.submitted.getRange()].map(({ value }) => value).filter((j) => j.collectedAt === undefined).sort((a, b) => a.submittedAt - b.submittedAt);
  }

  /** Records that a job's result was written out; a job this client did not submit (a receiver's) too. */
  async markCollected(jobId: string): Promise<void> {
    if (this.submitted === undefined) return;
    const job = this.submitted.get(jobId) ?? { jobId, broker: '', plan: '', submittedAt: Date.now() };
    await this.submitted.put(jobId, { ...job, collectedAt: Date.now() });
  }

  /** Whether this client has written out the job's result already. */
  collected(jobId: string): boolean {
    return this.submitted?.get(jobId)?.collectedAt !== undefined;
  }

  /**
   * Publishes the plan's named and inline data, then submits every job. Data the plan reads but does not
   * provide must already exist in the network: if any is missing nothing is submitted.
   */
  async submitPlan(plan: ExecutionPlan, onEvent: (event: PlanEvent) => void = () => undefined, signal?: AbortSignal): Promise<JobView[]> {
    await this.checkExternalData(plan);
    for (const file of [...plan.namedData, ...plan.jobs.flatMap((j) => j.inline)]) {
      if (signal?.aborted === true) throw new SubmissionInterrupted(0, plan.jobs.length);
      // Streamed in chunks: plan data of any size is never held in memory whole.
      const { size, outcome } = await this.data.putFile(file.name, file.file);
      // A job must not run on some other version than the one this plan published: say so and stop.
      if (outcome === 'stale') throw new Error(`publishing ${quote(file.name)} did not take effect: the cluster holds a newer version written at the same time; run the plan again`);
      onEvent({ type: 'published', name: file.name, bytes: size });
    }
    // A job goes in after the jobs it reads from, so its broker already knows what it waits for.
    const views = new Map<string, JobView>();
    for (const job of submissionOrder(plan)) {
      if (signal?.aborted === true) throw new SubmissionInterrupted(views.size, plan.jobs.length);
      const { job: view, created } = await this.submit(job.spec, job.dependsOn, plan.file);
      onEvent({ type: 'submitted', job: view, created, index: job.index });
      views.set(job.spec.job_id, view);
    }
    return plan.jobs.map((j) => views.get(j.spec.job_id)!);
  }

  private async checkExternalData(plan: ExecutionPlan): Promise<void> {
    const problems: string[] = [];
    const known = new Map<string, boolean>();
    for (const ref of plan.externalRefs) {
      let exists = known.get(ref.name);
      if (exists === undefined) {
        exists = (await this.data.list(ref.name)).some((item) => item.name === ref.name);
        known.set(ref.name, exists);
      }
      if (!exists) problems.push(`${ref.field}: "${ref.name}" is neither in the plan nor in the network`);
    }
    if (problems.length > 0) throw new PlanError(plan.file, problems);
  }

  /**
   * Submits one job, to run once the jobs in `after` (whose named results it reads) have succeeded; a
   * retried submission of the same job is recognised by the broker.
   */
  async submit(spec: JobSpec, after: readonly string[] = [], plan = ''): Promise<{ job: JobView; created: boolean }> {
    const reply = await this.ask('job_submit', { spec, after: [...after] });
    if (reply.kind !== 'job_accepted') throw new Error(`the broker answered ${reply.kind} to a submission`);
    if (this.submitted !== undefined && this.submitted.get(spec.job_id) === undefined) await this.submitted.put(spec.job_id, { jobId: spec.job_id, broker: reply.from, plan, submittedAt: Date.now() });
    return reply.body;
  }

  async query(jobId: string): Promise<JobView> {
    const reply = await this.ask('job_query', { job_id: jobId });
    if (reply.kind !== 'job_info') throw new Error(`the broker answered ${reply.kind} to a job query`);
    return reply.body.job;
  }

  /** Removes one job, or every job of `owner`, from the cluster (stopping unfinished ones); returns how many. */
  async remove(target: { jobId: string } | { owner: string }): Promise<number> {
    const reply = await this.ask('job_remove', 'jobId' in target ? { job_id: target.jobId } : { owner: target.owner });
    if (reply.kind !== 'job_removed') throw new Error(`the broker answered ${reply.kind} to a removal`);
    return reply.body.count;
  }


  /**
   * Jobs the broker knows, newest first (unfinished ones, then finished ones by when they finished), at
   * most `max`: only `owner`'s when given; only those whose results go to `receiver` (its own, and those
   * naming it as a receiver) when given; only those in `states`; only those not yet finished at `since`
   * (ms since the epoch). `more`: the listing stopped at `max` with jobs left to read (they may not match).
   */
  async list(filter: ListFilter = {}, max = Infinity): Promise<{ items: JobListItem[]; more: boolean }> {
    const items: JobListItem[] = [];
    let after: string | undefined;
    do {
      const limit = Math.min(LIST_PAGE, max - items.length);
      const reply = await this.ask('job_list', {
        limit,
        ...(after !== undefined ? { after } : {}),
        ...(filter.owner !== undefined ? { owner: filter.owner } : {}),
        ...(filter.receiver !== undefined ? { receiver: filter.receiver } : {}),
        ...(filter.states !== undefined && filter.states.length > 0 ? { states: [...filter.states] } : {}),
        ...(filter.since !== undefined ? { since: filter.since } : {}),
      });
      if (reply.kind !== 'job_listing') throw new Error(`the broker answered ${reply.kind} to a job listing`);
      items.push(...reply.body.items);
      after = reply.body.next;
    } while (after !== undefined && items.length < max);
    // A full list with a cursor left may still have nothing after it: the broker only knows it read on.
    return { items, more: after !== undefined };
  }

  /**
   * Resolves when every job has ended (or the timeout passed), with what is known of each finished job.
   * Updates pushed by the broker are used as they come; jobs are also asked about now and then, so a lost
   * update or a restarted broker only delays the answer.
   */
  async wait(jobIds: readonly string[], options: WaitOptions = {}): Promise<Map<string, Finished>> {
    const finished = new Map<string, Finished>();
    const open = new Set(jobIds);
    const seen = new Map<string, string>();
    let wake: () => void = () => undefined;
    const observe = (job: JobView, archive?: Uint8Array) => {
      if (!open.has(job.job_id)) return;
      const key = `${job.state}/${job.attempts.length}/${job.attempts.at(-1)?.outcome ?? ''}`;
      if (seen.get(job.job_id) !== key) {
        seen.set(job.job_id, key);
        options.onUpdate?.(job);
      }
      if (isFinal(job.state)) {
        open.delete(job.job_id);
        finished.set(job.job_id, { job, ...(archive !== undefined ? { archive } : {}) });
        if (open.size === 0) wake();
      }
    };
    const unsubscribe = this.subscribe((update) => observe(update.job, update.archive));
    const deadline = options.timeoutMs !== undefined ? performance.now() + options.timeoutMs : Infinity;
    const { signal } = options;
    const aborted = () => signal?.aborted === true;
    const onAbort = () => wake();
    signal?.addEventListener('abort', onAbort);
    try {
      let asked = false;
      while (open.size > 0 && (!asked || performance.now() < deadline) && !aborted()) {
        asked = true;
        await Promise.all(
          [...open].map(async (id) => {
            try {
              observe(await this.query(id));
            } catch (err) {
              // A broker restarting or out of reach only delays the answer; an unknown job never comes.
              if (err instanceof RemoteError && err.code === 'not_found') throw err;
            }
          }),
        );
        if (open.size === 0 || aborted() || performance.now() >= deadline) break;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.max(0, Math.min(POLL_MS, deadline - performance.now())));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    } finally {
      unsubscribe();
      signal?.removeEventListener('abort', onAbort);
    }
    return finished;
  }

  /**
   * Cancels a job this client submitted: asks the broker that manages it (or, when that one is gone, the
   * broker this client is attached to, which adopts its jobs). Returns the job as it is afterwards.
   */
  async withdraw(jobId: string): Promise<JobView> {
    const view = await this.query(jobId);
    const manager = view.broker !== undefined && this.link.peers.get(view.broker)?.alive === true ? view.broker : await this.data.broker();
    const reply = await this.link.request(manager, 'job_withdraw', { job_id: jobId });
    if (reply.kind !== 'job_info') throw new Error(`the broker answered ${reply.kind} to a cancel`);
    return reply.body.job;
  }

  /**
   * The bytes of a finished job's result archive: the copy that came with its update, or the datastore's.
   * Check `job.result.archive` first: a job that names no results receiver keeps none.
   */
  async resultArchive(done: Finished): Promise<Uint8Array> {
    if (done.archive !== undefined) return done.archive;
    const name = done.job.result?.archive;
    if (name === undefined) throw new Error(`job ${done.job.job_id} ended without a result: ${done.job.reason ?? done.job.state}`);
    return (await this.data.get(name)).bytes;
  }

  /**
   * Writes a finished job's result archive to `path`: the copy that came with its update, or the
   * datastore's, streamed in chunks (an archive may be far larger than one message, and than memory).
   */
  async saveResultArchive(done: Finished, path: string): Promise<void> {
    if (done.archive !== undefined) {
      await writeFile(path, done.archive);
      return;
    }
    const name = done.job.result?.archive;
    if (name === undefined) throw new Error(`job ${done.job.job_id} ended without a result: ${done.job.reason ?? done.job.state}`);
    await this.data.getToFile(name, path);
  }

  /**
   * A request to the broker. An unanswered one is asked again (of whichever broker is alive by then, as
   * the first may have been restarting); every kind asked here is safe to repeat.
   */
  private async ask<K extends 'job_submit' | 'job_query' | 'job_list' | 'job_remove'>(kind: K, body: BodyOf<K>) {
    for (let attempt = 1; ; attempt++) {
      const broker = await this.data.broker();
      try {
        return await this.link.request(broker, kind, body);
      } catch (err) {
        if (!(err instanceof TransportError && err.code === 'request_timeout') || attempt >= ASK_ATTEMPTS) throw err;
      }
    }
  }
}
