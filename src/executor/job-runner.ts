import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { adopterOf, BODY_SCHEMAS, type BodyOf, type Envelope, type RunOutcome } from '../protocol/index.js';
import type { Table } from '../store/index.js';
import { DataTransfer, RemoteError, TransportError, type Delivery, type NodeRuntime } from '../transport/index.js';
import { capabilitiesReader } from './capabilities.js';
import { chooseStaged, ResultStaging, uploadStaged, type AttemptRef, type RunReport, type StagedRecord } from './result-staging.js';
import { SandboxPool, type RunHandle, type SandboxResult } from './sandbox/index.js';

export interface JobRunnerOptions {
  /** Jobs run at once. */
  readonly slots: number;
  /** Capability tags this executor offers. */
  readonly tags: readonly string[];
  /** Where a finished job's files are written when keepJobDirs is set: <workDir>/<job>-<attempt>/. */
  readonly workDir: string;
  readonly keepJobDirs: boolean;
  /** Where the bytes of results staged in chunks wait until their report is in the outbox. */
  readonly resultDir: string;
  /**
   * Archive plus named results up to this travel inside the job_result message; beyond it the largest
   * are staged as named data first and the message refers to them.
   */
  readonly inlineResultBytes: number;
  /** The executor's own ceilings: a job's request is clamped to them. */
  readonly limits: ExecutorLimits;
  /** A sandbox process with no job for this long exits (0 keeps them). */
  readonly sandboxIdleMs: number;
}

export interface ExecutorLimits {
  readonly memoryBytes: number;
  /** All the bytes one job may write (files and streams). */
  readonly outputBytes: number;
  readonly jobMs: number;
  /** Files and directories one job may create. */
  readonly files: number;
  /** Archive plus named results of one job (executor.max_result_mb). */
  readonly resultBytes: number;
}

/**
 * An assignment this executor accepted, kept in LMDB until its result is in the durable outbox (from
 * then on the outbox delivers it, across restarts). One still here after a restart was running when the
 * executor died: it is reported as killed_executor, never run again blindly.
 */
type Assignment = AttemptRef;

/** An input that could not be staged: the job fails with outcome missing_input, naming it. */
class MissingInput extends Error {}

/** Reported attempts remembered, so that a resent assignment is not run again. */
const REPORTED_REMEMBERED = 10_000;
/**
 * Most unacknowledged results a heartbeat lists (the protocol allows 4,096). Heartbeats go to every broker
 * each second over what may be a radio link; results are acknowledged within milliseconds unless a broker
 * is out of reach. One left off only costs a needless attempt, which first come, first served settles.
 */
const MAX_LISTED_REPORTS = 256;
/** Compiled-module reuse needs the bytes first: keep this many bytes of recently used modules. */
const MODULE_CACHE_BYTES = 64 * 1_048_576;
/** Descriptors one job may hold open. */
const JOB_MAX_FDS = 1_024;
/** The most file paths one result lists (the wire's limit). */
const RESULT_MAX_FILES = 4_096;
/** How long a stop waits for the reports of attempts it interrupted. */
const STOP_REPORT_MS = 2_000;
/**
 * An attempt reports its start only once it has run this long. A trivial job ends sooner, and its result
 * says when it started (its duration): two messages per job saved (the start, and the broker's "running"
 * update to the client). A longer job is seen running this much late, which failover timing includes.
 */
const START_REPORT_AFTER_MS = 10;
/**
 * An assignment is written to disk only once its attempt has run this long. A trivial job ends sooner:
 * its report then replaces the assignment in the same commit as the link's record of the message, one
 * commit per job instead of two. Its acknowledgement waits for that commit, so a crash before it has the
 * broker send the assignment again. From this age on a crash is reported as killed_executor.
 */
const RECORD_AFTER_MS = 10;

/**
 * How an accepted assignment reaches the disk: on its own once the attempt has run RECORD_AFTER_MS, or
 * replaced by what the attempt ended with (its report in the outbox, its staged record) if that comes
 * first. Either way the link's record of the job_assign message joins that write, and `settled` (what
 * the message's handler returns) follows it.
 */
class AssignmentTrace {
  readonly settled: Promise<void>;
  private state: 'pending' | 'written' | 'replaced' = 'pending';
  private readonly timer: NodeJS.Timeout;
  private settle!: (write: Promise<unknown>) => void;

  constructor(
    private readonly delivery: Delivery,
    private readonly writeAssignment: () => Promise<unknown>,
  ) {
    this.settled = new Promise<unknown>((resolve) => (this.settle = resolve)).then(() => undefined);
    this.timer = setTimeout(() => this.writeNow(), RECORD_AFTER_MS);
  }

  /** Whether the assignment itself is on disk (its removal then goes with the attempt's end). */
  get written(): boolean {
    return this.state === 'written';
  }

  /**
   * Call in the same turn as `write` was issued: the attempt ended, and `write` replaces the assignment.
   * `answers`: `write` is the result, on its way to the broker that sent the assignment, which takes it
   * for the assignment's acknowledgement (one message less per job).
   */
  replace(write: Promise<unknown>, answers = false): void {
    clearTimeout(this.timer);
    if (this.state !== 'pending') return;
    this.state = 'replaced';
    this.delivery.remember();
    if (answers) this.delivery.answered();
    this.settle(write);
  }

  private writeNow(): void {
    if (this.state !== 'pending') return;
    this.state = 'written';
    const write = this.writeAssignment();
    this.delivery.remember();
    this.settle(write);
  }
}

/**
 * The executor role's work: it accepts assignments from brokers (durably), fetches each job's inputs,
 * runs the module in a sandbox process over an in-memory job tree, and reports the outcome with the result
 * archive and named results through the durable outbox.
 */
export class JobRunner {
  private readonly pool: SandboxPool;
  private readonly assignments: Table<Assignment>;
  private readonly staging: ResultStaging;
  /** Attempts being staged or run here, by `<job>#<attempt>`; `trace` for those accepted by this run. */
  private readonly running = new Map<string, { jobId: string; handle?: RunHandle; cancelled?: string; assignment?: Assignment; trace?: AssignmentTrace }>();
  /** Module bytes by `<name>@<version>`: a version never changes, so a hit needs no fetch. */
  private readonly modules = new Map<string, Uint8Array>();
  private moduleBytes = 0;
  /** Attempts reported lately: an assignment sent again (by a broker adopting the job) is not run twice. */
  private readonly reported = new Set<string>();
  /**
   * Jobs whose result is in the outbox, not yet acknowledged, with how many of their attempts' results are:
   * heartbeats list them, so a broker that lost this executor for a while can tell a job it may place here
   * again from one whose result is on its way.
   */
  private readonly unacknowledged = new Map<string, number>();
  private stopping = false;
  private resumed = false;
  /** Attempts being fetched, run or reported, so a stop can wait for their reports. */
  private readonly executions = new Set<Promise<void>>();

  constructor(
    private readonly node: NodeRuntime,
    private readonly options: JobRunnerOptions,
  ) {
    this.pool = new SandboxPool({ size: options.slots, idleMs: options.sandboxIdleMs });
    this.pool.warm();
    this.assignments = node.store.table<Assignment>('assignments');
    this.staging = new ResultStaging(node, options.resultDir);
    const link = node.link;
    const capabilities = capabilitiesReader(node.store.dir, options.tags);
    link.setHeartbeatFields(() => ({
      capabilities: capabilities(),
      running_jobs: [...new Set([...this.running.values()].map((r) => r.jobId))],
      ...(this.unacknowledged.size > 0 ? { reporting_jobs: [...this.unacknowledged.keys()].slice(0, MAX_LISTED_REPORTS) } : {}),
      job_slots: options.slots,
    }));
    link.on('job_assign', (msg, delivery) => this.accept(msg, delivery));
    link.on('job_verdict', (msg) => {
      const { job_id: jobId, attempt, reason } = msg.body;
      link.counters.inc('results_rejected');
      node.log.warn({ job: jobId, attempt, broker: msg.from, reason }, 'result rejected');
    });
    link.on('job_cancel', (msg) => this.cancel(msg));
    link.onPresence((event) => {
      if (event.peer.role === 'broker') this.redirectOrphanedResults();
    });
  }

  /**
   * Results owed to a broker that is gone go to the broker that adopts its jobs: the same rendezvous
   * choice over the live brokers that the brokers make.
   */
  private redirectOrphanedResults(): void {
    for (const owed of this.node.link.owedTo('job_result')) {
      const target = this.resultTarget(owed);
      if (target === owed) continue;
      const n = this.node.link.redirect(owed, 'job_result', target);
      this.node.log.warn({ lost: owed, adopter: target, results: n }, 'sending results owed to a lost broker to its adopter');
    }
  }

  /**
   * Where to turn about a job `broker` assigned (its inputs, progress and result): to that broker, or to
   * its adopter once it is known to be lost.
   */
  private resultTarget(broker: string): string {
    const link = this.node.link;
    const peer = link.peers.get(broker);
    if (peer === undefined || peer.alive) return broker;
    const live = link.peers.alive('broker').map((p) => p.id);
    return adopterOf(broker, live) ?? broker;
  }

  /** Another attempt's result was accepted: stop this one and free its slot; no result is sent. */
  private cancel(msg: Envelope<'job_cancel'>): void {
    const { job_id: jobId, attempt, reason } = msg.body;
    const id = `${jobId}#${attempt}`;
    const entry = this.running.get(id);
    if (entry === undefined) return;
    const assignment = entry.assignment ?? this.assignments.get(id) ?? this.staging.get(id);
    // The broker that assigned it decides, or the one that adopted its jobs when it was lost.
    if (assignment === undefined || (assignment.broker !== msg.from && this.resultTarget(assignment.broker) !== msg.from)) {
      this.node.link.counters.reject(this.node.log, 'job_cancel_refused', msg.from, `${msg.from} tried to cancel attempt ${attempt} of job ${jobId}, which it did not assign here`);
      return;
    }
    entry.cancelled = reason;
    entry.handle?.cancel();
    this.node.link.counters.inc('jobs_cancelled');
    this.node.log.info({ job: jobId, attempt, broker: msg.from, reason }, 'job cancelled');
  }

  /**
   * Assignments a previous run of this executor accepted and did not finish: it died while they ran
   * (whatever killed it, perhaps the job). Each is reported as killed_executor instead of being run again,
   * so a job that kills its unit cannot do it twice here; the broker decides whether to place it elsewhere.
   */
  resume(): void {
    if (this.resumed) return;
    this.resumed = true;
    for (const { key, value } of this.assignments.getRange()) {
      const id = String(key);
      if (this.running.has(id)) continue;
      this.node.link.counters.inc('jobs_killed_executor');
      this.node.log.warn({ job: value.spec.job_id, attempt: value.attempt }, 'this executor died while running the attempt; reporting it instead of running it again');
      const report: RunReport = { outcome: 'killed_executor', message: `${this.node.link.id} died while running this attempt and does not run it again`, duration_ms: 0, ...noResults() };
      void this.deliver(id, value, report).catch((err: Error) => this.node.log.error({ job: value.spec.job_id, err: err.message }, 'reporting a killed attempt failed'));
    }
    // Attempts that finished and were uploading their result: the upload starts over.
    for (const { id, record } of this.staging.pending()) {
      if (this.running.has(id)) continue;
      this.track(id, record.spec.job_id, () => this.upload(id, record, true));
    }
  }

  /**
   * A clean stop is not a crash: attempts still running are reported as host errors (the broker places
   * them again) rather than left to be taken for killed_executor on the next start.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.pool.close();
    const settled = Promise.allSettled(this.executions);
    await Promise.race([settled, new Promise((r) => setTimeout(r, STOP_REPORT_MS).unref())]);
  }

  private accept(msg: Envelope<'job_assign'>, delivery: Delivery): Promise<void> | undefined {
    const { attempt, spec, versions } = msg.body;
    const id = `${spec.job_id}#${attempt}`;
    if (this.assignments.get(id) !== undefined || this.staging.get(id) !== undefined || this.running.has(id) || this.reported.has(id)) return undefined;
    const assignment: Assignment = { broker: msg.from, attempt, spec, versions };
    // The run starts at once; the acknowledgement waits until the assignment, or the report replacing
    // it, is recorded (the link waits for this and a commit), so a crash before that has the broker send
    // it again.
    const trace = new AssignmentTrace(delivery, () => this.assignments.put(id, assignment));
    this.node.link.counters.inc('jobs_started');
    this.track(id, spec.job_id, () => this.execute(id, assignment), { assignment, trace });
    return trace.settled;
  }

  /** Holds the attempt's slot while `work` runs, and lets a stop wait for it. */
  private track(id: string, jobId: string, work: () => Promise<void>, accepted: { assignment?: Assignment; trace?: AssignmentTrace } = {}): void {
    this.running.set(id, { jobId, ...accepted });
    const execution = work()
      .catch((err: Error) => {
        // Only the node stopping gets here (its store closed under it).
        if (!this.stopping) this.node.log.error({ job: jobId, attempt: id.slice(id.lastIndexOf('#') + 1), err: err.message }, 'job reporting failed');
      })
      .finally(() => {
        this.running.delete(id);
        this.executions.delete(execution);
      });
    this.executions.add(execution);
  }

  private async execute(id: string, a: Assignment): Promise<void> {
    let report = await this.run(id, a);
    // Interrupted by the stop (the pool cancels what runs): not the job's doing, so a host error.
    if (this.stopping && report.outcome === 'cancelled') report = { outcome: 'host_error', message: `${this.node.link.id} stopped before the attempt finished`, duration_ms: report.duration_ms, ...noResults() };
    else if (this.running.get(id)?.cancelled !== undefined) {
      await this.replaceAssignment(id, undefined);
      return;
    }
    // A job that keeps no archive (REC's plan without a results receiver): the broker would store none.
    if (a.spec.keep_archive === false) report = { ...report, archive: noResults().archive };
    const chosen = chooseStaged(report, this.options.inlineResultBytes);
    if (chosen.length > 0) {
      // Too large for one message: kept on disk and uploaded in chunks first, from there also after a crash.
      const record = await this.staging.keep(id, a, report, chosen, (kept) => this.replaceAssignment(id, kept));
      await this.upload(id, record, false);
      return;
    }
    await this.deliver(id, a, report);
    this.node.log.info({ job: a.spec.job_id, attempt: a.attempt, outcome: report.outcome, exitCode: report.exit_code, ms: report.duration_ms }, 'job finished');
  }

  /** Hands a report to the durable outbox and forgets the attempt (assigned or staged), in one LMDB batch. */
  private async deliver(id: string, a: Assignment, report: RunReport): Promise<void> {
    const body: BodyOf<'job_result'> = { job_id: a.spec.job_id, attempt: a.attempt, ...this.deliverable(report) };
    // In the same turn, so both land in one LMDB batch: after a crash the result is either still to be
    // sent by the outbox, or the attempt is still here (assigned: reported as killed_executor; staged:
    // uploaded again).
    const target = this.resultTarget(a.broker);
    const { id: messageId, stored: sent } = this.node.link.sendDurableNow(target, 'job_result', body);
    this.awaitAcknowledgement(a.spec.job_id, messageId);
    await (this.staging.get(id) !== undefined ? this.staging.forget(id, sent) : Promise.all([sent, this.replaceAssignment(id, sent, target === a.broker)]));
    this.reported.add(id);
    if (this.reported.size > REPORTED_REMEMBERED) this.reported.delete(this.reported.values().next().value!);
  }

  private awaitAcknowledgement(jobId: string, messageId: string): void {
    this.unacknowledged.set(jobId, (this.unacknowledged.get(jobId) ?? 0) + 1);
    const settled = () => {
      const left = (this.unacknowledged.get(jobId) ?? 1) - 1;
      if (left > 0) this.unacknowledged.set(jobId, left);
      else this.unacknowledged.delete(jobId);
    };
    // Rejected only when the link stops: the result stays in the outbox for the next run.
    this.node.link.delivered(messageId).then(settled, settled);
  }

  /**
   * The attempt ended and `write`, issued in this turn, records what it ended with (or nothing, for a
   * cancelled attempt): the assignment is removed in the same batch if it was written, else never is.
   */
  private replaceAssignment(id: string, write: Promise<unknown> | undefined, answers = false): Promise<unknown> {
    const trace = this.running.get(id)?.trace;
    if (trace !== undefined && !trace.written) {
      trace.replace(write ?? Promise.resolve(), answers);
      return Promise.resolve();
    }
    return this.assignments.remove(id);
  }

  /**
   * Uploads a staged attempt's large objects in chunks to their staging names (PROTOCOL.md, "Results
   * larger than one message"), then reports it. A result the broker refuses to have staged (the job or
   * attempt has ended) is reported as undeliverable; one cancelled meanwhile is dropped; on a stop the
   * record stays for the next start.
   */
  private async upload(id: string, record: StagedRecord, resumed: boolean): Promise<void> {
    const { spec, attempt } = record;
    const bytes = record.objects.reduce((sum, o) => sum + o.size, 0);
    this.node.log.info({ job: spec.job_id, attempt, objects: record.objects.length, bytes, resumed }, 'staging result');
    const started = performance.now();
    const transfer = new DataTransfer(this.node.link, async () => this.resultTarget(record.broker));
    const outcome = await uploadStaged(record, transfer, {
      stopped: () => this.stopping,
      cancelled: () => this.running.get(id)?.cancelled,
      retrying: (name, err) => this.node.log.warn({ job: spec.job_id, attempt, name, err: err.message }, 'staging a result failed; trying again'),
    });
    let report = record.report;
    switch (outcome.kind) {
      case 'stopped':
        return;
      case 'cancelled':
        // Another attempt delivered; what this one staged goes with the job.
        await this.staging.forget(id);
        return;
      case 'refused':
        this.node.link.counters.inc('results_undeliverable');
        report = { outcome: 'result_undeliverable', message: `the job's results could not be staged: ${outcome.message}`.slice(0, 2_048), duration_ms: report.duration_ms, ...noResults() };
        break;
      case 'unreachable':
        // The broker or datastore stayed out of reach: not the job's doing.
        report = { outcome: 'host_error', message: `${this.node.link.id} could not stage the job's results: ${outcome.message}`.slice(0, 2_048), duration_ms: report.duration_ms, ...noResults() };
        break;
      case 'staged':
        this.node.link.counters.inc('results_staged');
        this.node.log.info({ job: spec.job_id, attempt, objects: record.objects.length, bytes, ms: Math.round(performance.now() - started) }, 'result staged');
    }
    await this.deliver(id, record, report);
    this.node.log.info({ job: spec.job_id, attempt, outcome: report.outcome, exitCode: report.exit_code, ms: report.duration_ms }, 'job finished');
  }

  /**
   * A report the broker would refuse (a field out of the wire's bounds) would be retried forever: it is
   * replaced by a failure that says why, which always travels.
   */
  private deliverable(report: RunReport): RunReport {
    const problem = BODY_SCHEMAS.job_result.check({ job_id: 'j', attempt: 1, ...report }, 'result');
    if (problem === undefined) return report;
    this.node.link.counters.inc('results_undeliverable');
    return { outcome: 'result_undeliverable', message: `the job's result cannot be sent: ${problem}`.slice(0, 2_048), duration_ms: report.duration_ms, ...noResults() };
  }

  /** Fetches, runs and collects one attempt; every way it can end becomes a report, never a throw. */
  private async run(id: string, a: Assignment): Promise<RunReport> {
    const { spec } = a;
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    const source = () => this.resultTarget(a.broker);
    let wasm: Uint8Array;
    let stdin: Uint8Array | undefined;
    const inputs: Array<[string, Uint8Array]> = [];
    try {
      // Fetched together: a job's inputs may sit on different datastores.
      const [module, staged, stdinBytes] = await Promise.all([
        this.module(a),
        Promise.all(Object.entries(spec.data).map(async ([path, name]) => [path, await this.fetch(source(), name)] as [string, Uint8Array])),
        spec.stdin_file !== undefined ? this.fetch(source(), spec.stdin_file) : undefined,
      ]);
      wasm = module;
      inputs.push(...staged);
      stdin = stdinBytes;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const outcome: RunOutcome = err instanceof MissingInput ? 'missing_input' : 'host_error';
      return { outcome, message: message.slice(0, 2_048), duration_ms: elapsed(), ...noResults() };
    }
    const entry = this.running.get(id);
    if (entry?.cancelled !== undefined) return { outcome: 'cancelled', message: entry.cancelled, duration_ms: elapsed(), ...noResults() };
    const startReport = setTimeout(() => this.node.link.send(source(), 'job_started', { job_id: spec.job_id, attempt: a.attempt }), START_REPORT_AFTER_MS);
    const limits = this.options.limits;
    const timeoutMs = Math.min(spec.timeout_s * 1_000, limits.jobMs);
    const memoryCapBytes = Math.min(spec.max_memory_mb * 1_048_576, limits.memoryBytes);
    const handle = this.pool.run({
      wasm,
      // Verbatim, as REC passes it: an empty argv stays empty.
      args: spec.argv,
      env: spec.env,
      ...(stdin !== undefined ? { stdin } : {}),
      dirs: spec.dirs,
      inputs,
      ...(spec.stdout_file !== undefined ? { stdoutFile: spec.stdout_file } : {}),
      ...(spec.stderr_file !== undefined ? { stderrFile: spec.stderr_file } : {}),
      results: spec.results,
      namedResults: Object.entries(spec.named_results),
      keepTree: this.options.keepJobDirs,
      timeoutMs,
      memoryCapBytes,
      limits: { outputBytes: limits.outputBytes, maxNodes: limits.files, maxFds: JOB_MAX_FDS, maxResultBytes: limits.resultBytes, maxResultFiles: RESULT_MAX_FILES },
    });
    if (entry !== undefined) entry.handle = handle;
    const ran = await handle.result;
    clearTimeout(startReport);
    if (ran.tree !== undefined) this.keepTree(a, ran.tree);
    const clamped = {
      timeout: timeoutMs < spec.timeout_s * 1_000 ? `executor.max_job_seconds on ${this.node.link.id}; the job asked for ${spec.timeout_s} s` : undefined,
      memory: memoryCapBytes < spec.max_memory_mb * 1_048_576 ? `executor.max_memory_mb on ${this.node.link.id}; the job asked for ${spec.max_memory_mb} MiB` : undefined,
    };
    return { ...outcomeOf(ran, clamped), duration_ms: elapsed(), ...(ran.results ?? noResults()) };
  }

  /** Writes a finished job's files under the work directory, for debugging (executor.keep_job_dirs). */
  private keepTree(a: Assignment, tree: ReadonlyArray<readonly [string, Uint8Array]>): void {
    const root = join(this.options.workDir, `${a.spec.job_id}-${a.attempt}`);
    try {
      for (const [path, bytes] of tree) {
        // Tree names never hold '/', '.' or '..' as a component (the tree refuses them), so each path
        // stays below root; 'wx' refuses to write through anything already there.
        const target = join(root, path);
        mkdirSync(dirname(target), { recursive: true });
        writeFileSync(target, bytes, { flag: 'wx' });
      }
    } catch (err) {
      this.node.log.warn({ job: a.spec.job_id, attempt: a.attempt, err: (err as Error).message }, 'could not keep the job files');
    }
  }

  /** The module's bytes: from the cache when the broker's version matches, else fetched. */
  private async module(a: Assignment): Promise<Uint8Array> {
    const name = a.spec.wasm_module;
    const version = a.versions[name];
    const key = version !== undefined ? `${name}@${version[0]}.${version[1]}` : undefined;
    const hit = key !== undefined ? this.modules.get(key) : undefined;
    if (hit !== undefined) {
      this.modules.delete(key!);
      this.modules.set(key!, hit);
      return hit;
    }
    const bytes = await this.fetch(this.resultTarget(a.broker), name);
    if (key !== undefined && bytes.byteLength <= MODULE_CACHE_BYTES) {
      this.modules.set(key, bytes);
      this.moduleBytes += bytes.byteLength;
      for (const [k, b] of this.modules) {
        if (this.moduleBytes <= MODULE_CACHE_BYTES) break;
        this.modules.delete(k);
        this.moduleBytes -= b.byteLength;
      }
    }
    return bytes;
  }

  private async fetch(broker: string, name: string): Promise<Uint8Array> {
    try {
      // In chunks when it is larger than one message, its digest checked.
      return (await new DataTransfer(this.node.link, async () => broker).readAll(name)).bytes;
    } catch (err) {
      if (err instanceof RemoteError && err.code === 'not_found') throw new MissingInput(`missing input "${name}": ${err.message}`);
      // Its datastore is out of reach (down, or across a partition): not the job's fault, so a host
      // error, which the broker answers by placing the job again.
      if (err instanceof TransportError) throw new Error(`cannot fetch input "${name}" from ${broker}: ${err.message}`);
      throw err;
    }
  }
}

/** The report's outcome and message; a limit the executor lowered is named in the message. */
function outcomeOf(ran: SandboxResult, clamped: { timeout: string | undefined; memory: string | undefined }): Pick<RunReport, 'outcome' | 'exit_code' | 'message'> {
  const tail = ran.stderrTail !== undefined && ran.stderrTail !== '' ? `; stderr: ${ran.stderrTail}` : '';
  const cut = (text: string) => text.slice(0, 2_048);
  switch (ran.outcome) {
    case 'exited':
      return { outcome: 'exited', exit_code: ran.exitCode ?? 0, message: cut(ran.exitCode === 0 ? ran.message : `${ran.message}${tail}`) };
    case 'error':
      return { outcome: 'host_error', message: cut(ran.message) };
    case 'timeout':
      return { outcome: 'timeout', message: cut(clamped.timeout !== undefined ? `${ran.message} (${clamped.timeout})` : ran.message) };
    case 'memory_limit':
      return { outcome: 'memory_limit', ...(ran.exitCode !== undefined ? { exit_code: ran.exitCode } : {}), message: cut(`${ran.message}${clamped.memory !== undefined ? ` (${clamped.memory})` : ''}${tail}`) };
    case 'trap':
    case 'crashed':
    case 'output_limit':
      return { outcome: ran.outcome, message: cut(`${ran.message}${tail}`) };
    default:
      return { outcome: ran.outcome, message: cut(ran.message) };
  }
}

/** What a job that never ran, or whose results cannot be sent, delivers: an empty archive and nothing else. */
function noResults(): Pick<RunReport, 'archive' | 'files' | 'missing' | 'named'> {
  const zip = new Uint8Array(22);
  // End-of-central-directory signature; every other field of an empty archive is zero.
  zip.set([0x50, 0x4b, 0x05, 0x06]);
  return { archive: zip, files: [], missing: [], named: [] };
}
