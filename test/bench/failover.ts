/**
 * Failover benchmark, with the default liveness settings:
 * - kill -9 of the executor running a job, to the redeployed attempt starting on the other one;
 * - the same after SIGSTOP (no socket closes: only the missing heartbeats tell);
 * - the broker's first-come-first-served decision on a result, including its durable commit, while many
 *   results arrive at once. Results come from load-generating executors in this process that answer each
 *   assignment at once, so the figure is the broker's, not a module's run time.
 *
 * Processes: hub, broker, datastore and two executors (`ucp` each); this process is the client.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig, type UcpConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { JobSpec, JobView } from '../../src/protocol/index.js';
import { NodeStore } from '../../src/store/index.js';
import { NodeLink, NodeRuntime, linkOptionsFromConfig } from '../../src/transport/index.js';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, type Proc } from '../helpers/processes.js';
import type { BenchResult } from './run.js';
import { round, summarize } from './stats.js';

/** Kill and stop trials each; FAILOVER_TRIALS=1 for a quick look at the decision figures. */
const TRIALS = Number(process.env.FAILOVER_TRIALS ?? 20);
const DECISIONS = 2_000;
/**
 * Decisions made first and not measured: the broker's hot paths are compiled by V8's optimizing compiler
 * only after many calls (see the jobs bench), and a broker decides for weeks.
 */
const WARMUP_DECISIONS = 6_000;
const DECISIONS_IN_FLIGHT = 64;
const LOAD_EXECUTORS = 2;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function spin(jobId: string, ms: number, tag: string): JobSpec {
  return { job_id: jobId, wasm_module: 'bench/spin-for.wasm', capabilities: { tags: [tag] }, argv: ['spin-for', String(ms)], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 60, max_memory_mb: 32 };
}

async function until(jobs: JobClient, jobId: string, ok: (job: JobView) => boolean, timeoutMs = 30_000): Promise<JobView> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const job = await jobs.query(jobId);
    if (ok(job)) return job;
    if (performance.now() > deadline) throw new Error(`job ${jobId} did not get there: ${JSON.stringify(job)}`);
    await sleep(20);
  }
}

/**
 * Kills (or freezes) whichever executor runs each trial's job and times how long until the redeployed
 * attempt starts on the other one; the victim is then brought back for the next trial.
 */
async function failoverTrials(kind: 'kill' | 'stop', ctx: { dir: string; common: string[]; broker: Proc; jobs: JobClient }): Promise<number[]> {
  const tag = `fo-${kind}`;
  const executors = new Map<string, Proc>();
  const start = async (id: string) => {
    const from = ctx.broker.logs.length;
    const p = ucp(['executor', '--node-id', id, '--data-dir', join(ctx.dir, id), '--set', 'executor.slots=2', ...ctx.common], { UCP_EXECUTOR_TAGS: tag });
    executors.set(id, p);
    await ctx.broker.waitForLog({ msg: 'peer up', peer: id }, 20_000, from);
  };
  for (const id of [`${tag}-a`, `${tag}-b`]) await start(id);
  const samples: number[] = [];
  try {
    for (let i = 0; i < TRIALS; i++) {
      const jobId = `${tag}-${i}`;
      await ctx.jobs.submit(spin(jobId, 1_000, tag));
      const running = await until(ctx.jobs, jobId, (j) => j.attempts[0]?.started_at !== undefined);
      const victim = running.attempts[0]!.executor;
      const proc = executors.get(victim)!;
      const t0 = Date.now();
      proc.kill(kind === 'kill' ? 'SIGKILL' : 'SIGSTOP');
      const redeployed = await until(ctx.jobs, jobId, (j) => j.attempts[1]?.started_at !== undefined);
      samples.push(redeployed.attempts[1]!.started_at! - t0);
      await until(ctx.jobs, jobId, (j) => j.state === 'succeeded');
      const from = ctx.broker.logs.length;
      if (kind === 'kill') {
        await proc.exited;
        await start(victim);
      } else {
        proc.kill('SIGCONT');
        await ctx.broker.waitForLog({ msg: 'peer up', peer: victim }, 20_000, from);
      }
    }
  } finally {
    for (const p of executors.values()) await p.stop();
  }
  return samples;
}

/**
 * An executor in this process that answers every assignment with a result at once, and measures how long
 * the broker takes to decide and commit (send -> acknowledgement). Every tenth job also gets a forged
 * result from a node never assigned it, timed from send to the rejection.
 */
async function decisionLatency(config: UcpConfig, dir: string, hubUrl: string, jobs: JobClient): Promise<{ accept: number[]; reject: number[] }> {
  const logger = createLogger({ level: 'warn', format: 'json', destination: process.stderr });
  const accept: number[] = [];
  const reject: number[] = [];
  const rejections = new Map<string, () => void>();
  const links: NodeLink[] = [];
  const stores: NodeStore[] = [];
  try {
    for (let i = 0; i < LOAD_EXECUTORS + 1; i++) {
      const id = i < LOAD_EXECUTORS ? `load-exec-${i}` : 'load-forger';
      const store = NodeStore.open({ dir: join(dir, id), nodeId: id, sync: config.store.sync });
      stores.push(store);
      const link = NodeLink.create({ ...linkOptionsFromConfig(config, logger), hubUrl, nodeId: id, role: 'executor', store, announce: true, watchPresence: false });
      links.push(link);
      if (i < LOAD_EXECUTORS) {
        link.setHeartbeatFields(() => ({ capabilities: { cpu_cores: availableParallelism(), free_cpu_capacity: 100, free_memory: 2 ** 30, free_disk_space: 2 ** 30, tags: ['decide'], on_mains_power: true }, running_jobs: [], job_slots: DECISIONS_IN_FLIGHT }));
        link.on('job_assign', (msg) => {
          const { spec, attempt } = msg.body;
          const t0 = performance.now();
          void link
            .sendDurable(msg.from, 'job_result', { job_id: spec.job_id, attempt, outcome: 'exited', exit_code: 0, message: 'exited with code 0', duration_ms: 0, archive: new Uint8Array([0x50, 0x4b, 5, 6, ...new Uint8Array(18)]), files: [], missing: [], named: [] })
            .then((id) => link.delivered(id))
            .then(() => {
              if (Number(spec.job_id.slice('decide-'.length)) >= WARMUP_DECISIONS) accept.push(performance.now() - t0);
            })
            // Only the link stopping at the end gets here.
            .catch(() => undefined);
        });
      } else {
        link.on('job_verdict', (msg) => rejections.get(msg.body.job_id)?.());
      }
      await link.connect();
    }
    const forger = links[LOAD_EXECUTORS]!;
    await sleep(1_500);
    let next = 0;
    const waiting = new Map<string, () => void>();
    const unsubscribe = jobs.subscribe(({ job }) => {
      if (job.state === 'succeeded' || job.state === 'failed') waiting.get(job.job_id)?.();
    });
    await Promise.all(
      Array.from({ length: DECISIONS_IN_FLIGHT }, async () => {
        while (next < WARMUP_DECISIONS + DECISIONS) {
          const n = next++;
          const jobId = `decide-${n}`;
          const done = new Promise<void>((resolve) => waiting.set(jobId, resolve));
          await jobs.submit({ ...spin(jobId, 0, 'decide') });
          await done;
          if (n % 10 === 0) {
            const rejected = new Promise<void>((resolve) => rejections.set(jobId, resolve));
            const t0 = performance.now();
            await forger.sendDurable('f-broker', 'job_result', { job_id: jobId, attempt: 1, outcome: 'exited', exit_code: 0, message: 'forged', duration_ms: 0, archive: new Uint8Array(22), files: [], missing: [], named: [] });
            await rejected;
            if (n >= WARMUP_DECISIONS) reject.push(performance.now() - t0);
          }
        }
      }),
    );
    unsubscribe();
  } finally {
    for (const link of links) await link.stop();
    for (const store of stores) await store.close();
  }
  return { accept, reject };
}

export async function failoverBench(): Promise<BenchResult> {
  const dir = tempDir('ucp-bench-failover-');
  const port = await freePort();
  const hubUrl = `mqtt://127.0.0.1:${port}`;
  const common = ['--hub', hubUrl, '--cluster', 'benchfo', '--log-level', 'info'];
  const procs: Proc[] = [];
  let client: NodeRuntime | undefined;
  try {
    procs.push(await startHubProcess(port));
    const broker = ucp(['broker', '--node-id', 'f-broker', '--data-dir', join(dir, 'broker'), ...common]);
    procs.push(broker, ucp(['datastore', '--node-id', 'f-store', '--data-dir', join(dir, 'store'), ...common]));
    await broker.waitForLog({ msg: 'peer up', peer: 'f-store' });
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'benchfo', 'hub.url': hubUrl, 'log.level': 'warn' } });
    client = NodeRuntime.create({ config, nodeId: 'f-client', role: 'client', dataDir: join(dir, 'client'), logger: createLogger({ level: 'warn', format: 'json', destination: process.stderr }) });
    const data = new DataClient(client.link, 10_000);
    const jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    await data.put('bench/spin-for.wasm', readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'spin-for.wasm')));
    const ctx = { dir, common, broker, jobs };

    const killed = summarize(await failoverTrials('kill', ctx));
    const stopped = summarize(await failoverTrials('stop', ctx));
    const decisions = await decisionLatency(config, dir, hubUrl, jobs);
    const accept = summarize(decisions.accept);
    const reject = summarize(decisions.reject);
    // The broker's own timing of the same decisions, from its handler's start to the commit: what the
    // round trips above add is the hub, the queues of a saturated broker, and this process's own turns.
    const reply = await client.link.request('f-broker', 'status_request', {});
    const inBroker = reply.kind === 'status' ? reply.body.timings?.result_decision_ms : undefined;
    if (inBroker === undefined) throw new Error('the broker reported no result decision timings');
    const deadAfter = config.liveness.dead_after_ms;
    return {
      suite: 'failover',
      rows: [
        { metric: `kill -9 -> redeployed attempt running p50 (ms, ${TRIALS} trials)`, bare: null, project: round(killed.p50Ms, 0), ratio: null, target: '< 1000 (will)', pass: killed.p50Ms < 1_000 },
        { metric: 'kill -9 -> redeployed attempt running p99 (ms)', bare: null, project: round(killed.p99Ms, 0), ratio: null, target: '-', pass: null },
        { metric: `SIGSTOP -> redeployed attempt running p50 (ms, ${TRIALS} trials)`, bare: null, project: round(stopped.p50Ms, 0), ratio: null, target: '< 6000', pass: stopped.p50Ms < 6_000 },
        { metric: 'SIGSTOP -> redeployed attempt running p99 (ms)', bare: null, project: round(stopped.p99Ms, 0), ratio: null, target: '< 6000', pass: stopped.p99Ms < 6_000 },
        { metric: `FCFS accept incl. commit p50 (ms, ${DECISIONS} results after ${WARMUP_DECISIONS}, ${DECISIONS_IN_FLIGHT} in flight)`, bare: null, project: round(accept.p50Ms), ratio: null, target: '-', pass: null },
        { metric: 'FCFS accept incl. commit p99 (ms)', bare: null, project: round(accept.p99Ms), ratio: null, target: '-', pass: null },
        { metric: 'FCFS decision in the broker, receipt to commit, p50 (ms, last 1,024)', bare: null, project: inBroker.p50_ms, ratio: null, target: '-', pass: null },
        { metric: 'FCFS decision in the broker, receipt to commit, p99 (ms)', bare: null, project: inBroker.p99_ms, ratio: null, target: '<= 5', pass: inBroker.p99_ms <= 5 },
        { metric: 'FCFS reject (forged result) p50 (ms)', bare: null, project: round(reject.p50Ms), ratio: null, target: '-', pass: null },
        { metric: 'FCFS reject (forged result) p99 (ms)', bare: null, project: round(reject.p99Ms), ratio: null, target: '-', pass: null },
      ],
      details: { killed, stopped, accept, reject, inBroker, trials: TRIALS, decisions: DECISIONS, warmupDecisions: WARMUP_DECISIONS, inFlight: DECISIONS_IN_FLIGHT, deadAfterMs: deadAfter, heartbeatIntervalMs: config.liveness.heartbeat_interval_ms },
    };
  } finally {
    await client?.stop();
    for (const p of procs.reverse()) await p.stop();
    removeDir(dir);
  }
}
