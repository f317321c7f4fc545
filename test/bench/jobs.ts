/**
 * Jobs benchmark: a trivial WASM job end to end (submit -> accepted result at the client), one at a time
 * for latency (just after start, and again at steady state) and many in flight for sustained throughput.
 * A bare request/reply through the same hub is measured in the same run as the baseline every job pays
 * several times.
 *
 * ucp-edge: hub, broker, datastore and 1, 2 or 4 executors (`ucp` each), and this client; the two-executor
 * cluster also runs with store.sync = "flush", and with the hub, broker and datastore in one process
 * (`ucp up --executors 0`). In the same run, the same module and the same shape through BullMQ on
 * redis-server (AOF everysec, which like LMDB's commit mode survives a killed process) with two worker
 * processes of concurrency 2 (see bullmq-worker.mjs), with and without a job directory per job. Both
 * report the CPU time per job of the throughput run, summed over every process involved. The two-executor
 * cluster (both shapes) and BullMQ with a job directory, the pair the targets compare, run side by side
 * and take turns at each measured phase (compare()); the other shapes run one after another.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { percentile } from '../../src/cli/latency.js';
import { isFinal, type JobSpec, type JobView } from '../../src/protocol/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { Queue, QueueEvents } from 'bullmq';
import { cleanEnv, freePort, Proc, removeDir, ROOT, startHubProcess, tempDir, ucp } from '../helpers/processes.js';
import { cpuSeconds, tree } from './proc-stats.js';
import type { BenchResult } from './run.js';
import { round, summarize } from './stats.js';

const WARMUP_JOBS = 100;
/**
 * Jobs between the cold and the steady-state latency runs. V8 compiles a process's hot functions with its
 * optimizing compiler only after many calls: a ucp-edge job measured 2.5 ms at p50 over its first 500 jobs
 * and 0.9-1.0 ms from its 4,500th on (2.2 ms throughout with that compiler off); BullMQ 1.3 ms after 100
 * jobs and 1.0 ms after 6,000. A unit runs for weeks, so steady state is what its users see; the cold
 * figures are reported beside.
 */
const STEADY_JOBS = 5_000;
const LATENCY_JOBS = 1_000;
const THROUGHPUT_JOBS = 5_000;
/** Turns the compared shapes take at each measured phase (see compare()). */
const ROUNDS = 3;
const IN_FLIGHT = 256;
const PINGS = 2_000;

/**
 * The job BullMQ runs too: the module's exit code is its whole outcome. Like a REC job without a results
 * receiver it keeps no archive (`keep_archive: false`), so neither side stores a result file.
 */
function trivialJob(id: string): JobSpec {
  return { keep_archive: false, job_id: id, wasm_module: 'bench/exit-code.wasm', capabilities: {}, argv: ['exit-code', '0'], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 30, max_memory_mb: 16 };
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

async function until(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const MODULE_FILE = join(ROOT, 'test', 'fixtures', 'wasm', 'exit-code.wasm');

interface ShapeFigures {
  /** One job at a time, at steady state (after STEADY_JOBS). */
  latency?: ReturnType<typeof summarize>;
  /** One job at a time, just after start (after WARMUP_JOBS). */
  coldLatency?: ReturnType<typeof summarize>;
  /** Where the time goes, from the broker's wall-clock stamps (ms resolution). */
  stages?: Record<string, ReturnType<typeof summarize>>;
  /** The median of the throughput rounds. */
  jobsPerS: number;
  jobsPerSRounds?: number[];
  perWorker?: Record<string, number>;
  /** CPU time per job during the throughput run, all processes together (this one, the client, included). */
  cpuMsPerJob?: number;
  /** The same split by process: where the CPU goes. */
  cpuMsPerJobBy?: Record<string, number>;
}

/**
 * CPU seconds used so far by each of these processes with its descendants (a sandbox, live or reaped), and
 * by this one (`bench`: the client, or BullMQ's producer).
 */
function cpuOf(procs: Readonly<Record<string, number>>): Record<string, number> {
  const own = process.cpuUsage();
  const out: Record<string, number> = { bench: (own.user + own.system) / 1e6 };
  for (const [name, pid] of Object.entries(procs)) {
    const [top, ...below] = tree(pid);
    out[name] = top === undefined ? 0 : cpuSeconds(top, true) + below.reduce((sum, p) => sum + cpuSeconds(p), 0);
  }
  return out;
}

/** Runs `count` jobs with IN_FLIGHT outstanding; counts them by worker when told how. */
async function inFlight<T>(run: (id: string) => Promise<T>, prefix: string, count: number, worker?: (job: T) => string, perWorker: Record<string, number> = {}): Promise<Record<string, number>> {
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < count) {
        const job = await run(`${prefix}-${next++}`);
        if (worker !== undefined) perWorker[worker(job)] = (perWorker[worker(job)] ?? 0) + 1;
      }
    }),
  );
  return perWorker;
}

/** A running system under test: ucp-edge's cluster or BullMQ's, ready for jobs. */
interface Shape<T> {
  run(id: string): Promise<T>;
  /** The processes whose CPU a job costs, by name (this process is added as `bench`). */
  readonly procs: Readonly<Record<string, number>>;
  onLatency?(job: T, w0: number, w1: number): void;
  worker?(job: T): string;
  close(): Promise<void>;
}

/** What a shape measured, gathered over its rounds. */
class Tally {
  cold: number[] = [];
  warm: number[] = [];
  jobsPerSRounds: number[] = [];
  private tpJobs = 0;
  private readonly cpu: Record<string, number> = {};
  readonly perWorker: Record<string, number> = {};

  addThroughput(jobs: number, seconds: number, cpu: Record<string, number>): void {
    this.tpJobs += jobs;
    this.jobsPerSRounds.push(jobs / seconds);
    for (const [name, s] of Object.entries(cpu)) this.cpu[name] = (this.cpu[name] ?? 0) + s;
  }

  figures(withLatency: boolean, withWorkers: boolean): ShapeFigures {
    const cpuMsPerJobBy = Object.fromEntries(Object.entries(this.cpu).map(([name, s]) => [name, round((s * 1_000) / this.tpJobs, 3)]));
    return {
      ...(withLatency ? { latency: summarize(this.warm), coldLatency: summarize(this.cold) } : {}),
      jobsPerS: percentile([...this.jobsPerSRounds].sort((a, b) => a - b), 0.5),
      jobsPerSRounds: this.jobsPerSRounds.map((r) => Math.round(r)),
      cpuMsPerJob: Object.values(cpuMsPerJobBy).reduce((a, b) => a + b, 0),
      cpuMsPerJobBy,
      ...(withWorkers ? { perWorker: this.perWorker } : {}),
    };
  }
}

/** WARMUP_JOBS one at a time, then `coldJobs` one at a time (cold), then STEADY_JOBS with IN_FLIGHT in flight. */
async function warmUp<T>(shape: Shape<T>, tally: Tally, coldJobs: number): Promise<void> {
  for (let i = 0; i < WARMUP_JOBS; i++) await shape.run(`warm-${i}`);
  tally.cold.push(...(await sequential(shape, 'cold', coldJobs, false)));
  await inFlight((id) => shape.run(id), 'steady', STEADY_JOBS);
}

async function sequential<T>(shape: Shape<T>, prefix: string, count: number, record: boolean): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const w0 = Date.now();
    const job = await shape.run(`${prefix}-${i}`);
    samples.push(performance.now() - t0);
    if (record) shape.onLatency?.(job, w0, Date.now());
  }
  return samples;
}

async function throughput<T>(shape: Shape<T>, tally: Tally, prefix: string): Promise<void> {
  const cpu0 = cpuOf(shape.procs);
  const t0 = performance.now();
  await inFlight((id) => shape.run(id), prefix, THROUGHPUT_JOBS, shape.worker, tally.perWorker);
  const seconds = (performance.now() - t0) / 1_000;
  const cpu1 = cpuOf(shape.procs);
  tally.addThroughput(THROUGHPUT_JOBS, seconds, Object.fromEntries(Object.keys(cpu1).map((name) => [name, cpu1[name]! - cpu0[name]!])));
}

/**
 * The comparison itself: both shapes run side by side, their measured phases taking turns, so that a
 * change in the machine's speed during the run (other tenants of a VM's host: on the 2-core VM of these
 * figures, the same code's CPU per job moved by half from one run to the next) weighs on both alike.
 * Each warms up as one job at a time after WARMUP_JOBS (cold), then STEADY_JOBS in flight; then
 * LATENCY_JOBS one at a time (steady state) and THROUGHPUT_JOBS in flight, in ROUNDS turns each.
 */
async function compare(shapes: ReadonlyArray<Shape<unknown>>): Promise<ShapeFigures[]> {
  const tallies = shapes.map(() => new Tally());
  for (const [i, shape] of shapes.entries()) await warmUp(shape, tallies[i]!, LATENCY_JOBS);
  const chunk = Math.ceil(LATENCY_JOBS / ROUNDS);
  for (let r = 0; r < ROUNDS; r++) for (const [i, shape] of shapes.entries()) tallies[i]!.warm.push(...(await sequential(shape, `lat${r}`, chunk, true)));
  for (let r = 0; r < ROUNDS; r++) for (const [i, shape] of shapes.entries()) await throughput(shape, tallies[i]!, `tp${r}`);
  return shapes.map((shape, i) => tallies[i]!.figures(true, shape.worker !== undefined));
}

/** A shape measured alone, for the secondary figures: warm-up, `latencyJobs` one at a time, one throughput run. */
async function alone<T>(shape: Shape<T>, latencyJobs = 0): Promise<ShapeFigures> {
  const tally = new Tally();
  try {
    await warmUp(shape, tally, latencyJobs);
    tally.warm.push(...(await sequential(shape, 'lat', latencyJobs, false)));
    await throughput(shape, tally, 'tp');
    return tally.figures(latencyJobs > 0, shape.worker !== undefined);
  } finally {
    await shape.close();
  }
}

/**
 * A ucp-edge cluster with `executors` executors and this process as its client. `unit`: the hub, broker and
 * datastore run in one process (`ucp up --executors 0`), as a field unit may run them; otherwise each role
 * is a process of its own, as the systemd units run them.
 */
async function startUcp(executors: number, sync: 'commit' | 'flush', unit = false): Promise<Shape<JobView> & { ping(): Promise<ReturnType<typeof summarize>>; stages: Record<string, number[]> }> {
  const dir = tempDir('ucp-bench-jobs-');
  const port = await freePort();
  const hub = `mqtt://127.0.0.1:${port}`;
  // Warn, as nodes log by default when not on a terminal: a line per job would be measured too.
  const common = ['--hub', hub, '--cluster', 'benchjobs', '--log-level', 'warn', '--set', `store.sync=${sync}`];
  const procs: Proc[] = [];
  let client: NodeRuntime | undefined;
  const close = async () => {
    await client?.stop();
    for (const p of procs.reverse()) await p.stop();
    removeDir(dir);
  };
  try {
    const [brokerId, storeId] = unit ? ['b-broker', 'b-datastore'] : ['b-broker', 'b-store'];
    if (unit) {
      // Nodes `b-broker` and `b-datastore` beside the hub, which is node `b`.
      const up = ucp(['up', '--port', String(port), '--executors', '0', '--node-id', 'b', '--data-dir', dir, '--cluster', 'benchjobs', '--log-level', 'warn', '--set', `store.sync=${sync}`]);
      procs.push(up);
      await up.waitForLine(/hub listening/, 20_000);
    } else {
      procs.push(await startHubProcess(port));
      procs.push(ucp(['broker', '--node-id', brokerId, '--data-dir', join(dir, 'broker'), ...common]), ucp(['datastore', '--node-id', storeId, '--data-dir', join(dir, 'store'), ...common]));
    }
    const ids = Array.from({ length: executors }, (_, i) => `b-exec-${i + 1}`);
    for (const id of ids) procs.push(ucp(['executor', '--node-id', id, '--data-dir', join(dir, id), ...common]));
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'benchjobs', 'hub.url': hub, 'log.level': 'warn', 'store.sync': sync } });
    client = NodeRuntime.create({ config, nodeId: 'b-client', role: 'client', dataDir: join(dir, 'client'), logger: createLogger({ level: 'warn', format: 'json', destination: process.stderr }) });
    const data = new DataClient(client.link, 10_000);
    const jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    const link = client.link;
    await until(`every node of the ${executors}-executor cluster to be up`, () => [brokerId, storeId, ...ids].every((id) => link.peers.get(id)?.alive === true));
    await data.put('bench/exit-code.wasm', readFileSync(MODULE_FILE));
    const run = runner(jobs);
    // submit: to the record; assign: queue to assignment; start: assignment to running; run: running to
    // the result's arrival; accept: arrival to the committed decision; notify: decision to the client.
    const stages = { submit: [] as number[], assign: [] as number[], start: [] as number[], run: [] as number[], accept: [] as number[], notify: [] as number[] };
    return {
      run: (id) => run(trivialJob(id)),
      procs: Object.fromEntries((unit ? ['hub+broker+datastore', ...ids] : ['hub', 'broker', 'datastore', ...ids]).map((name, i) => [name, procs[i]!.pid])),
      onLatency: (job, w0, w1) => {
        const a = job.attempts[0]!;
        stages.submit.push(job.created_at - w0);
        stages.assign.push(a.assigned_at - job.created_at);
        stages.start.push(a.started_at! - a.assigned_at);
        stages.run.push(a.ended_at! - a.started_at!);
        stages.accept.push(job.updated_at - a.ended_at!);
        stages.notify.push(w1 - job.updated_at);
      },
      worker: (job) => job.result?.executor ?? '?',
      stages,
      ping: async () => {
        const pings: number[] = [];
        for (let i = 0; i < PINGS; i++) {
          const t0 = performance.now();
          await link.request(brokerId, 'ping', {});
          if (i >= PINGS / 10) pings.push(performance.now() - t0);
        }
        return summarize(pings);
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** BullMQ on redis-server with two worker processes of concurrency 2; undefined when redis-server is absent. */
async function startBullmq(stage: 'dir' | 'none'): Promise<Shape<unknown> | undefined> {
  if (spawnSync('redis-server', ['--version']).status !== 0) return undefined;
  const dir = tempDir('ucp-bench-redis-');
  const port = await freePort();
  const procs: Proc[] = [];
  const queueName = `bench-${stage}`;
  const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
  let queue: Queue | undefined;
  let events: QueueEvents | undefined;
  const close = async () => {
    await events?.close();
    await queue?.close();
    for (const p of procs.reverse()) await p.stop();
    removeDir(dir);
  };
  try {
    const redis = new Proc('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec'], cleanEnv());
    procs.push(redis);
    await redis.waitForLine(/Ready to accept connections/, 10_000);
    for (let i = 0; i < 2; i++) {
      const worker = new Proc(process.execPath, [join(ROOT, 'test', 'bench', 'bullmq-worker.mjs'), String(port), queueName, '2', MODULE_FILE, stage], cleanEnv());
      procs.push(worker);
      await worker.waitForLine(/worker ready/, 10_000);
    }
    queue = new Queue(queueName, { connection });
    // Each waiting job listens for the connection closing; IN_FLIGHT of them wait at once.
    queue.setMaxListeners(IN_FLIGHT + 16);
    events = new QueueEvents(queueName, { connection });
    await events.waitUntilReady();
    const ev = events;
    const q = queue;
    return {
      run: async (id) => {
        const job = await q.add('wasm', { argv: ['exit-code', '0'] }, { jobId: id, removeOnComplete: { count: 1_000 }, removeOnFail: { count: 1_000 } });
        return job.waitUntilFinished(ev, 30_000);
      },
      procs: Object.fromEntries(procs.map((p, i) => [i === 0 ? 'redis' : `worker-${i}`, p.pid])),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

export async function jobsBench(): Promise<BenchResult> {
  const twoShape = await startUcp(2, 'commit');
  let two: ShapeFigures & { ping?: ReturnType<typeof summarize>; stages?: Record<string, ReturnType<typeof summarize>> };
  let unit: ShapeFigures;
  let bullDir: ShapeFigures | undefined;
  try {
    const ping = await twoShape.ping();
    const unitShape = await startUcp(2, 'commit', true);
    try {
      const bullShape = await startBullmq('dir');
      try {
        const [ours, oneProcess, theirs] = await compare(bullShape !== undefined ? [twoShape, unitShape, bullShape] : [twoShape, unitShape]);
        two = ours!;
        unit = oneProcess!;
        bullDir = theirs;
      } finally {
        await bullShape?.close();
      }
    } finally {
      await unitShape.close();
    }
    two = { ...two, ping, stages: Object.fromEntries(Object.entries(twoShape.stages).map(([k, v]) => [k, summarize(v)])) };
  } finally {
    await twoShape.close();
  }
  const one = await alone(await startUcp(1, 'commit'));
  const four = await alone(await startUcp(4, 'commit'));
  const flush = await alone(await startUcp(2, 'flush'));
  const bullBareShape = await startBullmq('none');
  const bullBare = bullBareShape !== undefined ? await alone(bullBareShape, LATENCY_JOBS) : undefined;
  if (bullDir === undefined) process.stderr.write('redis-server is not installed: the BullMQ columns are left out (apt-get install redis-server)\n');
  const ping = two.ping!;
  const latency = two.latency!;
  const bull = bullDir?.latency;
  const cold = two.coldLatency!;
  const bullCold = bullDir?.coldLatency;
  const rows: BenchResult['rows'] = [
    { metric: 'transport baseline: request/reply p50 (ms)', bare: round(ping.p50Ms), project: null, ratio: null, target: '-', pass: null },
    { metric: `trivial job p50 (ms), steady state (after ${STEADY_JOBS} jobs), BullMQ job dir as baseline`, bare: bull !== undefined ? round(bull.p50Ms) : null, project: round(latency.p50Ms), ratio: bull !== undefined ? round(latency.p50Ms / bull.p50Ms, 1) : null, target: '<= 5 ms and <= BullMQ', pass: latency.p50Ms <= 5 && (bull === undefined || latency.p50Ms <= bull.p50Ms) },
    { metric: `trivial job p99 (ms), steady state (after ${STEADY_JOBS} jobs), BullMQ job dir as baseline`, bare: bull !== undefined ? round(bull.p99Ms) : null, project: round(latency.p99Ms), ratio: bull !== undefined ? round(latency.p99Ms / bull.p99Ms, 1) : null, target: '<= 20 ms', pass: latency.p99Ms <= 20 },
    { metric: `trivial job p50 (ms), cold (after ${WARMUP_JOBS} jobs), BullMQ job dir as baseline`, bare: bullCold !== undefined ? round(bullCold.p50Ms) : null, project: round(cold.p50Ms), ratio: bullCold !== undefined ? round(cold.p50Ms / bullCold.p50Ms, 1) : null, target: '-', pass: null },
    { metric: `trivial job p99 (ms), cold (after ${WARMUP_JOBS} jobs), BullMQ job dir as baseline`, bare: bullCold !== undefined ? round(bullCold.p99Ms) : null, project: round(cold.p99Ms), ratio: bullCold !== undefined ? round(cold.p99Ms / bullCold.p99Ms, 1) : null, target: '-', pass: null },
    { metric: `jobs/s, 2 executors / workers, ${IN_FLIGHT} in flight`, bare: bullDir !== undefined ? Math.round(bullDir.jobsPerS) : null, project: Math.round(two.jobsPerS), ratio: bullDir !== undefined ? round(two.jobsPerS / bullDir.jobsPerS, 2) : null, target: '>= 1000 and >= BullMQ', pass: two.jobsPerS >= 1_000 && (bullDir === undefined || two.jobsPerS >= bullDir.jobsPerS) },
    { metric: `CPU per job at ${IN_FLIGHT} in flight, all processes (ms)`, bare: bullDir?.cpuMsPerJob !== undefined ? round(bullDir.cpuMsPerJob) : null, project: round(two.cpuMsPerJob!), ratio: bullDir?.cpuMsPerJob !== undefined ? round(two.cpuMsPerJob! / bullDir.cpuMsPerJob, 2) : null, target: '-', pass: null },
    // Where the CPU goes; BullMQ's split (redis, workers, producer) is in the JSON details.
    ...Object.entries(two.cpuMsPerJobBy!).map(([name, ms]) => ({ metric: `  of which ${name === 'bench' ? 'the client (this process)' : name}`, bare: null, project: round(ms), ratio: null, target: '-', pass: null })),
    // The same cluster with the hub, broker and datastore in one process (`ucp up --executors 0`), taking turns with the two above.
    { metric: 'hub + broker + datastore in one process, 2 executors: p50 (ms), steady state', bare: bull !== undefined ? round(bull.p50Ms) : null, project: round(unit.latency!.p50Ms), ratio: bull !== undefined ? round(unit.latency!.p50Ms / bull.p50Ms, 1) : null, target: '-', pass: null },
    { metric: 'hub + broker + datastore in one process, 2 executors: p99 (ms), steady state', bare: bull !== undefined ? round(bull.p99Ms) : null, project: round(unit.latency!.p99Ms), ratio: bull !== undefined ? round(unit.latency!.p99Ms / bull.p99Ms, 1) : null, target: '-', pass: null },
    { metric: `hub + broker + datastore in one process, 2 executors: jobs/s, ${IN_FLIGHT} in flight`, bare: bullDir !== undefined ? Math.round(bullDir.jobsPerS) : null, project: Math.round(unit.jobsPerS), ratio: bullDir !== undefined ? round(unit.jobsPerS / bullDir.jobsPerS, 2) : null, target: '-', pass: null },
    { metric: 'hub + broker + datastore in one process, 2 executors: CPU per job (ms)', bare: bullDir?.cpuMsPerJob !== undefined ? round(bullDir.cpuMsPerJob) : null, project: round(unit.cpuMsPerJob!), ratio: bullDir?.cpuMsPerJob !== undefined ? round(unit.cpuMsPerJob! / bullDir.cpuMsPerJob, 2) : null, target: '-', pass: null },
    { metric: 'BullMQ without a job directory: p50 (ms) / jobs/s', bare: bullBare?.latency !== undefined ? round(bullBare.latency.p50Ms) : null, project: bullBare !== undefined ? Math.round(bullBare.jobsPerS) : null, ratio: null, target: '-', pass: null },
    { metric: 'ucp-edge jobs/s with 1 executor', bare: null, project: Math.round(one.jobsPerS), ratio: null, target: '-', pass: null },
    { metric: 'ucp-edge jobs/s with 4 executors', bare: null, project: Math.round(four.jobsPerS), ratio: null, target: '-', pass: null },
    { metric: 'ucp-edge jobs/s, 2 executors, store.sync = "flush"', bare: null, project: Math.round(flush.jobsPerS), ratio: null, target: '-', pass: null },
  ];
  return {
    suite: 'jobs',
    rows,
    details: { ucp: { twoExecutors: two, oneProcessUnit: unit, oneExecutor: one, fourExecutors: four, flushTwoExecutors: flush }, bullmq: { jobDir: bullDir ?? null, noJobDir: bullBare ?? null }, warmupJobs: WARMUP_JOBS, steadyJobs: STEADY_JOBS, latencyJobs: LATENCY_JOBS, throughputJobs: THROUGHPUT_JOBS, inFlight: IN_FLIGHT },
  };
}
