/**
 * Jobs benchmark: a trivial WASM job end to end (submit -> accepted result at the client), one at a time
 * for latency and many in flight for sustained throughput, with two executors. A bare request/reply
 * through the same hub is measured in the same run as the baseline every job pays several times.
 *
 * Processes: hub, broker, datastore, two executors (`ucp` each), and this client.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { isFinal, type JobSpec, type JobView } from '../../src/protocol/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, type Proc } from '../helpers/processes.js';
import type { BenchResult } from './run.js';
import { round, summarize } from './stats.js';

const WARMUP_JOBS = 100;
const LATENCY_JOBS = 1_000;
const THROUGHPUT_JOBS = 5_000;
const IN_FLIGHT = 256;
const PINGS = 2_000;

function trivialJob(id: string): JobSpec {
  return { job_id: id, wasm_module: 'bench/exit-code.wasm', capabilities: {}, argv: ['exit-code', '0'], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 30, max_memory_mb: 16 };
}

/** Submits a job and resolves with its final state, as pushed by the broker. */
function runner(jobs: JobClient): (spec: JobSpec) => Promise<JobView> {
  const waiting = new Map<string, (job: JobView) => void>();
  jobs.subscribe(({ job }) => {
    if (isFinal(job.state)) waiting.get(job.job_id)?.(job);
  });
  return async (spec) => {
    const done = new Promise<JobView>((resolve) => waiting.set(spec.job_id, resolve));
    await jobs.submit(spec);
    const job = await done;
    waiting.delete(spec.job_id);
    if (job.state !== 'succeeded') throw new Error(`bench job ${spec.job_id} ${job.state}: ${job.reason ?? ''}`);
    return job;
  };
}

export async function jobsBench(): Promise<BenchResult> {
  const dir = tempDir('ucp-bench-jobs-');
  const port = await freePort();
  const hub = `mqtt://127.0.0.1:${port}`;
  const common = ['--hub', hub, '--cluster', 'benchjobs', '--log-level', 'info'];
  const procs: Proc[] = [];
  let client: NodeRuntime | undefined;
  try {
    procs.push(await startHubProcess(port));
    const broker = ucp(['broker', '--node-id', 'b-broker', '--data-dir', join(dir, 'broker'), ...common]);
    procs.push(broker, ucp(['datastore', '--node-id', 'b-store', '--data-dir', join(dir, 'store'), ...common]));
    for (const id of ['b-exec-1', 'b-exec-2']) procs.push(ucp(['executor', '--node-id', id, '--data-dir', join(dir, id), ...common]));
    for (const peer of ['b-store', 'b-exec-1', 'b-exec-2']) await broker.waitForLog({ msg: 'peer up', peer });

    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'benchjobs', 'hub.url': hub, 'log.level': 'warn' } });
    client = NodeRuntime.create({ config, nodeId: 'b-client', role: 'client', dataDir: join(dir, 'client'), logger: createLogger({ level: 'warn', format: 'json', destination: process.stderr }) });
    const data = new DataClient(client.link, 10_000);
    const jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    await data.put('bench/exit-code.wasm', readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'exit-code.wasm')));
    const run = runner(jobs);

    // Baseline: the bare round trip to the broker through the same hub.
    const pings: number[] = [];
    for (let i = 0; i < PINGS; i++) {
      const t0 = performance.now();
      await client.link.request('b-broker', 'ping', {});
      if (i >= PINGS / 10) pings.push(performance.now() - t0);
    }
    const ping = summarize(pings);

    for (let i = 0; i < WARMUP_JOBS; i++) await run(trivialJob(`warm-${i}`));
    const samples: number[] = [];
    // submit: to the record; assign: queue to assignment; start: assignment to running; run: running to
    // the result's arrival; accept: arrival to the committed decision; notify: decision to the client.
    const stages = { submit: [] as number[], assign: [] as number[], start: [] as number[], run: [] as number[], accept: [] as number[], notify: [] as number[] };
    for (let i = 0; i < LATENCY_JOBS; i++) {
      const t0 = performance.now();
      const w0 = Date.now();
      const job = await run(trivialJob(`lat-${i}`));
      const w1 = Date.now();
      samples.push(performance.now() - t0);
      const a = job.attempts[0]!;
      stages.submit.push(job.created_at - w0);
      stages.assign.push(a.assigned_at - job.created_at);
      stages.start.push(a.started_at! - a.assigned_at);
      stages.run.push(a.ended_at! - a.started_at!);
      stages.accept.push(job.updated_at - a.ended_at!);
      stages.notify.push(w1 - job.updated_at);
    }
    // Where the time goes, from the broker's wall-clock stamps (ms resolution): written to the JSON.
    const stageSummary = Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, summarize(v)]));
    const latency = summarize(samples);

    const t0 = performance.now();
    let next = 0;
    const perExecutor: Record<string, number> = {};
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < THROUGHPUT_JOBS) {
          const job = await run(trivialJob(`tp-${next++}`));
          const ex = job.result?.executor ?? '?';
          perExecutor[ex] = (perExecutor[ex] ?? 0) + 1;
        }
      }),
    );
    const jobsPerS = THROUGHPUT_JOBS / ((performance.now() - t0) / 1_000);

    return {
      suite: 'jobs',
      rows: [
        { metric: 'transport baseline: request/reply p50 (ms)', bare: round(ping.p50Ms), project: null, ratio: null, target: '-', pass: null },
        { metric: 'trivial job submit->result p50 (ms)', bare: round(ping.p50Ms), project: round(latency.p50Ms), ratio: round(latency.p50Ms / ping.p50Ms, 1), target: '<= 5 ms', pass: latency.p50Ms <= 5 },
        { metric: 'trivial job submit->result p99 (ms)', bare: round(ping.p99Ms), project: round(latency.p99Ms), ratio: round(latency.p99Ms / ping.p99Ms, 1), target: '<= 20 ms', pass: latency.p99Ms <= 20 },
        { metric: `sustained jobs/s (2 executors, ${IN_FLIGHT} in flight)`, bare: null, project: Math.round(jobsPerS), ratio: null, target: '>= 1000', pass: jobsPerS >= 1_000 },
      ],
      details: { ping, latency, stages: stageSummary, jobsPerS, perExecutor, latencyJobs: LATENCY_JOBS, throughputJobs: THROUGHPUT_JOBS, inFlight: IN_FLIGHT },
    };
  } finally {
    await client?.stop();
    for (const p of procs.reverse()) await p.stop();
    removeDir(dir);
  }
}
