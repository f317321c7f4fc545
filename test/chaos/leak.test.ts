import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { isFinal, type JobSpec, type JobView } from '../../src/protocol/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { cleanEnv, freePort, Proc, removeDir, ROOT, startHubProcess, tempDir, UCP_BIN, ucp } from '../helpers/processes.js';

const NOFILE = 128;
const JOBS = 2_000;
const WARMUP = 200;
const IN_FLIGHT = 16;
/**
 * Open files may differ between two quiet moments by this much without a leak: each of the executor's two
 * sandbox processes (one per core here) holds one IPC channel in the executor, and a sandbox that is
 * recycled or has just gone idle may be between its old and its new channel when the count is taken.
 */
const FD_SLACK = 2;

function openFiles(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function softNofile(pid: number): number {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  return Number(line?.split(/\s+/)[3]);
}

function trivialJob(id: string): JobSpec {
  return { job_id: id, wasm_module: 'bin/exit-code.wasm', capabilities: {}, argv: ['exit-code', '0'], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 60, max_memory_mb: 16 };
}

/**
 * No leaks under a low open-file limit: a field unit's executor runs job after job for weeks, so anything
 * a job leaves open (a descriptor, a socket, a sandbox process) eventually makes jobs fail with EMFILE and
 * then kills the executor. Real hub, broker, datastore and executor processes; the executor is started
 * under `ulimit -n 128`, which a leak of one descriptor per job exhausts within the first hundred jobs.
 */
describe(`an executor under ulimit -n ${NOFILE}`, () => {
  let dir: string;
  const procs: Proc[] = [];
  let broker: Proc;
  let executor: Proc;
  let client: NodeRuntime;
  let jobs: JobClient;
  const waiting = new Map<string, (job: JobView) => void>();

  beforeAll(async () => {
    dir = tempDir();
    const port = await freePort();
    const common = ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'leak'];
    procs.push(await startHubProcess(port));
    broker = ucp(['broker', '--node-id', 'br', '--data-dir', join(dir, 'br'), ...common]);
    procs.push(broker, ucp(['datastore', '--node-id', 'ds', '--data-dir', join(dir, 'ds'), '--log-level', 'warn', ...common]));
    // exec keeps the pid, so the process counted below is the executor itself, with the low limit.
    executor = new Proc('sh', ['-c', `ulimit -n ${NOFILE} && exec "$0" "$@"`, process.execPath, UCP_BIN, 'executor', '--node-id', 'ex', '--data-dir', join(dir, 'ex'), '--log-level', 'warn', ...common], cleanEnv());
    procs.push(executor);
    for (const peer of ['ds', 'ex']) await broker.waitForLog({ msg: 'peer up', peer }, 20_000);
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'leak', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    client = NodeRuntime.create({ config, nodeId: 'tester', role: 'client', dataDir: join(dir, 'tester'), logger: createLogger({ level: 'silent', format: 'json' }) });
    const data = new DataClient(client.link, 10_000);
    jobs = new JobClient(client.link, undefined, data);
    jobs.subscribe(({ job }) => {
      if (isFinal(job.state)) waiting.get(job.job_id)?.(job);
    });
    await client.connect();
    await data.put('bin/exit-code.wasm', readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'exit-code.wasm')));
  }, 60_000);

  afterAll(async () => {
    await client?.stop();
    for (const p of procs.reverse()) await p.stop();
    removeDir(dir);
  });

  /** Runs jobs from..to-1, IN_FLIGHT at a time; returns the ones that did not succeed. */
  async function run(from: number, to: number): Promise<string[]> {
    const failed: string[] = [];
    let next = from;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < to) {
          const id = `leak-${next++}`;
          const final = new Promise<JobView>((resolve) => waiting.set(id, resolve));
          await jobs.submit(trivialJob(id));
          // A dead executor leaves its jobs queued: end the run instead of waiting for the test's timeout.
          const died = executor.exited.then(({ code, signal }) => ({ job_id: id, state: 'failed', reason: `the executor exited (${signal ?? code})` }) as JobView);
          const job = await Promise.race([final, died]);
          waiting.delete(id);
          if (job.state !== 'succeeded') failed.push(`${id}: ${job.state}: ${job.reason ?? ''}`);
        }
      }),
    );
    return failed;
  }

  it(`runs ${JOBS} trivial jobs with no failure, no open file left behind, and stays up`, async () => {
    expect(softNofile(executor.pid)).toBe(NOFILE);
    expect(await run(0, WARMUP)).toEqual([]);
    const afterWarmup = openFiles(executor.pid);

    expect(await run(WARMUP, JOBS)).toEqual([]);
    const atEnd = openFiles(executor.pid);
    expect(atEnd).toBeLessThanOrEqual(afterWarmup + FD_SLACK);
    // Still alive and still taking work: one more job succeeds.
    expect(executor.child.exitCode).toBeNull();
    expect(executor.child.signalCode).toBeNull();
    expect(await run(JOBS, JOBS + 1)).toEqual([]);
    expect(`${executor.lines.join('\n')}\n${executor.stderr}`).not.toMatch(/EMFILE|too many open files/i);
  }, 300_000);
});
