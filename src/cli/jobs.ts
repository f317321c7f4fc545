import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import { DataClient, JobClient, loadPlan, type Finished, type SubmittedJob } from '../client/index.js';
import type { UcpConfig } from '../config/index.js';
import type { Logger } from '../log/index.js';
import { isFinal, type JobState, type JobView } from '../protocol/index.js';
import type { NodeRuntime } from '../transport/index.js';
import { RemoteError } from '../transport/index.js';
import { openClientNode, siblingClients, withIdleStore, type ClientOptions } from './client-identity.js';
import { EXIT_FAILED, EXIT_NOT_DONE, EXIT_OK } from './exit-codes.js';
import { table, type Output } from './inspect.js';
import { connectWithin, waits, withTool } from './settings.js';

interface ClientContext {
  readonly node: NodeRuntime;
  readonly jobs: JobClient;
  readonly data: DataClient;
  /** Aborted by Ctrl-C (or SIGTERM): stop waiting, say how to collect later, leave cleanly. */
  readonly interrupted: AbortSignal;
}

/**
 * Runs `work` as this user's client node (see client-identity.ts for which one): a store of its own (the
 * jobs it submitted), presence in the cluster, and job updates pushed to it. A first Ctrl-C aborts
 * `interrupted`, so the command can stop waiting and leave cleanly; a second one exits at once.
 */
async function withClient<T>(config: UcpConfig, logger: Logger, work: (ctx: ClientContext) => Promise<T>, options: ClientOptions = {}): Promise<T> {
  const node = openClientNode(config, logger, options);
  const data = new DataClient(node.link, config.client.broker_wait_s * 1_000, config.node.broker, (what) => waits.begin(what));
  const jobs = new JobClient(node.link, node.store, data);
  const interrupt = new AbortController();
  const onSignal = () => {
    if (interrupt.signal.aborted) process.exit(EXIT_NOT_DONE);
    interrupt.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await connectWithin(config, node.link, () => node.connect());
    return await work({ node, jobs, data, interrupted: interrupt.signal });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
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
  return withClient(config, logger, async ({ jobs, interrupted }) => {
    const submitted: string[] = [];
    let views: JobView[];
    try {
      views = await jobs.submitPlan(plan, (event) => {
        if (event.type === 'submitted') submitted.push(event.job.job_id);
        if (out.json) return;
        if (event.type === 'published') out.print(`published ${event.name} (${event.bytes} bytes)`);
        else {
          const job = plan.jobs[event.index]!;
          const label = job.idGiven ? event.job.job_id : `jobs[${event.index}] as ${event.job.job_id}`;
          const why = event.job.state === 'queued' && event.job.reason !== undefined ? `: ${event.job.reason}` : '';
          out.print(`submitted ${label}${event.created ? '' : ' (already known to the broker)'}: ${event.job.state}${why}`);
        }
      }, interrupted);
    } catch (err) {
      if (submitted.length > 0 && !out.json) out.print(`submitted before this stopped: ${submitted.join(' ')}; collect them with \`ucp results\``);
      throw err;
    }
    const ids = views.map((j) => j.job_id);
    if (opts.detach) {
      if (out.json) out.print(JSON.stringify({ jobs: ids }));
      else out.print(`detached; collect the results later with: ucp results ${ids.join(' ')}`);
      return EXIT_OK;
    }
    return follow(jobs, out, ids, { ...opts, interrupted });
  });
}

export interface ResultsOptions {
  readonly results: string;
  readonly wait: boolean;
  readonly timeoutS?: number;
}

/**
 * `ucp results [JOBID...]`: write out the results of finished jobs: the given ones, or every job this
 * user's client submitted (or is a receiver of) and has not collected.
 */
export async function collectResults(config: UcpConfig, logger: Logger, out: Output, ids: readonly string[], opts: ResultsOptions): Promise<number> {
  return withClient(config, logger, async ({ node, jobs, interrupted }) => {
    const siblings = ids.length > 0 ? [] : siblingClients(config, node.link.id);
    const wanted = ids.length > 0 ? [...ids] : await uncollected(config, node, jobs, siblings);
    if (wanted.length === 0) {
      out.print(out.json ? JSON.stringify({ jobs: [] }) : 'no results to collect: every job of this client was collected');
      return EXIT_OK;
    }
    const code = await follow(jobs, out, wanted, { results: opts.results, interrupted, ...(opts.wait ? (opts.timeoutS !== undefined ? { timeoutS: opts.timeoutS } : {}) : { timeoutS: 0 }) });
    // Jobs another identity of this user submitted are marked collected in its own ledger too.
    for (const sibling of siblings) {
      await withIdleStore(config, sibling, async (store) => {
        const ledger = store.table<SubmittedJob>('submitted_jobs');
        for (const id of wanted) {
          const entry = ledger.get(id);
          if (entry !== undefined && entry.collectedAt === undefined && jobs.collected(id)) await ledger.put(id, { ...entry, collectedAt: Date.now() });
        }
      });
    }
    return code;
  });
}

/** Jobs whose results this client should write out: its own, its idle siblings', and those sent to it. */
async function uncollected(config: UcpConfig, node: NodeRuntime, jobs: JobClient, siblings: ReadonlyArray<{ id: string; dir: string }>): Promise<string[]> {
  const mine = jobs.uncollected();
  for (const sibling of siblings) {
    const theirs = await withIdleStore(config, sibling, (store) => [...store.table<SubmittedJob>('submitted_jobs').getRange()].map(({ value }) => value).filter((j) => j.collectedAt === undefined));
    if (theirs !== undefined) mine.push(...theirs);
  }
  const ids = mine.sort((a, b) => a.submittedAt - b.submittedAt).map((j) => j.jobId);
  // Results another client sends here (its plan names this node as results_receiver).
  for (const item of (await jobs.list({ receiver: node.link.id, states: ['succeeded', 'failed'] })).items) {
    if (item.owner !== node.link.id && isFinal(item.state) && !jobs.collected(item.job_id) && !ids.includes(item.job_id)) ids.push(item.job_id);
  }
  return [...new Set(ids)];
}

interface FollowOptions {
  readonly results: string;
  readonly timeoutS?: number;
  readonly interrupted: AbortSignal;
}

async function follow(jobs: JobClient, out: Output, ids: readonly string[], opts: FollowOptions): Promise<number> {
  const quick = opts.timeoutS === 0;
  const progress = out.json || quick ? undefined : new Progress(out, ids);
  let finished: Map<string, Finished>;
  try {
    finished = await jobs.wait(ids, { ...(opts.timeoutS !== undefined ? { timeoutMs: opts.timeoutS * 1_000 } : {}), signal: opts.interrupted, onUpdate: (job) => progress?.update(job) });
  } finally {
    progress?.stop();
  }
  if (opts.interrupted.aborted && !out.json) out.print('interrupted: the jobs keep running without this command');
  return report(jobs, out, ids, finished, opts.results);
}

/** Writes each finished job's archive, prints one line per job, and says how the whole run went. */
async function report(jobs: JobClient, out: Output, ids: readonly string[], finished: ReadonlyMap<string, Finished>, resultsDir: string): Promise<number> {
  const dir = resolve(resultsDir);
  const rows: Array<Record<string, unknown>> = [];
  const open: string[] = [];
  let failed = 0;
  for (const id of ids) {
    const done = finished.get(id);
    if (done === undefined) {
      open.push(id);
      rows.push({ id, state: 'unfinished' });
      continue;
    }
    const { job } = done;
    let file: string | undefined;
    if (job.result?.archive !== undefined) {
      mkdirSync(dir, { recursive: true });
      file = join(dir, `${id}_result.zip`);
      await jobs.saveResultArchive(done, file);
    }
    await jobs.markCollected(id);
    if (job.state === 'failed') failed++;
    rows.push({ id, state: job.state, ...(job.reason !== undefined ? { reason: job.reason } : {}), ...(file !== undefined ? { file } : {}), ...(job.result !== undefined ? { exitCode: job.result.exit_code, executor: job.result.executor } : {}) });
    if (!out.json) out.print(`${id}: ${describeEnd(job)}${file !== undefined ? ` -> ${file}` : job.result !== undefined ? ' (it names no results_receiver: no archive kept)' : ''}`);
  }
  if (out.json) out.print(JSON.stringify({ jobs: rows }));
  else {
    if (open.length > 0) out.print(`not finished yet: ${open.join(' ')}; collect ${open.length === 1 ? 'it' : 'them'} later with \`ucp results ${open.join(' ')}\``);
    if (failed > 0) out.print(`${failed} of ${ids.length} job(s) failed`);
    else if (open.length === 0) out.print(`all ${ids.length} job(s) succeeded`);
  }
  return failed > 0 ? EXIT_FAILED : open.length > 0 ? EXIT_NOT_DONE : EXIT_OK;
}

function describeEnd(job: JobView): string {
  const r = job.result;
  if (job.state === 'succeeded') return `succeeded on ${r?.executor ?? '?'} in ${r?.duration_ms ?? 0} ms`;
  return `FAILED: ${job.reason ?? 'no reason given'}`;
}

/**
 * Progress of a run: a bar with per-state counts on a terminal, one plain line per state change
 * otherwise (logs, CI), as queued / running / done. A queued job says what it waits for.
 */
class Progress {
  private readonly states = new Map<string, JobView['state']>();
  private readonly said = new Map<string, string>();
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
    // Final states are reported once, with the result file, when the run ends.
    if (isFinal(job.state)) {
      this.bar?.update([...this.states.values()].filter(isFinal).length, this.tally());
      return;
    }
    const attempt = job.attempts.at(-1);
    const where = attempt !== undefined && job.state !== 'queued' ? ` on ${attempt.executor} (attempt ${attempt.attempt})` : '';
    const why = job.state === 'queued' && job.reason !== undefined ? `: ${job.reason}` : '';
    const line = `${job.job_id}: ${job.state}${where}${why}`;
    if (this.said.get(job.job_id) === line) return;
    this.said.set(job.job_id, line);
    if (this.bar !== undefined) {
      this.bar.update([...this.states.values()].filter(isFinal).length, this.tally());
      // What a queued job waits for is news on a terminal too, above the bar.
      if (job.state === 'queued') process.stderr.write(`\r\x1b[K${line}\n`);
      return;
    }
    this.out.print(line);
  }

  stop(): void {
    this.bar?.stop();
  }

  private tally(): Record<string, number> {
    const count = (...states: string[]) => [...this.states.values()].filter((s) => states.includes(s)).length;
    return { queued: count('queued'), running: count('assigned', 'running'), failed: count('failed') };
  }
}

/**
 * `ucp cancel JOB...`: the submitter cancels jobs, queued or running. A job another identity of this user
 * submitted (a `ucp run` started while another was waiting) is cancelled as that identity, once idle.
 */
export async function cancelJobs(config: UcpConfig, logger: Logger, out: Output, ids: readonly string[]): Promise<number> {
  const rows: Array<Record<string, unknown>> = [];
  let failed = 0;
  const cancelOne = async (jobs: JobClient, id: string) => {
    try {
      const job = await jobs.withdraw(id);
      const stopped = job.attempts.filter((a) => a.outcome === 'cancelled' && a.reason === job.reason).map((a) => a.executor);
      rows.push({ id, state: job.state, ...(job.reason !== undefined ? { reason: job.reason } : {}) });
      if (!out.json) out.print(`${id}: cancelled${stopped.length > 0 ? ` (stopped on ${stopped.join(', ')})` : ' while queued'}`);
    } catch (err) {
      failed++;
      // The broker's own words: which broker said it is not news to the one who asked.
      const message = err instanceof RemoteError ? err.message.slice(err.peer.length + 2) : err instanceof Error ? err.message : String(err);
      rows.push({ id, error: err instanceof RemoteError ? err.code : 'failed', message });
      if (!out.json) out.print(`${id}: not cancelled: ${message}`);
    }
  };
  const bySibling = new Map<string, string[]>();
  await withClient(config, logger, async ({ node, jobs }) => {
    const siblings = new Set(siblingClients(config, node.link.id).map((s) => s.id));
    for (const id of ids) {
      const owner = await jobs.query(id).then(
        (job) => job.owner,
        () => undefined,
      );
      if (owner !== undefined && owner !== node.link.id && siblings.has(owner)) bySibling.set(owner, [...(bySibling.get(owner) ?? []), id]);
      else await cancelOne(jobs, id);
    }
  });
  for (const [owner, owned] of bySibling) {
    await withClient(config, logger, async ({ jobs }) => {
      for (const id of owned) await cancelOne(jobs, id);
    }, { as: owner });
  }
  if (out.json) out.print(JSON.stringify({ jobs: rows }));
  return failed > 0 ? EXIT_FAILED : EXIT_OK;
}

/** `ucp jobs`: every job the broker knows, or only this client's. */
export interface ListOptions {
  readonly owner?: string;
  readonly limit: number;
  readonly since?: number;
  readonly states?: readonly JobState[];
}

/**
 * `ucp jobs`: the newest `limit` jobs the broker knows (unfinished ones first, then the latest finished),
 * filtered as asked. A table ends with a line saying when there are more.
 */
export async function listJobs(config: UcpConfig, logger: Logger, out: Output, options: ListOptions): Promise<void> {
  await withTool(config, logger, async (link) => {
    const jobs = new JobClient(link, undefined, new DataClient(link, config.client.broker_wait_s * 1_000, config.node.broker, (what) => waits.begin(what)));
    const { items, more } = await jobs.list({ ...(options.owner !== undefined ? { owner: options.owner } : {}), ...(options.states !== undefined ? { states: options.states } : {}), ...(options.since !== undefined ? { since: options.since } : {}) }, options.limit);
    if (out.json) {
      out.print(JSON.stringify(items.map((j) => ({ id: j.job_id, state: j.state, priority: j.priority, owner: j.owner, attempts: j.attempts, executor: j.executor, updatedAt: j.updated_at, reason: j.reason }))));
      return;
    }
    if (items.length === 0) {
      out.print(more ? 'no matching jobs among the newest the broker read; narrow with --since or --state, or raise --limit' : 'no jobs');
      return;
    }
    out.print(table(['JOB', 'STATE', 'PRIORITY', 'EXECUTOR', 'ATTEMPTS', 'OWNER', 'UPDATED (UTC)', 'REASON'], items.map((j) => [j.job_id, j.state, j.priority, j.executor ?? '-', String(j.attempts), j.owner, new Date(j.updated_at).toISOString().slice(0, 19).replace('T', ' '), j.reason ?? ''])));
    if (more) out.print(`(the newest ${items.length}; more with --limit, or narrow with --since or --state)`);
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
    const jobs = new JobClient(link, undefined, new DataClient(link, config.client.broker_wait_s * 1_000, config.node.broker, (what) => waits.begin(what)));
    const job = await jobs.query(jobId);
    if (out.json) {
      out.print(JSON.stringify(jobJson(job)));
      return;
    }
    out.print(`job ${job.job_id}: ${job.state} (priority ${job.priority}, submitted by ${job.owner}${job.broker !== undefined ? `, managed by ${job.broker}` : ''})`);
    if (job.receivers !== undefined) out.print(`results also go to: ${job.receivers.join(', ')}`);
    if (job.reason !== undefined) out.print(`${job.state === 'queued' ? 'waiting' : 'reason'}: ${job.reason}`);
    if (job.attempts.length > 0) {
      out.print(table(['ATTEMPT', 'EXECUTOR', 'OUTCOME', 'ASSIGNED', 'ENDED', 'REASON'], job.attempts.map((a) => [String(a.attempt), a.executor, a.outcome, iso(a.assigned_at), a.ended_at !== undefined ? iso(a.ended_at) : '-', a.reason ?? ''])));
    }
    const r = job.result;
    if (r !== undefined) {
      out.print(`result: attempt ${r.attempt} on ${r.executor}: ${r.outcome}${r.exit_code !== undefined ? ` (exit code ${r.exit_code})` : ''}, ${r.duration_ms} ms: ${r.message}`);
      if (r.archive !== undefined) out.print(`archive: ${r.archive} (${r.archive_bytes} bytes; ${r.files.length} file(s)${r.missing.length > 0 ? `; missing: ${r.missing.join(', ')}` : ''})`);
      else out.print(`archive: none kept (the job names no results_receiver)${r.missing.length > 0 ? `; missing: ${r.missing.join(', ')}` : ''}`);
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
    ...(job.receivers !== undefined ? { receivers: job.receivers } : {}),
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
            archive: job.result.archive ?? null,
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
