import { adopterOf, inputsOf, isFinal, isStagingName, resultArchiveName, stagingOwner, stagingPrefix, stagingRoot, unmetRequirement, type BodyOf, type Envelope, type Requirements } from '../protocol/index.js';
import { RemoteError, type Counters, type NodeRuntime, type PeerState } from '../transport/index.js';
import { BadStagedReference, type DataRouter } from './data-router.js';
import { Delegation } from './delegation.js';
import type { MetadataReplica, PrunedJob, Retention, SyncedJob } from './metadata-replica.js';
import { arbitrate, failKiller, killStreak, recordAcceptance, recordAssignment, recordConflict, recordDeadline, recordFailure, recordKill, recordLoss, recordRejection, requeue, type Job } from './arbiter.js';
import { Deadlines } from './deadlines.js';
import { currentAttempt, resultDigest, specDigest, viewOf, type JobRecord } from './job-record.js';
import { jobHidden, seesEveryJob } from './job-visibility.js';
import { cursorOf, factsOf, matches, positionOf, type Position } from './job-listing.js';
import { answering, Refusal } from './refusal.js';
import { planPublication } from './staged-results.js';
import { JobQueue, type ExecutorView } from './scheduler.js';
import { dependencyState, type DependencyLookup } from './dependencies.js';
import { mayWithdraw, recordWithdrawal } from './withdrawal.js';

export interface JobManagerOptions {
  /** A queued job rises one priority level per this much waiting. */
  readonly agingMs: number;
  /** Result archives up to this size travel inside the final update to the client. */
  readonly inlineResultBytes: number;
  /** Result archives up to this size are kept in the job's record instead of on a datastore. */
  readonly metadataArchiveBytes: number;
  /** Redeployments a job gets after losing executors (or their own failures) before it fails. */
  readonly maxRedeploys: number;
  /** How long a job whose executor was lost waits before it is placed again. */
  readonly redeployDelayMs: number;
  /** After a restart, how long executors get to show they are alive before their jobs count as lost. */
  readonly deadAfterMs: number;
  /** A job with no capable executor in sight for this long is offered to peer brokers. */
  readonly delegateAfterMs: number;
  /** A running attempt with no result after its timeout plus this fails, whatever its executor does. */
  readonly deadlineMarginMs: number;
  /** How long finished jobs, their results and data are kept (jobs.retention_s, jobs.retention_count). */
  readonly retention: Retention;
  /** Unfinished jobs one client may have in the cluster (budgets.max_jobs_per_client). */
  readonly maxJobsPerClient: number;
  /** Bytes of named data one client may own, its jobs' results included (budgets.max_bytes_per_client). */
  readonly maxBytesPerClient: number;
}

/** Finished jobs removed per pass; a pass that used it all runs again at once. */
const PRUNE_BUDGET = 2_000;
/**
 * Finished jobs over jobs.retention_count (at least this many, or 1% of the count) that start a pass a
 * second later instead of at the next interval (up to 60 s). A broker finishing 250 jobs/s otherwise held
 * 15,000 jobs over the count before each pass, and removed them in passes that rewrote most of the tree
 * at once: the LMDB file grew to hold both copies, and RSS peaked at 200 MiB while they were removed.
 */
const OVER_COUNT_SLACK = 100;

/**
 * The executor a job waiting to be placed again is kept from: its last attempt was lost or failed there.
 * `incarnation` and `heartbeat` (the sequence number of the last heartbeat heard from it) are set when it
 * was cut off rather than restarted or failing the job, so it may come back (see readmit()).
 */
interface KeptFrom {
  readonly executor: string;
  readonly incarnation?: number;
  readonly heartbeat?: number;
}

/** A job whose executors died running it this many times in a row is not placed again. */
const KILLS_IN_A_ROW = 2;
/** Jobs one listing page reads at most (index entries are small): bounds a page's cost on the broker. */
const LIST_READ_BUDGET = 5_000;

/**
 * The broker's jobs: it records each submitted job in LMDB, places it on a capable executor (or keeps it
 * queued, or waiting for the data another job publishes), follows its attempts, and decides which result
 * counts: the first one to arrive from an attempt it assigned. Results are published as named data before
 * they are accepted, so an accepted result can always be read.
 */
export class JobManager {
  private readonly jobs = new Map<string, Job>();
  private readonly queue: JobQueue;
  /** Producer job -> jobs waiting for its accepted result (chaining). */
  private readonly waitingOnJob = new Map<string, Set<string>>();
  /** Data name -> jobs waiting for a producer's version of it to reach this broker. */
  private readonly waitingOnName = new Map<string, Set<string>>();
  /** Executor -> jobs assigned to it or running there. */
  private readonly active = new Map<string, Set<string>>();
  /** Per job, the tail of the work deciding its results, so two results never race. */
  private readonly locks = new Map<string, Promise<void>>();
  private scheduleRequested = false;
  private pruneSoonTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The broker's own deadline for each job's current attempt. */
  private readonly deadlines = new Deadlines();
  /** Per unfinished job, attempts whose result arrived: what they staged may no longer change. */
  private readonly sealed = new Map<string, Set<number>>();
  /** Jobs changed this turn and not yet written, and the promise of their write (see record()). */
  private readonly unwritten = new Map<string, { job: Job; written?: Promise<void> }>();
  private recorded: Promise<void> | undefined;
  /** The message id of each assignment sent, by `<job>#<attempt>`, until its result or the job's end. */
  private readonly assignMessages = new Map<string, string>();
  /** Jobs waiting to be placed again, by id: the executor each is kept from. */
  private readonly keptFrom = new Map<string, KeptFrom>();

  constructor(
    private readonly node: NodeRuntime,
    private readonly data: DataRouter,
    private readonly replica: MetadataReplica,
    private readonly options: JobManagerOptions,
  ) {
    this.queue = new JobQueue(options.agingMs);
    // The replicated metadata holds every job in the cluster; this broker manages the unfinished ones that
    // name it (finished ones answer from the replica).
    for (const jobId of replica.jobIds()) {
      const job = replica.job(jobId);
      if (job?.broker === node.link.id && !isFinal(job.state)) this.restore(normalized(job));
    }

    const link = node.link;
    // Timed from the handler's start to the commit the answer waits for (`ucp status` shows the figures).
    link.on('job_submit', (msg) => timed(link.counters, 'submission_ms', answering(link, msg, () => this.submit(msg))));
    link.on('job_started', (msg) => this.started(msg));
    // A result delivered again is recognised by the arbiter from the committed record ('redelivered').
    link.on(
      'job_result',
      (msg) => {
        this.resultAnswers(msg);
        return timed(link.counters, 'result_decision_ms', this.serialized(msg.body.job_id, () => this.decide(msg)));
      },
      { recognisesRedelivery: true },
    );
    link.on('job_query', (msg) => {
      const own = this.jobs.get(msg.body.job_id);
      const job = own ?? replica.job(msg.body.job_id);
      const hidden = job !== undefined ? jobHidden(job.owner, msg.from, msg.role, job.spec.receivers) : undefined;
      if (hidden !== undefined) link.counters.reject(this.node.log, 'jobs_refused_hidden', msg.from, `${msg.from} asked about job ${msg.body.job_id} of ${job!.owner}`);
      // A job a client may not see is answered as unknown: its existence is not for that client to learn.
      if (job === undefined || hidden !== undefined) link.reply(msg, 'error', { code: 'not_found', message: `no job "${msg.body.job_id}" is known to ${link.id}${hidden !== undefined ? ` (${hidden})` : ''}` });
      else link.reply(msg, 'job_info', { job: viewOf(job as JobRecord, own !== undefined ? this.whyQueued(own) : undefined) });
    });
    link.on('job_withdraw', (msg) => answering(link, msg, () => this.withdraw(msg)));
    link.on('job_list', (msg) => {
      // A client lists only what it may see: its own jobs and those it receives, whatever it asks for.
      const query = seesEveryJob(msg.role) ? msg.body : { ...msg.body, receiver: msg.from };
      link.reply(msg, 'job_listing', this.list(query));
    });
    link.on('job_remove', (msg) => answering(link, msg, () => this.remove(msg)));
    link.on('job_delegate', (msg) => answering(link, msg, () => this.takeDelegated(msg)));
    link.onPresence((event) => {
      // A broker that restarted keeps its own jobs; one that is gone has them adopted.
      if (event.peer.role === 'broker' && event.type === 'down' && event.reason !== 'restarted') this.adoptIfMine(event.peer.id);
      if (event.peer.role !== 'executor') return;
      if (event.type === 'up') {
        // A new incarnation is a restart: whatever the old one ran is gone (it may still deliver a
        // result it had finished, and first come, first served decides).
        if (event.restartedFrom !== undefined) this.lose(event.peer.id, `${event.peer.id} restarted`);
        this.requestSchedule();
      } else {
        this.lose(event.peer.id, `${event.peer.id} was lost (${event.reason})`, { incarnation: event.incarnation, heartbeat: event.peer.heartbeat?.seq ?? -1 });
      }
    });
    link.onHeartbeat((peer) => {
      if (peer.role !== 'executor') return;
      if (this.keptFrom.size > 0) this.readmit(peer);
      if (this.queue.size > 0) this.requestSchedule();
    });
    data.onStored((name) => this.nameArrived(name));
    data.guardStaging((writer, name) => this.mayStage(writer, name));
    replica.onName((name) => this.nameArrived(name));
    replica.onJob((job, _change, previous) => {
      this.merged(job, previous);
      if (isFinal(job.state)) {
        this.producerEnded(job.job_id);
        this.pruneIfOverCount();
      }
    });
    new Delegation(
      node,
      replica,
      {
        queued: () => this.queuedJobs(),
        canRun: (needs) => this.canRun(needs),
        peerBrokers: () => this.liveBrokers().filter((b) => b !== link.id),
        handOver: (jobId) => {
          this.jobs.delete(jobId);
          this.queue.remove(jobId);
          this.deadlines.disarm(jobId);
        },
      },
      options.delegateAfterMs,
    );
    if (this.queue.size > 0) this.requestSchedule();
    let reconcileTimer: NodeJS.Timeout | undefined;
    node.onConnected(() => {
      // Executors that died while this broker was down send no death now: give the living time to show
      // themselves (births are retained, heartbeats follow), then treat the silent as lost.
      reconcileTimer = setTimeout(() => {
        this.reconcile(`was not alive when ${link.id} restarted`);
        for (const broker of this.orphanOwners()) this.adoptIfMine(broker);
      }, options.deadAfterMs).unref();
    });
    // Retention touches only expired jobs (an index ordered by finishing time), so an idle broker's cost
    // does not grow with its history.
    const pruneEvery = Math.min(60_000, Math.max(1_000, Math.floor(options.retention.maxAgeMs / 4)));
    const pruneTimer = setInterval(() => this.prune(), pruneEvery);
    pruneTimer.unref();
    // Nothing of the job manager may run once the node's store is closed.
    node.beforeStop(async () => {
      clearTimeout(reconcileTimer);
      clearInterval(pruneTimer);
      clearTimeout(this.pruneSoonTimer);
      this.stopped = true;
      this.deadlines.clear();
    });
  }

  // ---- submission ----------------------------------------------------------------------------------

  private async submit(msg: Envelope<'job_submit'>): Promise<void> {
    const { spec, after } = msg.body;
    if (after.includes(spec.job_id)) throw new Refusal('bad_request', `job ${spec.job_id} cannot wait for itself`);
    const reserved = [...inputsOf(spec), ...Object.values(spec.named_results)].find(isStagingName);
    if (reserved !== undefined) throw new Refusal('reserved_name', `job ${spec.job_id} names "${reserved}": names whose second segment is ".attempts" are reserved for staging job results; choose another name`);
    const digest = specDigest(spec);
    const existing = this.jobs.get(spec.job_id) ?? (this.replica.job(spec.job_id) as JobRecord | undefined);
    if (existing !== undefined) {
      if (existing.digest === digest && existing.owner === msg.from) {
        // A retried submission (the reply was lost): the same answer, nothing recorded twice.
        this.node.link.reply(msg, 'job_accepted', { job: viewOf(existing), created: false });
        return;
      }
      throw new Refusal('job_exists', `job id "${spec.job_id}" is already used${existing.owner === msg.from ? ' by a different job of yours' : ` by ${existing.owner}`}; give the job another job_id`);
    }
    const open = this.replica.unfinishedJobs(msg.from);
    if (open >= this.options.maxJobsPerClient) {
      this.node.link.counters.reject(this.node.log, 'jobs_refused_budget', msg.from, `${msg.from} has ${open} unfinished jobs`);
      throw new Refusal('over_budget', `${msg.from} already has ${open} unfinished jobs, its whole budget (budgets.max_jobs_per_client = ${this.options.maxJobsPerClient}); wait for some to end or cancel some`);
    }
    // A job's results become its submitter's data and are published whatever the budget (an outcome is
    // not refused after the work was done): writes stop at the budget, results may pass it, and a client
    // whose results have taken it past its budget starts no more jobs.
    const owned = this.replica.bytesOwned(msg.from);
    if (msg.role !== 'operator' && owned > this.options.maxBytesPerClient) {
      this.node.link.counters.reject(this.node.log, 'jobs_refused_budget', msg.from, `${msg.from} owns ${owned} bytes of named data`);
      throw new Refusal('over_budget', `${msg.from} owns ${owned} bytes of named data, more than its budget (budgets.max_bytes_per_client = ${this.options.maxBytesPerClient}), which its jobs' results would add to; delete some with \`ucp data rm\` or \`ucp remove\` first`);
    }
    // Last: it reads the index under the job's id, which the cheap checks above may spare. An operator may
    // change anyone's data anyway.
    const taken = msg.role === 'operator' ? undefined : this.foreignNameInTree(spec.job_id, msg.from);
    if (taken !== undefined) {
      const why = `job id "${spec.job_id}" would make "${taken.name}", which ${taken.owner} owns, part of the job's tree; give the job another job_id`;
      this.node.link.counters.reject(this.node.log, 'jobs_refused_tree_taken', msg.from, why);
      throw new Refusal('not_owner', why);
    }
    const now = Date.now();
    const job: Job = { job_id: spec.job_id, state: 'queued', priority: spec.priority, owner: msg.from, broker: this.node.link.id, created_at: now, updated_at: now, attempts: [], spec, digest, after: [...new Set(after)] };
    this.jobs.set(spec.job_id, job);
    // Placed while its record commits: only the client's acknowledgement waits for the commit. A crash
    // before it loses a submission nobody was told of (the client submits it again), and the result of
    // an assignment made meanwhile is refused as one of an unknown job. The placement is asked for before
    // the record is written, so it runs before LMDB closes this turn's batch: record and assignment
    // normally share one commit.
    this.enqueue(job, now);
    this.requestSchedule();
    const accepted = viewOf(job, this.whyQueued(job));
    await this.persist(job);
    this.node.link.counters.inc('jobs_submitted');
    this.node.link.reply(msg, 'job_accepted', { job: accepted, created: true });
  }

  /**
   * A name under `<jobId>/` that a node other than `owner` owns, if the index knows one. A job's tree is
   * its submitter's (data-ownership.ts): a job given the id of a prefix holding someone else's data would
   * make that data part of the job's tree, where its submitter and the job's results are at home.
   */
  private foreignNameInTree(jobId: string, owner: string): { name: string; owner: string } | undefined {
    let after: string | undefined;
    do {
      const page = this.replica.namePage(jobId, 256, after);
      for (const { name, located } of page.items) {
        if (name !== jobId && located.owner !== undefined && located.owner !== owner) return { name, owner: located.owner };
      }
      after = page.next;
    } while (after !== undefined);
    return undefined;
  }

  /**
   * Puts a queued job where it belongs: waiting for the jobs whose results it reads, in the queue for an
   * executor, or failed when one of those jobs failed.
   */
  private enqueue(job: Job, now: number, exclude?: ReadonlySet<string>): void {
    const deps = dependencyState(job, this.dependencyLookup);
    if (deps.kind === 'wait') {
      for (const producer of deps.jobs) waitFor(this.waitingOnJob, producer, job.job_id);
      for (const name of deps.names) waitFor(this.waitingOnName, name, job.job_id);
      return;
    }
    if (deps.kind === 'fail') {
      void this.serialized(job.job_id, () => this.failUnmet(job, deps.reason)).catch((err: Error) => this.node.log.error({ job: job.job_id, err: err.message }, 'failing a job whose input failed did not complete'));
      return;
    }
    this.queue.add({ jobId: job.job_id, priority: job.priority, requirements: job.spec.capabilities, enqueuedAt: now, ...(exclude !== undefined ? { exclude } : {}) });
  }

  private readonly dependencyLookup: DependencyLookup = {
    producer: (jobId) => this.jobs.get(jobId) ?? this.replica.job(jobId),
    located: (name) => this.data.locate(name)?.at,
    whyQueued: () => undefined,
  };

  /** A job this one reads from ended (here or on another broker): look again at the jobs waiting for it. */
  private producerEnded(jobId: string): void {
    this.recheck(this.waitingOnJob, jobId);
  }

  /** A name was stored or synced: jobs waiting for a producer's version of it may go now. */
  private nameArrived(name: string): void {
    this.recheck(this.waitingOnName, name);
  }

  private recheck(index: Map<string, Set<string>>, key: string): void {
    const waiting = index.get(key);
    if (waiting === undefined) return;
    index.delete(key);
    const now = Date.now();
    for (const jobId of waiting) {
      const job = this.jobs.get(jobId);
      if (job?.state === 'queued' && !this.queue.has(jobId)) this.enqueue(job, now);
    }
    this.requestSchedule();
  }

  /** A job whose input can never come (its producer failed) fails with that reason. */
  private async failUnmet(job: Job, reason: string): Promise<void> {
    if (job.state !== 'queued') return;
    job.state = 'failed';
    job.reason = reason.slice(0, 2_048);
    job.updated_at = Date.now();
    this.queue.remove(job.job_id);
    this.node.link.counters.inc('jobs_failed_inputs');
    await this.persist(job);
    this.notify(job);
  }

  // ---- placement -----------------------------------------------------------------------------------

  /** Schedules once per turn of the event loop, however many births, heartbeats and submissions came. */
  private requestSchedule(): void {
    if (this.scheduleRequested) return;
    this.scheduleRequested = true;
    setImmediate(() => {
      this.scheduleRequested = false;
      for (const { jobId, executor } of this.queue.schedule(this.executors(), Date.now())) {
        this.assign(jobId, executor).catch((err: Error) => this.node.log.error({ job: jobId, executor, err: err.message }, 'assignment failed'));
      }
    });
  }

  private executors(): ExecutorView[] {
    const views: ExecutorView[] = [];
    for (const peer of this.node.link.peers.peers()) {
      const capabilities = peer.heartbeat?.capabilities;
      if (!peer.alive || peer.role !== 'executor' || capabilities === undefined) continue;
      views.push({
        id: peer.id,
        capabilities,
        // Other brokers place jobs on the same executors: the jobs it says it runs for them count too.
        running: (this.active.get(peer.id)?.size ?? 0) + (peer.heartbeat?.running_jobs ?? []).filter((id) => !this.jobs.has(id)).length,
        slots: peer.heartbeat?.job_slots ?? Math.max(1, capabilities.cpu_cores),
        load: peer.heartbeat?.load ?? 0,
      });
    }
    return views;
  }

  private async assign(jobId: string, executor: string): Promise<void> {
    const job = this.jobs.get(jobId);
    if (job === undefined || job.state !== 'queued') return;
    const attempt = recordAssignment(job, executor, Date.now());
    this.occupy(executor, jobId);
    this.armDeadline(job);
    const versions = this.versionsOf(job);
    // Written in the same turn as the outbox entry, so both commit in one LMDB batch: a crash cannot keep
    // the assignment message without the record of it. A submission placed in the turn it arrived is
    // written here once.
    this.recordNow(job).catch((err: Error) => this.node.log.error({ job: jobId, err: err.message }, 'recording an assignment failed'));
    // The client hears when the job starts running; an update per assignment would only add traffic.
    const sent = this.node.link.sendDurableNow(executor, 'job_assign', { attempt, spec: job.spec, versions });
    this.assignMessages.set(`${jobId}#${attempt}`, sent.id);
    await sent.stored;
  }

  /**
   * An executor that ends an attempt quickly sends no acknowledgement of the assignment: its result is
   * one (it commits its record of the assignment with the result).
   */
  private resultAnswers(msg: Envelope<'job_result'>): void {
    const key = `${msg.body.job_id}#${msg.body.attempt}`;
    const id = this.assignMessages.get(key);
    if (id === undefined) return;
    // Only from the executor the assignment went to; anyone else's result acknowledges nothing.
    if (this.node.link.acknowledgedBy(id, msg.from)) this.assignMessages.delete(key);
  }

  private occupy(executor: string, jobId: string): void {
    let jobs = this.active.get(executor);
    if (jobs === undefined) this.active.set(executor, (jobs = new Set()));
    jobs.add(jobId);
  }

  private release(executor: string, jobId: string): void {
    this.active.get(executor)?.delete(jobId);
  }

  /** Why a queued job is not running: what it waits for, in words (`ucp job`, `ucp jobs`). */
  private whyQueued(job: Job, nested = false): string | undefined {
    if (job.state !== 'queued') return undefined;
    if (!this.queue.has(job.job_id)) {
      // A waiting producer explains itself one level deep; the level below is `ucp job` of that job.
      const lookup: DependencyLookup = nested
        ? this.dependencyLookup
        : {
            ...this.dependencyLookup,
            whyQueued: (id) => {
              const own = this.jobs.get(id);
              return own !== undefined ? this.whyQueued(own, true) : undefined;
            },
          };
      const deps = dependencyState(job, lookup);
      if (deps.kind !== 'ready') return deps.reason;
    }
    return this.queue.why(job.job_id, this.executors()) ?? job.reason;
  }

  // ---- progress and results ------------------------------------------------------------------------

  private started(msg: Envelope<'job_started'>): void {
    // A start reported after the job finished (a lost attempt's, late) changes nothing.
    if (!this.jobs.has(msg.body.job_id) && this.finishedRecord(msg.body.job_id) !== undefined) return;
    const job = this.jobs.get(msg.body.job_id);
    const attempt = job?.attempts[msg.body.attempt - 1];
    if (job === undefined || attempt === undefined || attempt.executor !== msg.from) {
      this.node.link.counters.reject(this.node.log, 'job_started_unknown', msg.from, `${msg.from} reported starting attempt ${msg.body.attempt} of job ${msg.body.job_id}, which it was not given`);
      return;
    }
    if (attempt.outcome !== 'running' || isFinal(job.state)) return;
    attempt.started_at = Date.now();
    if (currentAttempt(job) === attempt) job.state = 'running';
    job.updated_at = attempt.started_at;
    // Not written on its own: progress is worth a message, not a transaction. The next write of the
    // record carries it; a broker that restarts before then shows the attempt as assigned.
    this.notify(job);
  }

  /**
   * First come, first served: the first result of any attempt this broker assigned is accepted and
   * committed before the executor hears so (by the acknowledgement); every later one is rejected naming
   * the accepted attempt. A redelivered submission gets the same answer again.
   */
  private async decide(msg: Envelope<'job_result'>): Promise<void> {
    const result = msg.body;
    if (!this.jobs.has(result.job_id)) {
      const synced = this.replica.job(result.job_id);
      if (synced?.broker !== undefined && synced.broker !== this.node.link.id) {
        // The executor may have noticed the loss of the job's broker before this broker did.
        if (this.node.link.peers.get(synced.broker)?.alive !== true && !this.adoptIfMine(synced.broker)) {
          // Its adopter is another broker: keep the result until the executor sends it there.
          throw new Error(`job ${result.job_id} belongs to ${synced.broker}, which another broker adopts`);
        }
        if (!this.jobs.has(result.job_id)) {
          // Handed over to a live broker (it adopted the job while this one was cut off), which has
          // redeployed it: this result came too late to the wrong arbiter.
          this.node.link.counters.inc('results_rejected');
          this.verdict(msg, `job ${result.job_id} is now managed by ${synced.broker}, which placed it again`);
          return;
        }
      }
    }
    const job = this.jobs.get(result.job_id) ?? this.finishedRecord(result.job_id);
    const digest = resultDigest(result);
    const decision = arbitrate(job, result.job_id, { from: msg.from, attempt: result.attempt, outcome: result.outcome, digest });
    const counters = this.node.link.counters;
    const now = Date.now();
    if (decision.kind !== 'reject' || !decision.unauthorized) this.seal(result.job_id, result.attempt);
    switch (decision.kind) {
      case 'redelivered':
        counters.inc('results_redelivered');
        return;
      case 'conflict':
        if (recordConflict(job!, result.attempt, msg.from, digest, now)) {
          counters.reject(this.node.log, 'results_conflicting', msg.from, `${msg.from} reported attempt ${result.attempt} of job ${result.job_id} again with a different result`);
          await this.persist(job!);
          this.notify(job!);
        }
        this.verdict(msg, decision.reason, decision.acceptedAttempt);
        return;
      case 'reject':
        if (decision.unauthorized) counters.reject(this.node.log, 'results_unauthorized', msg.from, decision.reason);
        else counters.inc('results_rejected');
        if (job !== undefined && !decision.unauthorized) {
          const rejected = recordRejection(job, result.attempt, decision.reason, now);
          if (rejected && currentAttempt(job)?.executor !== msg.from) this.release(msg.from, job.job_id);
          const killed = decision.killed === true && recordKill(job, result.attempt);
          if (killed) this.stopKiller(job);
          if (rejected || killed) await this.persist(job);
          // Only a rejection of the sender's own attempt: an unauthorized sender's names are not its own.
          this.discardStaging(stagingPrefix(result.job_id, result.attempt));
        }
        this.verdict(msg, decision.reason, decision.acceptedAttempt);
        return;
      case 'retry':
        await this.retry(job!, result.attempt, `${decision.reason}: ${result.message}`, decision.killed);
        this.discardStaging(stagingPrefix(result.job_id, result.attempt));
        this.verdict(msg, `not a result of the job (${result.outcome}); it runs again elsewhere`);
        return;
      case 'accept':
        try {
          await this.accept(job!, msg, digest);
        } catch (err) {
          if (!(err instanceof BadStagedReference)) throw err;
          // Nothing of it was published. The job runs again elsewhere, as after an executor's failure.
          counters.reject(this.node.log, 'results_bad_reference', msg.from, `${msg.from} reported attempt ${result.attempt} of job ${result.job_id} with a staged result that cannot be published: ${err.message}`);
          await this.refuseStaged(job!, result.attempt, `its staged result cannot be published: ${err.message}`);
          this.discardStaging(stagingPrefix(result.job_id, result.attempt));
          this.verdict(msg, `refused: a staged result cannot be published: ${err.message}; the job runs again elsewhere`);
          return;
        }
        counters.inc('results_accepted');
        this.node.log.info({ job: result.job_id, attempt: result.attempt, executor: msg.from, outcome: result.outcome, exitCode: result.exit_code }, 'result accepted');
    }
  }

  /**
   * Publishes one of a job's results under its submitter's name: its own `<jobId>/` tree always, a name
   * outside it only if the submitter may write that name (PROTOCOL.md, "Data versions and owners"). A
   * name someone else owns is left alone, counted and logged; the job's other results still count.
   */
  /** Whether a staged result may be published as `name`: in the job's tree, or a name its submitter owns or nobody does. */
  private mayPublish(job: Job, name: string): boolean {
    const owner = this.data.locate(name)?.owner;
    if (name.startsWith(`${job.job_id}/`) || owner === undefined || owner === job.owner) return true;
    this.node.link.counters.reject(this.node.log, 'results_name_not_owned', job.owner, `job ${job.job_id}: "${name}" is owned by ${owner}`);
    return false;
  }

  private async publish(job: Job, name: string, bytes: Uint8Array, executor: string): Promise<{ store: string; at: [number, number] } | undefined> {
    try {
      // The index entry commits with the accepted result that names it (accept() persists in this turn).
      // The archive's name is the job's own and is written over whoever holds it; any other name, in the
      // job's tree or not, only if the submitter may write it (a name in the tree written by another node
      // before the job's id was taken stays that node's).
      return await this.data.store(name, bytes, executor, { owner: job.owner, replace: name === resultArchiveName(job.job_id) }, { withCaller: true });
    } catch (err) {
      if (!(err instanceof RemoteError && err.code === 'not_owner')) throw err;
      this.node.link.counters.reject(this.node.log, 'results_name_not_owned', job.owner, `job ${job.job_id}: ${err.message}`);
      return undefined;
    }
  }

  /** `digest`: the result's resultDigest(), already taken to arbitrate it. */
  private async accept(job: Job, msg: Envelope<'job_result'>, digest: string): Promise<void> {
    const result = msg.body;
    const arrived = Date.now();
    // Published before the decision is recorded: a crash in between re-runs this on the redelivery.
    const named = result.named.filter((item) => {
      if (job.spec.named_results[item.path] === item.name) return true;
      this.node.link.counters.reject(this.node.log, 'results_unexpected_name', msg.from, `${msg.from} tried to publish "${item.name}", which job ${job.job_id} does not name as a result`);
      return false;
    });
    // REC keeps no archive for a job without a results receiver; its named results are published all the same.
    const keep = job.spec.keep_archive !== false;
    const archive = keep ? resultArchiveName(job.job_id) : undefined;
    // The archive first: a named result given the archive's name does not replace it.
    const items = [...(archive !== undefined ? [{ name: archive, content: result.archive }] : []), ...named.map((item) => ({ name: item.name, content: item.bytes }))];
    const plan = planPublication(job.job_id, result.attempt, items);
    if ('problem' in plan) throw new BadStagedReference(plan.problem);
    // Staged objects are checked and renamed into place first: a bad reference then publishes nothing.
    // A named result outside the job's tree that another node owns is left out, as for inline results.
    const moves = plan.moves.filter((m) => this.mayPublish(job, m.to));
    const at = this.node.link.now();
    const version = { at: [at.wall, at.logical] as [number, number], writer: msg.from };
    const moved = moves.length > 0 ? await this.data.promote(moves, { ...version, owner: job.owner }) : {};
    // A small archive stays in the record: the decision then commits without a datastore round trip, and
    // the archive is on every broker for as long as the record is.
    const kept = plan.inline.find((item) => item.name === archive && item.bytes.byteLength <= this.options.metadataArchiveBytes);
    const toStore = plan.inline.filter((item) => item !== kept);
    const stored = await Promise.all(toStore.map((item) => this.publish(job, item.name, item.bytes, msg.from)));
    const published: NonNullable<NonNullable<Job['result']>['published']> = {
      ...moved,
      ...Object.fromEntries(toStore.flatMap((item, i) => (stored[i] !== undefined ? [[item.name, { store: stored[i].store, size: item.bytes.byteLength, at: stored[i].at }]] : []))),
    };
    // Copied: the message's bytes may be a view into its whole receive buffer.
    if (kept !== undefined) published[kept.name] = { ...this.data.keepInRecord(kept.name, kept.bytes.byteLength, msg.from, job.owner), size: kept.bytes.byteLength, bytes: kept.bytes.slice() };
    const archiveBytes = archive !== undefined ? (plan.sizes.get(archive) ?? 0) : 0;
    // The decision's own place in causal order, for settling two acceptances made apart (a partition).
    const decided = this.node.link.stamp();

    const cancelled = recordAcceptance(
      job,
      result.attempt,
      {
        attempt: result.attempt,
        executor: msg.from,
        outcome: result.outcome,
        ...(result.exit_code !== undefined ? { exit_code: result.exit_code } : {}),
        message: result.message,
        duration_ms: result.duration_ms,
        ...(archive !== undefined ? { archive } : {}),
        archive_bytes: archiveBytes,
        files: result.files,
        missing: result.missing,
        named_results: [...new Set(named.map((item) => item.name))],
        decided_by: this.node.link.id,
        decided_at: [decided.hlc.wall, decided.hlc.logical],
        decided_vc: decided.vc,
        published,
        digest,
      },
      arrived,
      Date.now(),
    );
    for (const a of job.attempts) this.release(a.executor, job.job_id);
    this.deadlines.disarm(job.job_id);
    // A lost attempt that delivered while the job waited to be placed again: it needs no new attempt.
    this.queue.remove(job.job_id);
    // The freed slot takes its next job while this decision commits (normally in the same LMDB batch):
    // another job's assignment does not depend on this one's outcome.
    this.requestSchedule();
    await this.persist(job);
    for (const a of cancelled) this.node.link.send(a.executor, 'job_cancel', { job_id: job.job_id, attempt: a.attempt, reason: a.reason ?? 'another attempt delivered first' });
    this.notify(job, keep && result.archive instanceof Uint8Array && result.archive.byteLength <= this.options.inlineResultBytes ? result.archive : undefined);
  }

  /**
   * The submitter (or an operator) cancels a job: a queued job leaves the queue, a running one's attempts are stopped
   * (their executors get job_cancel and send no result), and the job fails saying who cancelled it; jobs
   * that read its results fail in turn.
   */
  private async withdraw(msg: Envelope<'job_withdraw'>): Promise<void> {
    const jobId = msg.body.job_id;
    await this.serialized(jobId, async () => {
      const job = this.jobs.get(jobId);
      if (job === undefined) {
        // Finished jobs live in the replica only; unfinished ones there belong to another broker.
        const synced = this.replica.job(jobId);
        if (synced === undefined) throw new Refusal('not_found', `no job "${jobId}" is known to ${this.node.link.id}`);
        const ended = isFinal(synced.state) ? mayWithdraw(synced, msg.from, msg.role === 'operator') : undefined;
        if (ended !== undefined) throw new Refusal(ended.code, ended.message);
        throw new Refusal('not_managed_here', `job ${jobId} is managed by ${synced.broker ?? 'another broker'}, not ${this.node.link.id}`);
      }
      const refused = mayWithdraw(job, msg.from, msg.role === 'operator');
      if (refused !== undefined) throw new Refusal(refused.code, refused.message);
      const stopped = recordWithdrawal(job, msg.from, Date.now());
      this.queue.remove(jobId);
      this.deadlines.disarm(jobId);
      for (const a of job.attempts) this.release(a.executor, jobId);
      await this.persist(job);
      for (const a of stopped) this.node.link.send(a.executor, 'job_cancel', { job_id: jobId, attempt: a.attempt, reason: a.reason ?? 'cancelled by its submitter' });
      this.node.link.counters.inc('jobs_withdrawn');
      this.node.log.info({ job: jobId, by: msg.from, stopped: stopped.length }, msg.from === job.owner ? 'job cancelled by its submitter' : 'job cancelled by an operator');
      this.node.link.reply(msg, 'job_info', { job: viewOf(job) });
      this.notify(job);
      this.requestSchedule();
    });
  }

  /**
   * The current attempt's executor failed on its own account, or died running it: run the job again
   * elsewhere, unless its executors have now died running it twice in a row.
   */
  private async retry(job: Job, attempt: number, why: string, killed: boolean): Promise<void> {
    const executor = job.attempts[attempt - 1]!.executor;
    recordFailure(job, attempt, why, Date.now());
    this.release(executor, job.job_id);
    this.deadlines.disarm(job.job_id);
    if (killed) recordKill(job, attempt);
    if (!this.stopKiller(job)) {
      // It failed there, not went missing: it is kept from that executor for good.
      this.keptFrom.set(job.job_id, { executor });
      this.placeAgain(job, why);
    }
    await this.persist(job);
  }

  /**
   * An attempt's result could not be published as it said (nothing of it was): if it is the attempt the
   * job waits on, the job runs again elsewhere, as after an executor's failure; a lost attempt's is
   * only marked rejected, and the job goes on as it was.
   */
  private async refuseStaged(job: Job, attempt: number, why: string): Promise<void> {
    const a = job.attempts[attempt - 1];
    if (a !== undefined && a === currentAttempt(job) && a.outcome === 'running') {
      await this.retry(job, attempt, why, false);
      return;
    }
    if (!recordRejection(job, attempt, why, Date.now())) return;
    if (currentAttempt(job)?.executor !== a?.executor && a !== undefined) this.release(a.executor, job.job_id);
    await this.persist(job);
  }

  /** Fails a job whose executors died running it twice in a row, cancelling what still runs. */
  private stopKiller(job: Job): boolean {
    if (isFinal(job.state) || killStreak(job) < KILLS_IN_A_ROW) return false;
    const cancelled = failKiller(job, KILLS_IN_A_ROW, Date.now());
    this.queue.remove(job.job_id);
    this.deadlines.disarm(job.job_id);
    for (const a of job.attempts) this.release(a.executor, job.job_id);
    for (const a of cancelled) this.node.link.send(a.executor, 'job_cancel', { job_id: job.job_id, attempt: a.attempt, reason: a.reason ?? 'the job killed its executors' });
    this.node.link.counters.inc('jobs_failed_killers');
    this.node.log.warn({ job: job.job_id, reason: job.reason }, 'job killed its executors twice in a row; not placing it again');
    this.notify(job);
    return true;
  }

  /**
   * Arms the broker's own deadline for the job's current attempt: its timeout plus a margin for fetching
   * inputs and delivering the result. An executor that never reports cannot keep the job running forever.
   */
  private armDeadline(job: Job): void {
    const attempt = currentAttempt(job);
    if (attempt === undefined || attempt.outcome !== 'running') return;
    const limitMs = job.spec.timeout_s * 1_000 + this.options.deadlineMarginMs;
    this.deadlines.arm(job.job_id, attempt.assigned_at + limitMs, () => {
      void this.serialized(job.job_id, async () => {
        const current = this.jobs.get(job.job_id);
        const reason = `no result from ${attempt.executor} for attempt ${attempt.attempt} within the job's timeout of ${job.spec.timeout_s} s plus scheduler.deadline_margin_s (${this.options.deadlineMarginMs / 1_000} s)`;
        if (current === undefined || !recordDeadline(current, attempt.attempt, reason, Date.now())) return;
        this.release(attempt.executor, job.job_id);
        this.node.link.send(attempt.executor, 'job_cancel', { job_id: job.job_id, attempt: attempt.attempt, reason: 'the broker gave up waiting for this attempt' });
        this.node.link.counters.inc('jobs_past_deadline');
        this.node.log.warn({ job: job.job_id, attempt: attempt.attempt, executor: attempt.executor }, 'job failed: no result by its deadline');
        await this.persist(current);
        this.notify(current);
        this.requestSchedule();
      }).catch((err: Error) => this.node.log.error({ job: job.job_id, err: err.message }, 'failing a job past its deadline failed'));
    });
  }

  /**
   * An executor is gone (its will, silence, a clean stop or a restart): each job running there becomes a
   * new attempt elsewhere, not on it, after scheduler.redeploy_delay_ms. `cutOff` is set when the same
   * process may come back (it was seen go down, not restart): what it was last heard running then, so
   * readmit() can tell whether it still runs the lost attempt when it does.
   */
  private lose(executor: string, why: string, cutOff?: { incarnation: number; heartbeat: number }): void {
    // Assignments it never acknowledged would make it run stale attempts when it comes back.
    const withdrawn = this.node.link.withdraw(executor, 'job_assign');
    if (withdrawn > 0) this.node.link.counters.inc('assignments_withdrawn', withdrawn);
    const jobs = [...(this.active.get(executor) ?? [])];
    this.active.delete(executor);
    if (jobs.length === 0) return;
    this.node.log.warn({ executor, jobs: jobs.length, why }, 'executor lost; redeploying its jobs');
    for (const jobId of jobs) {
      void this.serialized(jobId, async () => {
        const job = this.jobs.get(jobId);
        if (job === undefined || !recordLoss(job, executor, why, Date.now())) return;
        this.deadlines.disarm(jobId);
        this.node.link.counters.inc('jobs_redeployed');
        this.keptFrom.set(jobId, { executor, ...(cutOff !== undefined ? cutOff : {}) });
        this.placeAgain(job, why);
        await this.persist(job);
      }).catch((err: Error) => this.node.log.error({ job: jobId, err: err.message }, 'redeploying failed'));
    }
  }

  /** Queues a job that lost its attempt (or fails it when it has had its redeployments). */
  private placeAgain(job: Job, why: string): void {
    const state = requeue(job, this.options.maxRedeploys, why, Date.now());
    this.notify(job);
    if (state === 'failed') return;
    const enqueue = () => {
      if (job.state !== 'queued') return;
      // Read when it is queued: the executor may have been readmitted during the delay.
      const lost = this.keptFrom.get(job.job_id);
      this.enqueue(job, Date.now(), lost !== undefined ? new Set([lost.executor]) : undefined);
      this.requestSchedule();
    };
    if (this.options.redeployDelayMs > 0) setTimeout(enqueue, this.options.redeployDelayMs).unref();
    else enqueue();
  }

  /**
   * An executor that was cut off is back, the same process. A job lost on it is kept from it only while it
   * may still run the lost attempt: once a heartbeat sent after the loss lists the job neither as running
   * nor as reporting (a result not yet acknowledged), the assignment never reached it, and the job may go
   * there again. Without this, a job whose only able executor had a gap in its link waited for another
   * executor forever.
   */
  private readmit(peer: Readonly<PeerState>): void {
    const heartbeat = peer.heartbeat;
    for (const [jobId, lost] of this.keptFrom) {
      if (this.jobs.get(jobId)?.state !== 'queued') {
        // Placed again, ended, or handed over since.
        this.keptFrom.delete(jobId);
        continue;
      }
      if (lost.executor !== peer.id || !peer.alive || lost.incarnation !== peer.incarnation || heartbeat === undefined) continue;
      // A result being decided (most likely the lost attempt's, just finished): look again next heartbeat.
      if (this.locks.has(jobId)) continue;
      if (heartbeat.seq <= (lost.heartbeat ?? Infinity)) continue;
      if (heartbeat.running_jobs?.includes(jobId) === true || heartbeat.reporting_jobs?.includes(jobId) === true) continue;
      this.keptFrom.delete(jobId);
      this.queue.readmit(jobId, peer.id);
      this.node.link.counters.inc('jobs_readmitted');
      this.node.log.info({ job: jobId, executor: peer.id }, 'executor back without the lost attempt; the job may run there again');
    }
  }

  /**
   * A synced record of a job this broker manages replaced its own. If another broker's acceptance beat
   * this broker's (both accepted a result while partitioned), this one's is superseded: the client is
   * told. If the record names another broker (it adopted the job meanwhile), the job is handed over.
   */
  private merged(synced: SyncedJob, previous: SyncedJob | undefined): void {
    const link = this.node.link;
    // Finished jobs are not kept in memory: the record the sync replaced stands for this broker's own.
    const held = this.jobs.get(synced.job_id);
    const mine = held ?? (previous?.broker === link.id ? previous : undefined);
    if (mine === undefined) return;
    const ours = mine.result;
    if (ours !== undefined && synced.result !== undefined && (ours.attempt !== synced.result.attempt || ours.executor !== synced.result.executor)) {
      link.counters.inc('acceptances_superseded');
      this.node.log.warn({ job: synced.job_id, ours: ours.attempt, winner: synced.result.attempt, by: synced.result.decided_by }, 'our acceptance was superseded by an earlier one');
      link.send(synced.owner, 'job_update', { job: viewOf(synced as JobRecord) });
    }
    if (synced.broker !== link.id) {
      if (held === undefined) return;
      this.jobs.delete(synced.job_id);
      this.queue.remove(synced.job_id);
      this.deadlines.disarm(synced.job_id);
      for (const a of mine.attempts) this.release(a.executor, synced.job_id);
      link.counters.inc('jobs_handed_over');
      return;
    }
    if (synced.result === undefined) return;
    // A final record: the merged one is complete (its result, the acceptances it beat), and lives in the
    // replica only.
    if (held !== undefined) this.forgetFinished(held);
    if ((synced.superseded?.length ?? 0) > (mine.superseded?.length ?? 0) && synced.result.decided_by === link.id) this.reassertPublished(synced);
  }

  /**
   * After a partition both sides may have stored results under the same names; the index then points
   * wherever the later write went. The broker whose acceptance won points the names back at its copies.
   */
  private reassertPublished(job: SyncedJob): void {
    for (const [name, { store, size, at, bytes }] of Object.entries(job.result?.published ?? {})) {
      const now = this.data.locate(name);
      if (now?.store !== store || now.at[0] !== at[0] || now.at[1] !== at[1]) {
        void this.replica.setName(name, { store, size, at, owner: job.owner, ...(bytes !== undefined ? { inline: true } : {}) });
      }
    }
  }

  /** Whether an executor this broker sees can run a job that needs this, busy or not. */
  private canRun(needs: Requirements): boolean {
    return this.executors().some((e) => unmetRequirement(e.capabilities, needs) === undefined);
  }

  /** A peer broker offers a job it cannot place: take it if an executor this broker sees can run it. */
  private async takeDelegated(msg: Envelope<'job_delegate'>): Promise<void> {
    const offered = msg.body.job;
    const known = this.jobs.get(offered.job_id);
    if (known !== undefined) {
      this.node.link.reply(msg, 'job_accepted', { job: viewOf(known), created: false });
      return;
    }
    if (!this.canRun(offered.spec.capabilities)) {
      throw new Refusal('cannot_place', `${this.node.link.id} sees no executor that can run job ${offered.job_id} either`);
    }
    const job = normalized(offered);
    job.broker = this.node.link.id;
    job.updated_at = Date.now();
    job.reason = `taken over from ${msg.from}, which has no executor that can run it`;
    this.restore(job);
    await this.persist(job);
    this.node.link.counters.inc('jobs_taken_over');
    this.node.log.info({ job: job.job_id, from: msg.from }, 'took over a job a peer broker cannot place');
    this.node.link.reply(msg, 'job_accepted', { job: viewOf(job), created: true });
    this.requestSchedule();
  }

  /** Live brokers, this one included. */
  private liveBrokers(): string[] {
    const live = this.node.link.peers.alive('broker').map((p) => p.id);
    return [...new Set([...live, this.node.link.id])];
  }

  /** Brokers named as managing unfinished jobs in the replica that are not alive. */
  private orphanOwners(): Set<string> {
    const owners = new Set<string>();
    for (const jobId of this.replica.jobIds()) {
      const job = this.replica.job(jobId);
      if (job === undefined || job.broker === undefined || job.broker === this.node.link.id || isFinal(job.state)) continue;
      if (this.node.link.peers.get(job.broker)?.alive !== true) owners.add(job.broker);
    }
    return owners;
  }

  /**
   * A broker is lost: if this broker is its adopter (rendezvous over the live brokers), it takes over the
   * lost broker's unfinished jobs from the replicated metadata: it arbitrates their results from now on
   * (first come, first served continues from the synced decisions), resends assignments the lost broker
   * may not have delivered, and redeploys what ran on executors that are gone. Returns whether it adopts.
   */
  private adoptIfMine(lost: string): boolean {
    if (this.node.link.peers.get(lost)?.alive === true) return false;
    if (adopterOf(lost, this.liveBrokers()) !== this.node.link.id) return false;
    const now = Date.now();
    let adopted = 0;
    for (const jobId of this.replica.jobIds()) {
      const synced = this.replica.job(jobId);
      if (synced?.broker !== lost || isFinal(synced.state) || this.jobs.has(jobId)) continue;
      const job = normalized(synced);
      job.broker = this.node.link.id;
      job.updated_at = now;
      this.restore(job);
      adopted++;
      const attempt = currentAttempt(job);
      if (attempt?.outcome === 'running' && this.node.link.peers.get(attempt.executor)?.alive === true) {
        // Its executor ignores an assignment it already holds, and runs one it never got.
        void this.node.link.sendDurable(attempt.executor, 'job_assign', { attempt: attempt.attempt, spec: job.spec, versions: this.versionsOf(job) });
      }
      void this.persist(job).catch((err: Error) => this.node.log.error({ job: jobId, err: err.message }, 'recording an adopted job failed'));
    }
    if (adopted > 0) {
      this.node.link.counters.inc('jobs_adopted', adopted);
      this.node.log.warn({ lost, jobs: adopted }, 'adopted the jobs of a lost broker');
      this.reconcile(`was not alive when ${this.node.link.id} adopted its jobs from ${lost}`);
      this.requestSchedule();
    }
    return true;
  }

  private versionsOf(job: Job): Record<string, [number, number]> {
    const versions: Record<string, [number, number]> = {};
    for (const name of inputsOf(job.spec)) {
      const at = this.data.locate(name)?.at;
      if (at !== undefined) versions[name] = at;
    }
    return versions;
  }

  /** After a restart or an adoption: jobs on executors that are not alive are lost. */
  private reconcile(why: string): void {
    for (const executor of [...this.active.keys()]) {
      const peer = this.node.link.peers.get(executor);
      if (peer === undefined) this.lose(executor, `${executor} ${why}`);
      else if (!peer.alive) this.lose(executor, `${executor} ${why}`, { incarnation: peer.incarnation, heartbeat: peer.heartbeat?.seq ?? -1 });
    }
  }

  private verdict(msg: Envelope<'job_result'>, reason: string, acceptedAttempt?: number): void {
    this.node.link.send(msg.from, 'job_verdict', {
      job_id: msg.body.job_id,
      attempt: msg.body.attempt,
      verdict: 'rejected',
      reason: reason.slice(0, 1_024),
      ...(acceptedAttempt !== undefined ? { accepted_attempt: acceptedAttempt } : {}),
    });
  }

  /**
   * Removes one job, or all of a client's, from the cluster. A client removes its own jobs; an operator
   * anyone's (so a flood can be cleared). An unfinished job this broker manages is stopped first: its
   * running attempts are cancelled and its final record (failed, "removed by ...") goes to every broker,
   * so it no longer counts against its owner's budget. The record then leaves this broker's replica with
   * its data at once, and the other brokers' when its retention ends, as every finished job does: no
   * deletion travels. An unfinished job another live broker manages is left to that broker.
   */
  private async remove(msg: Envelope<'job_remove'>): Promise<void> {
    const { job_id: jobId, owner } = msg.body;
    if ((jobId === undefined) === (owner === undefined)) throw new Refusal('bad_request', 'say which jobs to remove: a job id or an owner');
    const operator = msg.role === 'operator';
    const refuse = (whose: string, what: string) => {
      this.node.link.counters.reject(this.node.log, 'jobs_refused_remove', msg.from, `${msg.from} tried to remove ${what}`);
      return new Refusal('forbidden', `${what} was submitted by ${whose}; only ${whose} or an operator can remove it`);
    };
    let ids: string[];
    if (jobId !== undefined) {
      const job = this.jobs.get(jobId) ?? this.replica.job(jobId);
      if (job === undefined) throw new Refusal('not_found', `no job "${jobId}" is known to ${this.node.link.id}`);
      if (job.owner !== msg.from && !operator) throw refuse(job.owner, `job ${jobId}`);
      ids = [jobId];
    } else {
      if (owner !== msg.from && !operator) throw refuse(owner!, `the jobs of ${owner}`);
      ids = [...this.replica.jobIds()].filter((id) => (this.jobs.get(id) ?? this.replica.job(id))?.owner === owner);
    }
    let removed = 0;
    const elsewhere: string[] = [];
    for (const id of ids) {
      await this.serialized(id, async () => {
        const synced = this.replica.job(id);
        const managed = this.jobs.get(id);
        if (managed === undefined && synced !== undefined && !isFinal(synced.state) && synced.broker !== this.node.link.id && this.node.link.peers.get(synced.broker ?? '')?.alive === true) {
          elsewhere.push(`${id} (${synced.broker})`);
          return;
        }
        if (managed !== undefined) await this.stopRemoved(managed, `removed by ${msg.from}`);
        const dropped = this.replica.dropJob(id);
        if (dropped !== undefined && this.managesData(dropped)) await this.data.discard(dropped.names);
        removed++;
      });
    }
    await this.node.store.durable();
    this.node.link.counters.inc('jobs_removed', removed);
    this.node.log.info({ by: msg.from, jobs: removed, ...(owner !== undefined ? { owner } : { job: jobId }) }, 'jobs removed');
    if (removed === 0 && elsewhere.length > 0) throw new Refusal('not_managed', `managed by other brokers; remove it there: ${elsewhere.slice(0, 20).join(', ')}`);
    this.node.link.reply(msg, 'job_removed', { count: removed });
  }

  /** Ends a job this broker manages because it is being removed: attempts cancelled, the record final. */
  private async stopRemoved(job: Job, why: string): Promise<void> {
    const now = Date.now();
    for (const a of job.attempts) {
      if (a.outcome === 'running') {
        this.node.link.send(a.executor, 'job_cancel', { job_id: job.job_id, attempt: a.attempt, reason: why.slice(0, 1_024) });
        a.outcome = 'cancelled';
        a.ended_at = now;
        a.reason = why;
      }
      this.release(a.executor, job.job_id);
    }
    this.deadlines.disarm(job.job_id);
    this.queue.remove(job.job_id);
    this.jobs.delete(job.job_id);
    if (!isFinal(job.state)) {
      job.state = 'failed';
      job.reason = why;
      job.updated_at = now;
      await this.replica.setJob(job as SyncedJob);
      this.notify(job);
    }
    this.requestSchedule();
  }

  // ---- bookkeeping ---------------------------------------------------------------------------------

  /**
   * Tells the owning client, and once the job ended the clients it names as receivers; they ask again
   * (job_query) if this is lost, so it need not be durable.
   */
  private notify(job: Job, archive?: Uint8Array): void {
    const update = { job: viewOf(job), ...(archive !== undefined ? { archive } : {}) };
    this.node.link.send(job.owner, 'job_update', update);
    if (isFinal(job.state)) for (const receiver of job.spec.receivers ?? []) if (receiver !== job.owner) this.node.link.send(receiver, 'job_update', update);
  }

  private async persist(job: Job): Promise<void> {
    const ended = isFinal(job.state);
    await this.node.store.durableAfter(this.record(job));
    if (ended) {
      this.forgetFinished(job);
      this.pruneIfOverCount();
      // Jobs that read this one's results wait for exactly this: its end, recorded.
      this.producerEnded(job.job_id);
      // Whatever attempts staged and did not publish: the job has ended, nothing of it can be accepted.
      this.discardStaging(stagingRoot(job.job_id));
    }
  }

  /**
   * Writes the job's record as it stands when the turn's other work is done. A job changed twice in one
   * turn (submitted and placed, or its result accepted and its slot given to the next job) is written once,
   * with the state it reached: one record, one index entry and one sync change instead of two. The
   * promise covers the turn's writes, including those assign() made of these jobs in the meantime.
   */
  private record(job: Job): Promise<void> {
    // A change after an earlier write of this turn (recordNow) is written again.
    this.unwritten.set(job.job_id, { job });
    this.recorded ??= new Promise<void>((resolve, reject) => {
      setImmediate(() => {
        const pending = [...this.unwritten.values()];
        this.unwritten.clear();
        this.recorded = undefined;
        try {
          Promise.all(pending.map((p) => p.written ?? this.replica.setJob(p.job as SyncedJob))).then(() => resolve(), reject);
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    return this.recorded;
  }

  /** Writes the job's record now (see record()), in place of a write pending for it in this turn. */
  private recordNow(job: Job): Promise<void> {
    const written = this.replica.setJob(job as SyncedJob);
    const pending = this.unwritten.get(job.job_id);
    if (pending !== undefined) pending.written = written;
    return written;
  }

  /**
   * Whether `writer` may write the staging name `name` now: only the executor assigned that attempt,
   * while the attempt may still deliver (running, or lost but not given up) and before its result came.
   */
  private mayStage(writer: string, name: string): string | undefined {
    const owner = stagingOwner(name);
    if (owner === undefined) return 'staging names have the form <job>/.attempts/<attempt>/<name>';
    const { jobId, attempt } = owner;
    const job = this.jobs.get(jobId) ?? this.replica.job(jobId);
    if (job === undefined) return `there is no job ${jobId}`;
    const assigned = job.attempts[attempt - 1];
    if (assigned === undefined || assigned.executor !== writer) return `${writer} was not assigned attempt ${attempt} of job ${jobId}`;
    if (isFinal(job.state)) return `job ${jobId} has ended (${job.state})`;
    if (assigned.outcome !== 'running' && assigned.outcome !== 'lost') return `attempt ${attempt} of job ${jobId} has ended (${assigned.outcome})`;
    if (this.sealed.get(jobId)?.has(attempt) === true) return `attempt ${attempt} of job ${jobId} has already reported its result`;
    return undefined;
  }

  private seal(jobId: string, attempt: number): void {
    let attempts = this.sealed.get(jobId);
    if (attempts === undefined) this.sealed.set(jobId, (attempts = new Set()));
    attempts.add(attempt);
  }

  /** Deletes staged objects under `prefix` in the background; what it cannot reach goes with retention. */
  private discardStaging(prefix: string): void {
    if (this.stopped) return;
    void this.data
      .discardStaged(prefix)
      .then((count) => {
        if (count > 0) this.node.link.counters.inc('staged_results_discarded', count);
      })
      .catch((err: Error) => this.node.log.warn({ prefix, err: err.message }, 'deleting staged results failed'));
  }

  /**
   * A finished job leaves memory: its record stays in the replica (answering queries, late results and
   * redeliveries), so memory holds only what is queued or running, however many jobs have run.
   */
  private forgetFinished(job: Job): void {
    if (this.jobs.get(job.job_id) !== job) return;
    this.jobs.delete(job.job_id);
    this.sealed.delete(job.job_id);
    this.queue.remove(job.job_id);
    this.deadlines.disarm(job.job_id);
    for (const a of job.attempts) {
      this.release(a.executor, job.job_id);
      this.assignMessages.delete(`${job.job_id}#${a.attempt}`);
    }
  }

  /** A finished job this broker manages, from the replica, to answer a late result about it. */
  private finishedRecord(jobId: string): Job | undefined {
    const synced = this.replica.job(jobId);
    if (synced === undefined || synced.broker !== this.node.link.id || !isFinal(synced.state)) return undefined;
    return structuredClone(synced) as Job;
  }

  /**
   * Removes finished jobs past their retention from the replica (every broker does the same to its own),
   * and deletes the data of those this broker manages, or adopts from a lost broker.
   */
  private prune(): void {
    if (this.stopped) return;
    const pruned = this.replica.prune(Date.now(), this.options.retention, PRUNE_BUDGET);
    const mine = pruned.filter((p) => this.managesData(p));
    if (mine.length > 0) {
      void this.data
        .discard(mine.flatMap((p) => p.names))
        .then((count) => this.node.link.counters.inc('expired_data_deleted', count))
        .catch((err: Error) => this.node.log.warn({ err: err.message }, 'deleting expired job data failed'));
    }
    const tombstones = this.replica.pruneTombstones(PRUNE_BUDGET);
    if (pruned.length === PRUNE_BUDGET || tombstones === PRUNE_BUDGET) setImmediate(() => this.prune());
  }

  /** Prunes within a second once the replica holds more finished jobs than the count allows, plus slack. */
  private pruneIfOverCount(): void {
    const { maxCount } = this.options.retention;
    if (this.pruneSoonTimer !== undefined || this.replica.finishedJobs <= maxCount + Math.max(OVER_COUNT_SLACK, Math.ceil(maxCount / 100))) return;
    this.pruneSoonTimer = setTimeout(() => {
      this.pruneSoonTimer = undefined;
      this.prune();
    }, 1_000);
    this.pruneSoonTimer.unref();
  }

  private managesData(pruned: PrunedJob): boolean {
    const broker = pruned.job.broker;
    if (broker === undefined || broker === this.node.link.id) return true;
    return this.node.link.peers.get(broker)?.alive !== true && adopterOf(broker, this.liveBrokers()) === this.node.link.id;
  }

  /** This broker's jobs waiting in its queue for an executor. */
  private queuedJobs(): SyncedJob[] {
    const jobs: SyncedJob[] = [];
    for (const jobId of this.queue.ids()) {
      const job = this.jobs.get(jobId);
      if (job?.state === 'queued') jobs.push(job as SyncedJob);
    }
    return jobs;
  }

  private serialized(jobId: string, work: () => Promise<void>): Promise<void> {
    const run = (this.locks.get(jobId) ?? Promise.resolve()).then(work);
    const tail = run.catch(() => undefined);
    this.locks.set(jobId, tail);
    void tail.then(() => {
      if (this.locks.get(jobId) === tail) this.locks.delete(jobId);
    });
    return run;
  }

  private restore(job: Job): void {
    this.jobs.set(job.job_id, job);
    if (job.state === 'queued') {
      const last = currentAttempt(job);
      this.enqueue(job, job.updated_at, last !== undefined ? new Set([last.executor]) : undefined);
      return;
    }
    if (isFinal(job.state)) return;
    const attempt = currentAttempt(job);
    if (attempt !== undefined && attempt.outcome === 'running') {
      this.occupy(attempt.executor, job.job_id);
      this.armDeadline(job);
    }
  }

  /**
   * One page of jobs, newest first (job-listing.ts). At most LIST_READ_BUDGET jobs are read for a page, so
   * a client that sees few of many jobs gets short pages that go on, instead of stalling the broker.
   */
  private list(query: BodyOf<'job_list'>): BodyOf<'job_listing'> {
    const items: BodyOf<'job_listing'>['items'] = [];
    let last: Position | undefined;
    let read = 0;
    let more = false;
    for (const entry of this.replica.listing(query, query.after !== undefined ? positionOf(query.after) : undefined)) {
      if (items.length === query.limit || read === LIST_READ_BUDGET) {
        more = true;
        break;
      }
      read++;
      last = entry.position;
      // This broker's own record is ahead of its replica copy (a start is not replicated), so it decides.
      const own = this.jobs.get(entry.jobId);
      const facts = own !== undefined ? factsOf(own) : entry.facts;
      if (facts === undefined || !matches(facts, query)) continue;
      const job = own ?? this.replica.job(entry.jobId);
      if (job === undefined) continue;
      const attempt = currentAttempt(job);
      const reason = (own !== undefined ? this.whyQueued(own) : undefined) ?? job.reason;
      items.push({
        job_id: job.job_id,
        state: job.state,
        priority: job.priority,
        owner: job.owner,
        attempts: job.attempts.length,
        ...(attempt !== undefined ? { executor: attempt.executor } : {}),
        updated_at: job.updated_at,
        ...(reason !== undefined ? { reason: reason.slice(0, 2_048) } : {}),
      });
    }
    return { items, ...(more && last !== undefined ? { next: cursorOf(last) } : {}) };
  }
}


function waitFor(index: Map<string, Set<string>>, key: string, jobId: string): void {
  let jobs = index.get(key);
  if (jobs === undefined) index.set(key, (jobs = new Set()));
  jobs.add(jobId);
}

/** A private copy of a replicated record; records written before chaining by job carry no `after`. */
function normalized(job: SyncedJob): Job {
  const copy = structuredClone(job) as Job;
  copy.after ??= [];
  return copy;
}

/** Records how long `work`, started just now, takes to settle; failures are not timed. */
function timed(counters: Counters, name: string, work: Promise<void>): Promise<void> {
  const started = performance.now();
  return work.then(() => counters.time(name, performance.now() - started));
}
