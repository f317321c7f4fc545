import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { JobSpec, JobView } from '../../src/protocol/index.js';
import { NodeLink, NodeRuntime, linkOptionsFromConfig } from '../../src/transport/index.js';
import { NodeStore } from '../../src/store/index.js';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, type Proc } from '../helpers/processes.js';
import { waitForJob } from '../helpers/job-wait.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'wasm');
/** Fast liveness, so a frozen unit is declared lost in about a second. */
const LIVENESS = ['--set', 'liveness.heartbeat_interval_ms=250', '--set', 'liveness.dead_after_ms=1000'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Executor and broker loss with real processes and real signals: kill -9 (the socket closes, the last
 * will fires), SIGSTOP (a frozen unit: only the missing heartbeats tell) and SIGCONT, and a broker killed
 * with jobs in flight. Every job must end with exactly one accepted result, never on an unsuitable unit.
 */
describe('executor loss, redeployment and first come, first served', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  let broker: Proc;
  let client: NodeRuntime;
  let jobs: JobClient;
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'fo', ...LIVENESS];
  const startBroker = () => ucp(['broker', '--node-id', 'br', '--data-dir', join(dir, 'br'), ...common()]);

  async function startExecutor(id: string, tags: string, slots = 1): Promise<Proc> {
    const p = ucp(['executor', '--node-id', id, '--data-dir', join(dir, id), '--set', `executor.slots=${slots}`, ...common()], { UCP_EXECUTOR_TAGS: tags });
    procs.push(p);
    await broker.waitForLog({ msg: 'peer up', peer: id }, 15_000);
    return p;
  }

  function spin(jobId: string, ms: number, tag: string): JobSpec {
    return { job_id: jobId, wasm_module: 'bin/spin-for.wasm', capabilities: { tags: [tag] }, argv: ['spin-for', String(ms)], env: {}, dirs: [], data: {}, results: ['result.txt'], named_results: {}, priority: 'normal', timeout_s: 60, max_memory_mb: 32 };
  }

  /** Polls the broker until the job matches. */
  const until = (jobId: string, what: string, ok: (job: JobView) => boolean, timeoutMs = 20_000) => waitForJob(jobs, jobId, what, ok, timeoutMs);
  const runningAttempt = (n: number) => (job: JobView) => job.attempts.length === n && job.attempts[n - 1]!.started_at !== undefined && job.attempts[n - 1]!.outcome === 'running';
  const procOf = (id: string) => procs.find((p) => p.child.spawnargs.includes(id))!;

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
    broker = startBroker();
    const store = ucp(['datastore', '--node-id', 'ds', '--data-dir', join(dir, 'ds'), ...common()]);
    procs.push(store);
    await broker.waitForLog({ msg: 'peer up', peer: 'ds' });
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'fo', 'hub.url': `mqtt://127.0.0.1:${port}`, 'liveness.heartbeat_interval_ms': 250, 'liveness.dead_after_ms': 1000 } });
    client = NodeRuntime.create({ config, nodeId: 'tester', role: 'client', dataDir: join(dir, 'tester'), logger: createLogger({ level: 'silent', format: 'json' }) });
    const data = new DataClient(client.link, 20_000);
    jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    await data.put('bin/spin-for.wasm', readFileSync(join(FIXTURES, 'spin-for.wasm')));
  }, 60_000);

  afterAll(async () => {
    await client?.stop();
    for (const p of [...procs].reverse()) await p.stop();
    await broker?.stop();
    removeDir(dir);
  });

  it('kill -9 an executor mid-job: detected within 1 s, the job completes on the other suitable executor, one result accepted', async () => {
    await startExecutor('kill-a', 'kill');
    await startExecutor('kill-b', 'kill');
    await jobs.submit(spin('killed', 1_500, 'kill'));
    const running = await until('killed', 'running', runningAttempt(1));
    const victim = running.attempts[0]!.executor;
    const killedAt = Date.now();
    procOf(victim).kill('SIGKILL');
    const done = (await jobs.wait(['killed'], { timeoutMs: 20_000 })).get('killed')!.job;
    const survivor = victim === 'kill-a' ? 'kill-b' : 'kill-a';
    expect(done).toMatchObject({ state: 'succeeded', result: { attempt: 2, executor: survivor } });
    expect(done.attempts.map((a) => [a.executor, a.outcome])).toEqual([
      [victim, 'lost'],
      [survivor, 'accepted'],
    ]);
    expect(done.attempts[0]!.reason).toContain('(will)');
    expect(done.attempts[0]!.ended_at! - killedAt).toBeLessThan(1_000);
  });

  it('SIGSTOP an executor mid-job: redeployed after the liveness timeout; on SIGCONT its late result is rejected', async () => {
    await startExecutor('late-a', 'late');
    await startExecutor('late-b', 'late');
    await jobs.submit(spin('late', 2_000, 'late'));
    const running = await until('late', 'running', runningAttempt(1));
    const frozen = running.attempts[0]!.executor;
    const frozenProc = procOf(frozen);
    frozenProc.kill('SIGSTOP');
    const stoppedAt = Date.now();
    const done = (await jobs.wait(['late'], { timeoutMs: 20_000 })).get('late')!.job;
    expect(done.attempts[0]!.reason).toContain('(heartbeat_timeout)');
    expect(done.attempts[0]!.ended_at! - stoppedAt).toBeLessThan(2_500);
    expect(done.result).toMatchObject({ attempt: 2 });
    expect(done.result!.executor).not.toBe(frozen);

    // Its monotonic clock ran on while it was frozen: it finishes at once and reports, too late.
    const from = frozenProc.logs.length;
    frozenProc.kill('SIGCONT');
    const rejected = await frozenProc.waitForLog({ msg: 'result rejected' }, 15_000, from);
    expect(rejected).toMatchObject({ job: 'late', attempt: 1 });
    expect(String(rejected.reason)).toContain('attempt 2');
    const after = await until('late', 'rejected on attempt 1', (j) => j.attempts[0]!.outcome === 'rejected');
    expect(after.result).toMatchObject({ attempt: 2 });
    expect(after.attempts.map((a) => a.outcome)).toEqual(['rejected', 'accepted']);
  });

  it('SIGSTOP an executor mid-job, SIGCONT once redeployed: its result arrives first, is accepted, and the redeployed attempt is cancelled', async () => {
    await startExecutor('back-a', 'back');
    await startExecutor('back-b', 'back');
    await jobs.submit(spin('back', 3_000, 'back'));
    const running = await until('back', 'running', runningAttempt(1));
    const frozen = running.attempts[0]!.executor;
    const other = frozen === 'back-a' ? 'back-b' : 'back-a';
    // Two of its three seconds done: once thawed it needs none, while the new attempt needs all three.
    await sleep(Math.max(0, running.attempts[0]!.started_at! + 2_000 - Date.now()));
    procOf(frozen).kill('SIGSTOP');
    await until('back', 'running again elsewhere', runningAttempt(2));
    const otherProc = procOf(other);
    const from = otherProc.logs.length;
    procOf(frozen).kill('SIGCONT');
    const done = (await jobs.wait(['back'], { timeoutMs: 20_000 })).get('back')!.job;
    expect(done).toMatchObject({ state: 'succeeded', result: { attempt: 1, executor: frozen } });
    expect(done.attempts.map((a) => [a.executor, a.outcome])).toEqual([
      [frozen, 'accepted'],
      [other, 'cancelled'],
    ]);
    await otherProc.waitForLog({ msg: 'job cancelled', job: 'back', attempt: 2 }, 10_000, from);
  });

  it('with no suitable executor left the job waits, never going to an unsuitable one, and runs when a capable one joins', async () => {
    await startExecutor('ambulance-1', 'medical', 2);
    await startExecutor('fire-1', 'firefighting');
    await jobs.submit(spin('fire-job', 1_500, 'firefighting'));
    await until('fire-job', 'running', runningAttempt(1));
    procOf('fire-1').kill('SIGKILL');
    const queued = await until('fire-job', 'queued again', (j) => j.state === 'queued' && j.attempts.length === 1);
    await sleep(1_500);
    const still = await jobs.query('fire-job');
    expect(still.state).toBe('queued');
    expect(still.attempts.map((a) => a.executor)).toEqual(['fire-1']);
    expect(still.reason ?? queued.reason).toContain('missing tag "firefighting"');
    await startExecutor('fire-2', 'firefighting');
    const done = (await jobs.wait(['fire-job'], { timeoutMs: 20_000 })).get('fire-job')!.job;
    expect(done).toMatchObject({ state: 'succeeded', result: { executor: 'fire-2' } });
    expect(done.attempts.map((a) => a.executor)).not.toContain('ambulance-1');
  });

  it('refuses a result from a node that was never assigned the job, as unauthorized', async () => {
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'fo', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    const store = NodeStore.open({ dir: join(dir, 'rogue'), nodeId: 'rogue' });
    const rogue = NodeLink.create({ ...linkOptionsFromConfig(config, createLogger({ level: 'silent', format: 'json' })), nodeId: 'rogue', role: 'executor', store, announce: true, watchPresence: false });
    const verdicts: unknown[] = [];
    rogue.on('job_verdict', (msg) => void verdicts.push(msg.body));
    await rogue.connect();
    try {
      const before = await jobs.query('killed');
      const id = await rogue.sendDurable('br', 'job_result', { job_id: 'killed', attempt: 1, outcome: 'exited', exit_code: 0, message: 'forged', duration_ms: 1, archive: new Uint8Array(22), files: [], missing: [], named: [] });
      await rogue.delivered(id);
      await sleep(300);
      expect(verdicts).toEqual([expect.objectContaining({ job_id: 'killed', attempt: 1, verdict: 'rejected', reason: expect.stringContaining('unauthorized') })]);
      expect(await jobs.query('killed')).toEqual(before);
      const status = await client.link.request('br', 'status_request', {});
      expect(status.kind === 'status' ? status.body.counters.results_unauthorized : 0).toBe(1);
    } finally {
      await rogue.stop();
      await store.close();
    }
  });

  it('kill -9 the broker with 100 jobs in flight, then restart it: all 100 finish with exactly one accepted result', async () => {
    await startExecutor('bulk-1', 'bulk', 2);
    await startExecutor('bulk-2', 'bulk', 2);
    const ids = Array.from({ length: 100 }, (_, i) => `bulk-${String(i).padStart(3, '0')}`);
    for (const id of ids) await jobs.submit(spin(id, 150, 'bulk'));
    await until(ids[10]!, 'finished', (j) => j.state === 'succeeded');
    broker.kill('SIGKILL');
    await broker.exited;
    await sleep(500);
    broker = startBroker();
    const done = await jobs.wait(ids, { timeoutMs: 90_000 });
    expect(done.size).toBe(100);
    for (const id of ids) {
      const job = done.get(id)!.job;
      expect(job.state, id).toBe('succeeded');
      expect(job.attempts.filter((a) => a.outcome === 'accepted'), id).toHaveLength(1);
    }
    const listed = (await jobs.list()).items.filter((j) => j.job_id.startsWith('bulk-'));
    expect(listed).toHaveLength(100);
  }, 120_000);
});
