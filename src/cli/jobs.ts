import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import { DataClient, JobClient, loadPlan, type Finished } from '../client/index.js';
import type { UcpConfig } from '../config/index.js';
import type { Logger } from '../log/index.js';
import { isFinal, type JobView } from '../protocol/index.js';
import { NodeRuntime } from '../transport/index.js';
import { table, type Output } from './inspect.js';
import { clientRole, connectWithin, defaultDataDir, defaultNodeId, withTool } from './settings.js';

/** Exit codes shared by `ucp run` and `ucp results`. */
export const EXIT_OK = 0;
export const EXIT_JOB_FAILED = 1;
/** Not finished yet (detached, or the wait ran out): collect later with `ucp results`. */
export const EXIT_NOT_DONE = 3;

/**
 * Runs `work` as this machine's client node: a store of its own (the jobs it submitted), presence in the
 * cluster, and job updates pushed to it. The node id is stable, so a later run collects what an earlier
 * one submitted.
 */
async function withClient<T>(config: UcpConfig, logger: Logger, work: (jobs: JobClient, data: DataClient, node: NodeRuntime) => Promise<T>): Promise<T> {
  const nodeId = defaultNodeId(config, 'client');
  const node = NodeRuntime.create({ config, nodeId, role: clientRole(config), dataDir: defaultDataDir(config, nodeId), logger });
  const data = new DataClient(node.link, config.client.broker_wait_s * 1_000, config.node.broker);
  const jobs = new JobClient(node.link, node.store, data);
  try {
    await connectWithin(config, node.link, () => node.connect());
    return await work(jobs, data, node);
  } finally {
    await node.stop();
  }
}

export interface RunOptions {
  readonly results: string;
  readonly detach: boolean;
  readonly timeoutS?: number;
}

/** `ucp run PLAN`: publish, submit, follow every job to its end and write `<jobId>_result.zip`. */
export async function runPlan(config: UcpConfig, logger: Logger, out: Output, planFile: string, opts: RunOptions): Promise<number> {
  const plan = loadPlan(planFile, { priority: config.client.priority, timeoutS: config.client.timeout_s, maxMemoryMb: config.client.max_memory_mb });
  return withClient(config, logger, async (jobs) => {
    const submitted = await jobs.submitPlan(plan, (event) => {
      if (out.json) return;
      if (event.type === 'published') out.print(`published ${event.name} (${event.bytes} bytes)`);
      else out.print(`submitted ${event.job.job_id}${event.created ? '' : ' (already known to the broker)'}: ${event.job.state}`);
    });
    const ids = submitted.map((j) => j.job_id);
    if (opts.detach) {
      if (out.json) out.print(JSON.stringify({ jobs: ids }));
      else out.print(`detached; collect the results later with: ucp results ${ids.join(' ')}`);
      return EXIT_NOT_DONE;
    }
    return follow(jobs, out, ids, opts);
  });
}

export interface ResultsOptions {
  readonly results: string;
  readonly wait: boolean;
  readonly timeoutS?: number;
}

/** `ucp results [JOBID...]`: write out the results of finished jobs (by default, all not yet collected). */
export async function collectResults(config: UcpConfig, logger: Logger, out: Output, ids: readonly string[], opts: ResultsOptions): Promise<number> {
  return withClient(config, logger, async (jobs) => {
    const wanted = ids.length > 0 ? [...ids] : jobs.uncollected().map((j) => j.jobId);
    if (wanted.length === 0) {
      out.print(out.json ? JSON.stringify({ jobs: [] }) : 'no results to collect: every job this client submitted was collected');
      return EXIT_OK;
    }
    if (opts.wait) return follow(jobs, out, wanted, { results: opts.results, ...(opts.timeoutS !== undefined ? { timeoutS: opts.timeoutS } : {}) });
    const finished = await jobs.wait(wanted, { timeoutMs: 0 });
    return report(jobs, out, wanted, finished, opts.results);
  });
}

async function follow(jobs: JobClient, out: Output, ids: readonly string[], opts: { results: string; timeoutS?: number }): Promise<number> {
  const progress = out.json ? undefined : new Progress(out, ids);
  let finished: Map<string, Finished>;
  try {
    finished = await jobs.wait(ids, { ...(opts.timeoutS !== undefined ? { timeoutMs: opts.timeoutS * 1_000 } : {}), onUpdate: (job) => progress?.update(job) });
  } finally {
    progress?.stop();
  }
  return report(jobs, out, ids, finished, opts.results);
}

/** Writes each finished job's archive, prints one line per job, and says how the whole run went. */
async function report(jobs: JobClient, out: Output, ids: readonly string[], finished: ReadonlyMap<string, Finished>, resultsDir: string): Promise<number> {
  const dir = resolve(resultsDir);
  const rows: Array<Record<string, unknown>> = [];
  let failed = 0;
  let open = 0;
  for (const id of ids) {
    const done = finished.get(id);
    if (done === undefined) {
      open++;
      rows.push({ id, state: 'unfinished' });
      if (!out.json) out.print(`${id}: not finished yet; collect it later with \`ucp results ${id}\``);
      continue;
    }
    const { job } = done;
    let file: string | undefined;
    if (job.result !== undefined) {
      mkdirSync(dir, { recursive: true });
      file = join(dir, `${id}_result.zip`);
      writeFileSync(file, await jobs.resultArchive(done));
      await jobs.markCollected(id);
    }
    if (job.state === 'failed') failed++;
    rows.push({ id, state: job.state, ...(job.reason !== undefined ? { reason: job.reason } : {}), ...(file !== undefined ? { file } : {}), ...(job.result !== undefined ? { exitCode: job.result.exit_code, executor: job.result.executor } : {}) });
    if (!out.json) out.print(`${id}: ${describeEnd(job)}${file !== undefined ? ` -> ${file}` : ''}`);
  }
  if (out.json) out.print(JSON.stringify({ jobs: rows }));
  else if (failed > 0) out.print(`${failed} of ${ids.length} job(s) failed`);
  else if (open === 0) out.print(`all ${ids.length} job(s) succeeded`);
  return failed > 0 ? EXIT_JOB_FAILED : open > 0 ? EXIT_NOT_DONE : EXIT_OK;
}

function describeEnd(job: JobView): string {
  const r = job.result;
  if (job.state === 'succeeded') return `succeeded on ${r?.executor ?? '?'} in ${r?.duration_ms ?? 0} ms`;
  return `FAILED: ${job.reason ?? 'no reason given'}`;
}

/**
 * Progress of a run: a bar with per-state counts on a terminal, one plain line per state change
 * otherwise (logs, CI), as queued / running / done.
 */
class Progress {
  private readonly states = new Map<string, JobView['state']>();
  private readonly bar?: cliProgress.SingleBar;

  constructor(
    private readonly out: Output,
    ids: readonly string[],
  ) {
    for (const id of ids) this.states.set(id, 'queued');
    if (process.stdout.isTTY === true) {
      this.bar = new cliProgress.SingleBar({ format: 'jobs [{bar}] {value}/{total} done | {queued} queued, {running} running, {failed} failed', hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic);
      this.bar.start(ids.length, 0, this.tally());
    }
  }

  update(job: JobView): void {
    this.states.set(job.job_id, job.state);
    if (this.bar !== undefined) {
      this.bar.update([...this.states.values()].filter(isFinal).length, this.tally());
      return;
    }
    // Final states are reported once, with the result file, when the run ends.
    if (isFinal(job.state)) return;
    const attempt = job.attempts.at(-1);
    const where = attempt !== undefined ? ` on ${attempt.executor} (attempt ${attempt.attempt})` : '';
    const why = job.state === 'queued' && job.reason !== undefined ? `: ${job.reason}` : '';
    this.out.print(`${job.job_id}: ${job.state}${where}${why}`);
  }

  stop(): void {
    this.bar?.stop();
  }

  private tally(): Record<string, number> {
    const count = (...states: string[]) => [...this.states.values()].filter((s) => states.includes(s)).length;
    return { queued: count('queued'), running: count('assigned', 'running'), failed: count('failed') };
  }
}

/** `ucp jobs`: every job the broker knows, or only this client's. */
export async function listJobs(config: UcpConfig, logger: Logger, out: Output, owner?: string): Promise<void> {
  await withTool(config, logger, async (link) => {
    const jobs = new JobClient(link, undefined, new DataClient(link, config.client.broker_wait_s * 1_000, config.node.broker));
    const items = await jobs.list(owner);
    if (out.json) {
      out.print(JSON.stringify(items.map((j) => ({ id: j.job_id, state: j.state, priority: j.priority, owner: j.owner, attempts: j.attempts, executor: j.executor, updatedAt: j.updated_at, reason: j.reason }))));
      return;
    }
    if (items.length === 0) {
      out.print('no jobs');
      return;
    }
    out.print(table(['JOB', 'STATE', 'PRIORITY', 'EXECUTOR', 'ATTEMPTS', 'OWNER', 'REASON'], items.map((j) => [j.job_id, j.state, j.priority, j.executor ?? '-', String(j.attempts), j.owner, j.reason ?? ''])));
  });
}

/**
 * `ucp remove JOBID... | --owner CLIENT`: removes jobs from the cluster, stopping unfinished ones. A client
 * removes its own jobs; an operator (client.operator) anyone's.
 */
export async function removeJobs(config: UcpConfig, logger: Logger, out: Output, ids: readonly string[], owner?: string): Promise<void> {
  await withTool(config, logger, async (link) => {
    const jobs = new JobClient(link, undefined, new DataClient(link, config.client.broker_wait_s * 1_000, config.node.broker));
    let count = 0;
    if (owner !== undefined) count += await jobs.remove({ owner });
    for (const id of ids) count += await jobs.remove({ jobId: id });
    out.print(out.json ? JSON.stringify({ removed: count }) : `removed ${count} job(s)`);
  });
}

/** `ucp job ID`: one job's state, attempts and result. */
export async function showJob(config: UcpConfig, logger: Logger, out: Output, jobId: string): Promise<void> {
  await withTool(config, logger, async (link) => {
    const jobs = new JobClient(link, undefined, new DataClient(link, config.client.broker_wait_s * 1_000, config.node.broker));
    const job = await jobs.query(jobId);
    if (out.json) {
      out.print(JSON.stringify(jobJson(job)));
      return;
    }
    out.print(`job ${job.job_id}: ${job.state} (priority ${job.priority}, submitted by ${job.owner}${job.broker !== undefined ? `, managed by ${job.broker}` : ''})`);
    if (job.reason !== undefined) out.print(`reason: ${job.reason}`);
    if (job.attempts.length > 0) {
      out.print(table(['ATTEMPT', 'EXECUTOR', 'OUTCOME', 'ASSIGNED', 'ENDED', 'REASON'], job.attempts.map((a) => [String(a.attempt), a.executor, a.outcome, iso(a.assigned_at), a.ended_at !== undefined ? iso(a.ended_at) : '-', a.reason ?? ''])));
    }
    const r = job.result;
    if (r !== undefined) {
      out.print(`result: attempt ${r.attempt} on ${r.executor}: ${r.outcome}${r.exit_code !== undefined ? ` (exit code ${r.exit_code})` : ''}, ${r.duration_ms} ms: ${r.message}`);
      out.print(`archive: ${r.archive} (${r.archive_bytes} bytes; ${r.files.length} file(s)${r.missing.length > 0 ? `; missing: ${r.missing.join(', ')}` : ''})`);
      if (r.named_results.length > 0) out.print(`named results: ${r.named_results.join(', ')}`);
      if (r.decided_by !== undefined) out.print(`accepted by: ${r.decided_by}`);
    }
    for (const c of job.conflicts ?? []) {
      out.print(`conflict: attempt ${c.attempt} on ${c.executor} reported a different result at ${iso(c.at)}; the first report stands`);
    }
    for (const s of job.superseded ?? []) {
      out.print(`conflict: attempt ${s.attempt} on ${s.executor}, accepted by ${s.decided_by} at ${iso(s.decided_at[0])} while partitioned, was superseded by the earlier acceptance above`);
    }
  });
}

/** The JSON shape of `ucp job ID --json`. */
export function jobJson(job: JobView): Record<string, unknown> {
  return {
    id: job.job_id,
    state: job.state,
    priority: job.priority,
    owner: job.owner,
    ...(job.broker !== undefined ? { broker: job.broker } : {}),
    createdAt: job.created_at,
    updatedAt: job.updated_at,
    ...(job.reason !== undefined ? { reason: job.reason } : {}),
    acceptedAttempt: job.result?.attempt ?? null,
    attempts: job.attempts.map((a) => ({
      attempt: a.attempt,
      executor: a.executor,
      outcome: a.outcome,
      assignedAt: a.assigned_at,
      ...(a.started_at !== undefined ? { startedAt: a.started_at } : {}),
      ...(a.ended_at !== undefined ? { endedAt: a.ended_at } : {}),
      ...(a.reason !== undefined ? { reason: a.reason } : {}),
    })),
    ...(job.result !== undefined
      ? {
          result: {
            attempt: job.result.attempt,
            executor: job.result.executor,
            outcome: job.result.outcome,
            ...(job.result.exit_code !== undefined ? { exitCode: job.result.exit_code } : {}),
            message: job.result.message,
            durationMs: job.result.duration_ms,
            archive: job.result.archive,
            archiveBytes: job.result.archive_bytes,
            files: job.result.files,
            missing: job.result.missing,
            namedResults: job.result.named_results,
            ...(job.result.decided_by !== undefined ? { acceptedBy: job.result.decided_by } : {}),
          },
        }
      : {}),
    ...(job.superseded !== undefined ? { superseded: job.superseded.map((s) => ({ attempt: s.attempt, executor: s.executor, acceptedBy: s.decided_by, acceptedAt: s.decided_at[0] })) } : {}),
    ...(job.conflicts !== undefined ? { conflicts: job.conflicts.map((c) => ({ attempt: c.attempt, executor: c.executor, at: c.at })) } : {}),
  };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
