/**
 * The footprint bench's client, in a process of its own so that its memory, CPU and writes are measured
 * apart from the orchestrating bench (and counted as the client role's).
 *
 * Runs trivial jobs (`exit-code 0`) through a broker, either closed-loop (`inFlight` at once, as fast as
 * the cluster takes them) or open-loop at a steady `rate` per second. One JSON line on stdout per event:
 * `{"type":"ready"}` once connected, `{"type":"progress","done","failed","ms"}` (ms: the last job's submit->result) every `every` finished jobs,
 * `{"type":"done",...}` at the end.
 *
 * Usage: node --import tsx footprint-load.ts '<json LoadOptions>'
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { isFinal, type JobSpec, type JobView } from '../../src/protocol/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { ROOT } from '../helpers/processes.js';

export interface LoadOptions {
  hub: string;
  cluster: string;
  nodeId: string;
  dataDir: string;
  /** Store the module on a datastore first (once per cluster). */
  put: boolean;
  count: number;
  /** Job ids are `<prefix>-<n>`; unique per cluster. */
  prefix: string;
  /** Jobs per second, open loop; 0: closed loop with `inFlight` outstanding. */
  rate: number;
  inFlight: number;
  every: number;
  /** store.sync of the client's own store; the default configuration's when absent. */
  sync?: 'commit' | 'flush';
}

export const MODULE_NAME = 'bench/exit-code.wasm';

export function trivialJob(id: string): JobSpec {
  return { job_id: id, wasm_module: MODULE_NAME, capabilities: {}, argv: ['exit-code', '0'], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 60, max_memory_mb: 16 };
}

/** A job with no final update after this long is asked about; an update can be lost in a hub hiccup. */
const ASK_AFTER_MS = 60_000;

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

async function main(): Promise<void> {
  const opts = JSON.parse(process.argv[2] ?? '') as LoadOptions;
  const config = loadConfig({ env: {}, overrides: { 'node.cluster': opts.cluster, 'hub.url': opts.hub, 'log.level': 'warn', ...(opts.sync !== undefined ? { 'store.sync': opts.sync } : {}) } });
  const node = NodeRuntime.create({ config, nodeId: opts.nodeId, role: 'client', dataDir: opts.dataDir, logger: createLogger({ level: 'warn', format: 'json', destination: process.stderr }) });
  const data = new DataClient(node.link, 30_000);
  const jobs = new JobClient(node.link, node.store, data);
  const waiting = new Map<string, (job: JobView) => void>();
  jobs.subscribe(({ job }) => {
    if (isFinal(job.state)) waiting.get(job.job_id)?.(job);
  });
  await node.connect();
  if (opts.put) await data.put(MODULE_NAME, readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'exit-code.wasm')));
  emit({ type: 'ready' });

  let done = 0;
  let failed = 0;
  const failures: string[] = [];
  const t0 = performance.now();
  const latencies: number[] = [];

  const runOne = async (n: number): Promise<void> => {
    const id = `${opts.prefix}-${n}`;
    const start = performance.now();
    let job: JobView;
    try {
      const final = new Promise<JobView>((resolve) => waiting.set(id, resolve));
      await jobs.submit(trivialJob(id));
      for (;;) {
        let timer: NodeJS.Timeout | undefined;
        const got = await Promise.race([final, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ASK_AFTER_MS)))]);
        clearTimeout(timer);
        if (got !== undefined) {
          job = got;
          break;
        }
        const asked = await jobs.query(id);
        if (isFinal(asked.state)) {
          job = asked;
          break;
        }
      }
    } catch (err) {
      job = { job_id: id, state: 'failed', reason: `client: ${(err as Error).message}` } as JobView;
    } finally {
      waiting.delete(id);
    }
    const ms = performance.now() - start;
    latencies.push(ms);
    done++;
    if (job.state !== 'succeeded') {
      failed++;
      if (failures.length < 20) failures.push(`${id}: ${job.state}: ${job.reason ?? ''}`);
    }
    if (done % opts.every === 0) emit({ type: 'progress', done, failed, elapsedMs: Math.round(performance.now() - t0), ms: Math.round(ms) });
  };

  if (opts.rate > 0) {
    // Open loop: job n is submitted at t0 + n/rate, however long the earlier ones take.
    const running: Array<Promise<void>> = [];
    for (let n = 0; n < opts.count; n++) {
      const due = t0 + (n * 1_000) / opts.rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      running.push(runOne(n));
    }
    await Promise.all(running);
  } else {
    let next = 0;
    await Promise.all(
      Array.from({ length: opts.inFlight }, async () => {
        while (next < opts.count) await runOne(next++);
      }),
    );
  }
  latencies.sort((a, b) => a - b);
  emit({ type: 'done', done, failed, failures, elapsedMs: Math.round(performance.now() - t0), p50Ms: latencies[Math.floor(latencies.length / 2)] ?? null });
  await node.stop();
}

await main();
