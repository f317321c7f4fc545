import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { BodyOf, JobSpec, JobView } from '../../src/protocol/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, type Proc } from '../helpers/processes.js';
import { waitForJob } from '../helpers/job-wait.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'wasm');
const LIVENESS = ['--set', 'liveness.heartbeat_interval_ms=250', '--set', 'liveness.dead_after_ms=1000'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Jobs that take their executor down, and executors that never report. Real processes and real signals:
 * an executor killed with SIGKILL while it runs a job comes back, reports the attempt as killed_executor
 * instead of running it again, and a job that two units died running in a row is not placed again. A
 * broker's own deadline ends a job whose executor stays silent.
 */
describe('poisoned assignments and silent executors', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  let broker: Proc;
  let client: NodeRuntime;
  let jobs: JobClient;
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'po', ...LIVENESS];

  function startExecutor(id: string, tag: string): Proc {
    const p = ucp(['executor', '--node-id', id, '--data-dir', join(dir, id), '--set', 'executor.slots=1', ...common()], { UCP_EXECUTOR_TAGS: tag });
    procs.push(p);
    return p;
  }

  function spin(jobId: string, ms: number, tag: string, timeoutS = 60): JobSpec {
    return { job_id: jobId, wasm_module: 'bin/spin-for.wasm', capabilities: { tags: [tag] }, argv: ['spin-for', String(ms)], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: timeoutS, max_memory_mb: 32 };
  }

  const until = (jobId: string, what: string, ok: (job: JobView) => boolean, timeoutMs = 20_000) => waitForJob(jobs, jobId, what, ok, timeoutMs);
  const running = (job: JobView) => {
    const a = job.attempts[job.attempts.length - 1];
    return a !== undefined && a.outcome === 'running' && a.started_at !== undefined;
  };

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
    broker = ucp(['broker', '--node-id', 'br', '--data-dir', join(dir, 'br'), '--set', 'scheduler.deadline_margin_s=1', ...common()]);
    procs.push(broker, ucp(['datastore', '--node-id', 'ds', '--data-dir', join(dir, 'ds'), ...common()]));
    await broker.waitForLog({ msg: 'peer up', peer: 'ds' }, 15_000);
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'po', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    client = NodeRuntime.create({ config, nodeId: 'tester', role: 'client', dataDir: join(dir, 'tester'), logger: createLogger({ level: 'silent', format: 'json' }) });
    const data = new DataClient(client.link, 10_000);
    jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    await data.put('bin/spin-for.wasm', readFileSync(join(FIXTURES, 'spin-for.wasm')));
  }, 60_000);

  afterAll(async () => {
    await client?.stop();
    for (const p of procs.reverse()) await p.stop();
    removeDir(dir);
  });

  it('a unit that died running a job reports it instead of running it again, and two deaths in a row end the job', async () => {
    const units = ['poison-a', 'poison-b'].map((id) => startExecutor(id, 'poison'));
    for (const id of ['poison-a', 'poison-b']) await broker.waitForLog({ msg: 'peer up', peer: id }, 15_000);
    await jobs.submit(spin('poison', 30_000, 'poison'));

    // First death: the unit running it is killed mid-run and comes back.
    const first = await until('poison', 'running', running);
    const firstUnit = first.attempts[0]!.executor;
    const firstProc = units[firstUnit === 'poison-a' ? 0 : 1]!;
    firstProc.kill('SIGKILL');
    await firstProc.exited;
    const restarted = startExecutor(firstUnit, 'poison');
    await restarted.waitForLog({ msg: "this executor died while running the attempt; reporting it instead of running it again", job: 'poison', attempt: 1 }, 15_000);
    // Placed again elsewhere, and the first attempt is recorded as having killed its unit once the report is in.
    const second = await until('poison', 'running again elsewhere', (j) => j.attempts.length === 2 && running(j) && j.attempts[0]!.killed_executor === true);
    expect(second.attempts[1]!.executor).not.toBe(firstUnit);
    expect(second.state).toBe('running');

    // Second death in a row: the job fails and is not placed again.
    const secondUnit = second.attempts[1]!.executor;
    const secondProc = units[secondUnit === 'poison-a' ? 0 : 1]!;
    secondProc.kill('SIGKILL');
    await secondProc.exited;
    startExecutor(secondUnit, 'poison');
    const failed = await until('poison', 'failed', (j) => j.state === 'failed');
    expect(failed.reason).toMatch(/^killed_executor: its executors died while running it 2 times in a row \(poison-[ab], poison-[ab]\); it is not placed again/);
    expect(failed.attempts.filter((a) => a.outcome === 'running')).toEqual([]);
    // The restarted unit never ran attempt 1 again.
    expect(restarted.count({ msg: 'job finished', job: 'poison' })).toBe(0);
    await sleep(1_500);
    expect((await jobs.query('poison')).attempts.length).toBe(failed.attempts.length);
  }, 90_000);

  it('a clean stop is not a crash: the restarted unit reports nothing as killed and the job completes', async () => {
    const unit = startExecutor('clean-a', 'clean');
    await broker.waitForLog({ msg: 'peer up', peer: 'clean-a' }, 15_000);
    await jobs.submit(spin('clean', 3_000, 'clean'));
    await until('clean', 'running', running);
    await unit.stop();
    const restarted = startExecutor('clean-a', 'clean');
    // The interrupted attempt is placed again, never on the unit that gave it up: a second unit joins.
    startExecutor('clean-b', 'clean');
    const done = await until('clean', 'succeeded', (j) => j.state === 'succeeded', 30_000);
    expect(done.attempts.map((a) => [a.executor, a.outcome])).toEqual([['clean-a', 'failed'], ['clean-b', 'accepted']]);
    expect(done.attempts[0]!.reason).toBe('host_error on clean-a: clean-a stopped before the attempt finished');
    expect(done.attempts.some((a) => a.killed_executor === true)).toBe(false);
    expect(restarted.count({ msg: 'this executor died while running the attempt; reporting it instead of running it again' })).toBe(0);
  }, 60_000);

  it('a job whose executor never reports fails at the broker deadline, and the unit gets its slot back', async () => {
    // A unit that takes assignments and never answers: a real node on the hub, misbehaving.
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'po', 'hub.url': `mqtt://127.0.0.1:${port}`, 'liveness.heartbeat_interval_ms': 250 } });
    const silent = NodeRuntime.create({ config, nodeId: 'silent-unit', role: 'executor', dataDir: join(dir, 'silent-unit'), logger: createLogger({ level: 'silent', format: 'json' }) });
    const assigned: Array<BodyOf<'job_assign'>> = [];
    const cancels: Array<BodyOf<'job_cancel'>> = [];
    silent.link.setHeartbeatFields(() => ({
      capabilities: { cpu_cores: 1, free_cpu_capacity: 100, free_memory: 1 << 30, free_disk_space: 1 << 30, tags: ['silent'], on_mains_power: true },
      running_jobs: [],
      job_slots: 1,
    }));
    silent.link.on('job_assign', (msg) => void assigned.push(msg.body));
    silent.link.on('job_cancel', (msg) => void cancels.push(msg.body));
    await silent.connect();
    try {
      await broker.waitForLog({ msg: 'peer up', peer: 'silent-unit' }, 15_000);
      await jobs.submit(spin('ignored-1', 10, 'silent', 1));
      await jobs.submit(spin('ignored-2', 10, 'silent', 1));
      const failed = await until('ignored-1', 'failed', (j) => j.state === 'failed', 15_000);
      expect(failed.reason).toBe("timeout: no result from silent-unit for attempt 1 within the job's timeout of 1 s plus scheduler.deadline_margin_s (1 s)");
      expect(cancels.some((c) => c.job_id === 'ignored-1' && c.attempt === 1)).toBe(true);
      // Its slot was free again: the second job was assigned to the same single-slot unit afterwards.
      await until('ignored-2', 'failed', (j) => j.state === 'failed', 15_000);
      expect(assigned.map((a) => a.spec.job_id)).toEqual(['ignored-1', 'ignored-2']);
    } finally {
      await silent.stop();
    }
  }, 60_000);
});
