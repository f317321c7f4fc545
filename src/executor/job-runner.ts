import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { adopterOf, type BodyOf, type Envelope, type JobSpec, type RunOutcome } from '../protocol/index.js';
import type { Table } from '../store/index.js';
import { RemoteError, TransportError, type NodeRuntime } from '../transport/index.js';
import { readCapabilities } from './capabilities.js';
import { buildResultArchive, ResultTooLargeError } from './result-archive.js';
import { SandboxPool, type RunHandle, type SandboxResult } from './sandbox/index.js';

export interface JobRunnerOptions {
  /** Jobs run at once. */
  readonly slots: number;
  /** Capability tags this executor offers. */
  readonly tags: readonly string[];
  /** Where attempts run: <workDir>/<job>-<attempt>/root is the job directory, its streams sit beside it. */
  readonly workDir: string;
  readonly keepJobDirs: boolean;
  /** Archive plus named results must fit in one message to the broker. */
  readonly maxResultBytes: number;
}

/**
 * An assignment this executor accepted, kept in LMDB until its result is in the durable outbox (from
 * then on the outbox delivers it, across restarts). One still here after a restart is run again.
 */
interface Assignment {
  readonly broker: string;
  readonly attempt: number;
  readonly spec: JobSpec;
  readonly versions: Record<string, [number, number]>;
}

/** An input that could not be staged: the job fails with outcome missing_input, naming it. */
class MissingInput extends Error {}

type RunReport = Omit<BodyOf<'job_result'>, 'job_id' | 'attempt'>;

/** Captured streams of jobs that do not redirect them are added to the result archive under these names. */
const CAPTURED_STDOUT = '_stdout.txt';
const CAPTURED_STDERR = '_stderr.txt';
/** Reported attempts remembered, so that a resent assignment is not run again. */
const REPORTED_REMEMBERED = 10_000;
/** Compiled-module reuse needs the bytes first: keep this many bytes of recently used modules. */
const MODULE_CACHE_BYTES = 64 * 1_048_576;

/**
 * The executor role's work: it accepts assignments from brokers (durably, so a restart runs them
 * again), stages each job's inputs into a fresh job directory, runs the module in the sandbox pool,
 * and reports the outcome with the result archive and named results through the durable outbox.
 */
export class JobRunner {
  private readonly pool: SandboxPool;
  private readonly assignments: Table<Assignment>;
  /** Attempts being staged or run here, by `<job>#<attempt>`. */
  private readonly running = new Map<string, { jobId: string; handle?: RunHandle; cancelled?: string }>();
  /** Module bytes by `<name>@<version>`: a version never changes, so a hit needs no fetch. */
  private readonly modules = new Map<string, Uint8Array>();
  private moduleBytes = 0;
  /** Attempts reported lately: an assignment sent again (by a broker adopting the job) is not run twice. */
  private readonly reported = new Set<string>();
  private stopping = false;

  constructor(
    private readonly node: NodeRuntime,
    private readonly options: JobRunnerOptions,
  ) {
    this.pool = new SandboxPool({ size: options.slots });
    this.assignments = node.store.table<Assignment>('assignments');
    const link = node.link;
    link.setHeartbeatFields(() => ({
      capabilities: readCapabilities(node.store.dir, options.tags),
      running_jobs: [...new Set([...this.running.values()].map((r) => r.jobId))],
      job_slots: options.slots,
    }));
    link.on('job_assign', (msg) => this.accept(msg));
    link.on('job_verdict', (msg) => {
      const { job_id: jobId, attempt, reason } = msg.body;
      link.counters.inc('results_rejected');
      node.log.warn({ job: jobId, attempt, broker: msg.from, reason }, 'result rejected');
    });
    link.on('job_cancel', (msg) => this.cancel(msg));
    link.onPresence((event) => {
      if (event.peer.role === 'broker') this.redirectOrphanedResults();
    });
    mkdirSync(options.workDir, { recursive: true });
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
    const assignment = this.assignments.get(id);
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

  /** Runs again what a previous run of this executor accepted but did not finish. */
  resume(): void {
    for (const { key, value } of this.assignments.getRange()) this.start(String(key), value);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.pool.close();
  }

  private async accept(msg: Envelope<'job_assign'>): Promise<void> {
    const { attempt, spec, versions } = msg.body;
    const id = `${spec.job_id}#${attempt}`;
    if (this.assignments.get(id) !== undefined || this.running.has(id) || this.reported.has(id)) return;
    const assignment: Assignment = { broker: msg.from, attempt, spec, versions };
    // The run starts at once; the acknowledgement waits until the assignment is recorded (the link waits
    // for this handler and a commit), so a crash before that has the broker send it again.
    const recorded = this.assignments.put(id, assignment);
    this.start(id, assignment);
    await recorded;
  }

  private start(id: string, assignment: Assignment): void {
    this.running.set(id, { jobId: assignment.spec.job_id });
    this.node.link.counters.inc('jobs_started');
    void this.execute(id, assignment)
      .catch((err: Error) => {
        // Only the node stopping gets here (its store closed under it): the job runs again on restart.
        if (!this.stopping) this.node.log.error({ job: assignment.spec.job_id, attempt: assignment.attempt, err: err.message }, 'job reporting failed');
      })
      .finally(() => this.running.delete(id));
  }

  private async execute(id: string, a: Assignment): Promise<void> {
    const { spec, attempt, broker } = a;
    const attemptDir = join(this.options.workDir, `${spec.job_id}-${attempt}`);
    const report = await this.run(id, a, attemptDir);
    if (this.stopping) return;
    if (this.running.get(id)?.cancelled !== undefined) {
      await this.assignments.remove(id);
      if (!this.options.keepJobDirs) rmSync(attemptDir, { recursive: true, force: true });
      return;
    }
    // In the same turn, so both land in one LMDB batch: after a crash the result is either still to be
    // sent by the outbox, or the assignment is still here and runs again (the broker takes the first).
    const sent = this.node.link.sendDurable(this.resultTarget(broker), 'job_result', { job_id: spec.job_id, attempt, ...report });
    const removed = this.assignments.remove(id);
    await Promise.all([sent, removed]);
    this.reported.add(id);
    if (this.reported.size > REPORTED_REMEMBERED) this.reported.delete(this.reported.values().next().value!);
    this.node.log.info({ job: spec.job_id, attempt, outcome: report.outcome, exitCode: report.exit_code, ms: report.duration_ms }, 'job finished');
    if (!this.options.keepJobDirs) rmSync(attemptDir, { recursive: true, force: true });
  }

  /** Stages, runs and collects one attempt; every way it can end becomes a report, never a throw. */
  private async run(id: string, a: Assignment, attemptDir: string): Promise<RunReport> {
    const { spec } = a;
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    const dir = join(attemptDir, 'root');
    const stdoutPath = spec.stdout_file !== undefined ? join(dir, spec.stdout_file) : join(attemptDir, 'stdout');
    const stderrPath = spec.stderr_file !== undefined ? join(dir, spec.stderr_file) : join(attemptDir, 'stderr');
    let wasm: Uint8Array;
    let stdinPath: string | undefined;
    try {
      rmSync(attemptDir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      for (const d of spec.dirs) mkdirSync(join(dir, d), { recursive: true });
      for (const path of [spec.stdout_file, spec.stderr_file]) if (path !== undefined) mkdirSync(dirname(join(dir, path)), { recursive: true });
      wasm = await this.module(a);
      for (const [path, name] of Object.entries(spec.data)) {
        const target = join(dir, path);
        mkdirSync(dirname(target), { recursive: true });
        writeFileSync(target, await this.fetch(this.resultTarget(a.broker), name));
      }
      if (spec.stdin_file !== undefined) {
        // Outside the job directory: the module reads it as stdin, not as a file it could change.
        stdinPath = join(attemptDir, 'stdin');
        writeFileSync(stdinPath, await this.fetch(this.resultTarget(a.broker), spec.stdin_file));
      }
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const outcome: RunOutcome = err instanceof MissingInput ? 'missing_input' : 'host_error';
      return { outcome, message: message.slice(0, 2_048), duration_ms: elapsed(), archive: emptyArchive(), files: [], missing: [], named: [] };
    }
    const entry = this.running.get(id);
    if (entry?.cancelled !== undefined) return { outcome: 'cancelled', message: entry.cancelled, duration_ms: elapsed(), archive: emptyArchive(), files: [], missing: [], named: [] };
    this.node.link.send(this.resultTarget(a.broker), 'job_started', { job_id: spec.job_id, attempt: a.attempt });
    const handle = this.pool.run({
      wasm,
      args: spec.argv.length > 0 ? spec.argv : [programName(spec.wasm_module)],
      env: spec.env,
      jobDir: dir,
      ...(stdinPath !== undefined ? { stdinPath } : {}),
      stdoutPath,
      stderrPath,
      timeoutMs: spec.timeout_s * 1_000,
      memoryCapBytes: spec.max_memory_mb * 1_048_576,
    });
    if (entry !== undefined) entry.handle = handle;
    const ran = await handle.result;
    const captured: Record<string, string> = {};
    if (spec.stdout_file === undefined) captured[CAPTURED_STDOUT] = stdoutPath;
    if (spec.stderr_file === undefined) captured[CAPTURED_STDERR] = stderrPath;
    let collected: ReturnType<JobRunner['collect']>;
    try {
      collected = this.collect(a, dir, captured, stderrPath);
    } catch (err) {
      return { outcome: 'host_error', message: `collecting the results failed: ${(err as Error).message}`.slice(0, 2_048), duration_ms: elapsed(), archive: emptyArchive(), files: [], missing: [], named: [] };
    }
    if ('tooLarge' in collected) {
      return { outcome: 'result_too_large', message: collected.tooLarge, duration_ms: elapsed(), archive: emptyArchive(), files: [], missing: [], named: [] };
    }
    return { ...outcomeOf(ran, collected.stderrTail), duration_ms: elapsed(), ...collected.results };
  }

  /** The result archive and named results, or why they cannot be sent. */
  private collect(a: Assignment, dir: string, captured: Record<string, string>, stderrPath: string): { results: Pick<RunReport, 'archive' | 'files' | 'missing' | 'named'>; stderrTail: string } | { tooLarge: string } {
    // Read before the archive is built: the tail explains a failure even when results are too large.
    const stderrTail = lastLine(stderrPath);
    try {
      const archive = buildResultArchive(dir, a.spec.results, this.options.maxResultBytes, captured);
      const missing = [...archive.missing];
      const named: RunReport['named'] = [];
      let total = archive.zip.byteLength;
      for (const [path, name] of Object.entries(a.spec.named_results)) {
        let bytes: Uint8Array;
        try {
          bytes = readFileSync(join(dir, path));
        } catch {
          if (!missing.includes(path)) missing.push(path);
          continue;
        }
        total += bytes.byteLength;
        if (total > this.options.maxResultBytes) throw new ResultTooLargeError(`the result archive and named results exceed ${this.options.maxResultBytes} bytes`);
        named.push({ path, name, bytes });
      }
      return { results: { archive: archive.zip, files: [...archive.files], missing, named }, stderrTail };
    } catch (err) {
      if (err instanceof ResultTooLargeError) return { tooLarge: err.message };
      throw err;
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
      const reply = await this.node.link.request(broker, 'data_get', { name, prefix: false, limit: 1 });
      const item = reply.kind === 'data_items' ? reply.body.items[0] : undefined;
      if (item === undefined) throw new MissingInput(`missing input "${name}": the broker returned no data`);
      return item.bytes;
    } catch (err) {
      if (err instanceof RemoteError && err.code === 'not_found') throw new MissingInput(`missing input "${name}": ${err.message}`);
      // Its datastore is out of reach (down, or across a partition): not the job's fault, so a host
      // error, which the broker answers by placing the job again.
      if (err instanceof TransportError) throw new Error(`cannot fetch input "${name}" from ${broker}: ${err.message}`);
      throw err;
    }
  }
}

function outcomeOf(ran: SandboxResult, stderrTail: string): Pick<RunReport, 'outcome' | 'exit_code' | 'message'> {
  const tail = stderrTail !== '' ? `; stderr: ${stderrTail}` : '';
  switch (ran.outcome) {
    case 'exited':
      return { outcome: 'exited', exit_code: ran.exitCode ?? 0, message: ran.exitCode === 0 ? ran.message : `${ran.message}${tail}`.slice(0, 2_048) };
    case 'error':
      return { outcome: 'host_error', message: ran.message.slice(0, 2_048) };
    case 'trap':
    case 'memory_limit':
      return { outcome: ran.outcome, message: `${ran.message}${tail}`.slice(0, 2_048) };
    default:
      return { outcome: ran.outcome, message: ran.message.slice(0, 2_048) };
  }
}

/**
 * argv[0] for a job that lists no arguments: the module's name, as a shell would give it. An empty argv
 * makes wasi-libc's start-up code exit with 71 (EX_OSERR) before main runs.
 */
function programName(wasmModule: string): string {
  return (wasmModule.split('/').pop() ?? wasmModule).replace(/\.wasm$/, '');
}

/** The last non-empty line a job wrote to stderr (at most 200 characters), to say why it failed. */
function lastLine(path: string): string {
  try {
    const text = readFileSync(path, 'utf8').slice(-4_096);
    const line = text.split('\n').filter((l) => l.trim() !== '').pop() ?? '';
    return line.trim().slice(0, 200);
  } catch {
    return '';
  }
}

/** A zip with no entries: what a job that never ran, or whose results cannot be sent, delivers. */
function emptyArchive(): Uint8Array {
  const zip = new Uint8Array(22);
  // End-of-central-directory signature; every other field of an empty archive is zero.
  zip.set([0x50, 0x4b, 0x05, 0x06]);
  return zip;
}
