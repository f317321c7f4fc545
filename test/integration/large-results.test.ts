import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { JobSpec, JobView } from '../../src/protocol/index.js';
import { NodeStore } from '../../src/store/index.js';
import { NodeLink, NodeRuntime, linkOptionsFromConfig } from '../../src/transport/index.js';
import { Proc, ROOT, UCP_BIN, cleanEnv, freePort, removeDir, startHubProcess, tempDir, ucp, ucpRun } from '../helpers/processes.js';
import { waitForJob } from '../helpers/job-wait.js';
import { bigOutputBytes } from '../helpers/big-output.js';

const MB = 1_048_576;
const FIXTURES = join(ROOT, 'test', 'fixtures', 'wasm');
const ARCHIVED = 20 * MB;
const NAMED = 5 * MB;
/** Fast liveness, so a frozen unit is declared lost in about a second. */
const LIVENESS = ['--set', 'liveness.heartbeat_interval_ms=250', '--set', 'liveness.dead_after_ms=1000'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Peak resident memory of a live process, from the kernel. */
function peakRssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'))!;
  return Math.round(Number(/(\d+)/.exec(line)![1]) / 1024);
}

/** The peak RSS of each child process (the executor's sandboxes). */
function childrenPeakMb(pid: number): number[] {
  try {
    const ids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    return ids.map((id) => peakRssMb(Number(id)));
  } catch {
    return [];
  }
}

/**
 * Job results larger than one message, through real processes: the executor stages the archive and the
 * named result in chunks under the attempt, the broker has the datastore move them into place when it
 * accepts the result, and `ucp run` collects the archive in chunks. Also: two attempts racing with large
 * results (exactly one set published, the other's staging deleted), and an executor killed with -9 in
 * the middle of its upload (it uploads again from its durable record after the restart).
 */
describe('job results larger than one message', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  let broker: Proc;
  let store: Proc;
  let client: NodeRuntime;
  let jobs: JobClient;
  let data: DataClient;
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'bigres', ...LIVENESS];

  function startExecutor(id: string, tags: string): Proc {
    const p = ucp(['executor', '--node-id', id, '--data-dir', join(dir, id), '--set', 'executor.slots=1', ...common()], { UCP_EXECUTOR_TAGS: tags });
    procs.push(p);
    return p;
  }

  function bigJob(jobId: string, tag: string, waitMs: number): JobSpec {
    return {
      job_id: jobId,
      wasm_module: 'bigres/big-output.wasm',
      capabilities: { tags: [tag] },
      argv: ['big-output', '--wait-ms', String(waitMs), '--tag', 'output/archived.bin', String(ARCHIVED), 'named.bin', String(NAMED)],
      env: {},
      dirs: ['output'],
      data: {},
      results: ['output'],
      named_results: { 'named.bin': `${jobId}/named.bin` },
      priority: 'normal',
      timeout_s: 120,
      max_memory_mb: 128,
    };
  }

  const until = (jobId: string, what: string, ok: (job: JobView) => boolean, timeoutMs = 30_000) => waitForJob(jobs, jobId, what, ok, timeoutMs);
  const runningAttempt = (n: number) => (job: JobView) => job.attempts.length === n && job.attempts[n - 1]!.started_at !== undefined && job.attempts[n - 1]!.outcome === 'running';

  /** The published archive's file and named result: right content after the tag, and one run's tag. */
  async function checkPublished(jobId: string): Promise<void> {
    const zip = unzipSync((await data.get(`${jobId}/result.zip`)).bytes);
    const archived = zip['output/archived.bin']!;
    const named = (await data.get(`${jobId}/named.bin`)).bytes;
    expect(archived.byteLength).toBe(ARCHIVED);
    expect(named.byteLength).toBe(NAMED);
    expect(sha(archived.subarray(16))).toBe(sha(bigOutputBytes(0, ARCHIVED).subarray(16)));
    expect(sha(named.subarray(16))).toBe(sha(bigOutputBytes(1, NAMED).subarray(16)));
    // One attempt's set: both objects carry the same run's tag, never one from each attempt.
    expect(Buffer.from(named.subarray(0, 16)).toString('hex')).toBe(Buffer.from(archived.subarray(0, 16)).toString('hex'));
  }

  /** Staged objects of the job that are still there (none once its result is published and cleaned up). */
  async function staged(jobId: string): Promise<string[]> {
    return (await data.list(`${jobId}/.attempts`)).map((n) => n.name);
  }

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
    broker = ucp(['broker', '--node-id', 'br', '--data-dir', join(dir, 'br'), ...common()]);
    store = ucp(['datastore', '--node-id', 'ds', '--data-dir', join(dir, 'ds'), ...common()]);
    procs.push(broker, store);
    await broker.waitForLog({ msg: 'peer up', peer: 'ds' }, 30_000);
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'bigres', 'hub.url': `mqtt://127.0.0.1:${port}`, 'liveness.heartbeat_interval_ms': 250, 'liveness.dead_after_ms': 1000 } });
    client = NodeRuntime.create({ config, nodeId: 'tester', role: 'operator', dataDir: join(dir, 'tester'), logger: createLogger({ level: 'silent', format: 'json' }) });
    data = new DataClient(client.link, 30_000);
    jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    await data.put('bigres/big-output.wasm', readFileSync(join(FIXTURES, 'big-output.wasm')));
  }, 60_000);

  afterAll(async () => {
    await client?.stop();
    for (const p of [...procs].reverse()) await p.stop();
    removeDir(dir);
  });

  it('a 20 MB archive and a 5 MB named result: staged in chunks, published, collected by ucp run byte for byte', async () => {
    const executor = startExecutor('ex-run', 'run');
    await broker.waitForLog({ msg: 'peer up', peer: 'ex-run' }, 30_000);
    const folder = join(dir, 'plan');
    mkdirSync(folder);
    copyFileSync(join(FIXTURES, 'big-output.wasm'), join(folder, 'big-output.wasm'));
    writeFileSync(
      join(folder, 'plan.toml'),
      `[[jobs]]\n[jobs.metadata]\njob_id = "big-run"\nwasm_module = "big-run/big-output.wasm"\nargv = ["big-output", "output/archived.bin", "${ARCHIVED}", "named.bin", "${NAMED}"]\ndirs = ["output"]\nresults = ["output"]\nresults_receiver = "dtn://client/"\ntimeout_s = 120\nmax_memory_mb = 128\n[jobs.metadata.named_results]\n"named.bin" = "big-run/named.bin"\n[jobs.data]\n"big-run/big-output.wasm" = "big-output.wasm"\n`,
    );
    const results = join(dir, 'results');
    const started = performance.now();
    const run = new Proc('/usr/bin/time', ['-f', 'peak_rss_kb=%M', process.execPath, UCP_BIN, 'run', join(folder, 'plan.toml'), '--results', results, '--node-id', 'big-client', '--data-dir', join(dir, 'big-client'), ...common()], cleanEnv());
    const { code } = await run.exited;
    const seconds = (performance.now() - started) / 1_000;
    expect(code, `${run.lines.join('\n')}\n${run.stderr}`).toBe(0);
    const zip = unzipSync(readFileSync(join(results, 'big-run_result.zip')));
    expect(Object.keys(zip)).toEqual(['output/archived.bin']);
    expect(Buffer.compare(Buffer.from(zip['output/archived.bin']!), bigOutputBytes(0, ARCHIVED))).toBe(0);
    const out = join(dir, 'named.bin');
    const got = await ucpRun(['data', 'get', 'big-run/named.bin', '--out', out, ...common()], {}, 60_000);
    expect(got.code, got.stderr).toBe(0);
    expect(Buffer.compare(readFileSync(out), bigOutputBytes(1, NAMED))).toBe(0);

    const job = await jobs.query('big-run');
    expect(job.result).toMatchObject({ archive: 'big-run/result.zip', named_results: ['big-run/named.bin'] });
    expect(job.result!.archive_bytes).toBeGreaterThan(ARCHIVED);
    const stagedLog = await executor.waitForLog({ msg: 'result staged', job: 'big-run', objects: 2 });
    await expect.poll(() => staged('big-run'), { timeout: 10_000 }).toEqual([]);

    const peaks = {
      seconds: Math.round(seconds * 10) / 10,
      uploadMs: stagedLog.ms,
      client: Math.round(Number(/peak_rss_kb=(\d+)/.exec(run.stderr)?.[1] ?? NaN) / 1024),
      broker: peakRssMb(broker.pid),
      datastore: peakRssMb(store.pid),
      executor: peakRssMb(executor.pid),
      sandbox: Math.max(0, ...childrenPeakMb(executor.pid)),
    };
    process.stdout.write(`a 20 MB archive + 5 MB named result, peak RSS (MB) and time: ${JSON.stringify(peaks)}\n`);
    // Relaying chunks, neither the broker nor the datastore holds the result whole, let alone twice.
    expect(peaks.broker).toBeLessThan(200);
  }, 180_000);

  it('two attempts race with large results: exactly one set is published, the other attempt\'s staging is deleted', async () => {
    const a = startExecutor('race-a', 'race');
    const b = startExecutor('race-b', 'race');
    await broker.waitForLog({ msg: 'peer up', peer: 'race-a' }, 30_000);
    await broker.waitForLog({ msg: 'peer up', peer: 'race-b' }, 30_000);
    await jobs.submit(bigJob('race', 'race', 2_000));
    const running = await until('race', 'running', runningAttempt(1));
    const frozen = running.attempts[0]!.executor === 'race-a' ? a : b;
    // Frozen half way: declared lost, the job runs again on the other executor.
    await sleep(Math.max(0, running.attempts[0]!.started_at! + 1_000 - Date.now()));
    frozen.kill('SIGSTOP');
    const second = await until('race', 'running again elsewhere', runningAttempt(2));
    // Thawed so that both attempts finish and stage at about the same time.
    await sleep(Math.max(0, second.attempts[1]!.started_at! + 1_800 - Date.now()));
    frozen.kill('SIGCONT');
    const done = (await jobs.wait(['race'], { timeoutMs: 90_000 })).get('race')!.job;
    expect(done.state).toBe('succeeded');
    const outcomes = done.attempts.map((x) => x.outcome).sort();
    expect(outcomes.filter((o) => o === 'accepted')).toHaveLength(1);
    // Under load a busy executor may miss a heartbeat of this fast liveness and lose a third attempt:
    // however many ran, one is accepted.
    expect(outcomes.length, JSON.stringify(done.attempts)).toBeGreaterThanOrEqual(2);
    await checkPublished('race');
    // The loser's staged objects (if it got to stage any) are deleted; none is left under the job.
    await expect.poll(() => staged('race'), { timeout: 20_000 }).toEqual([]);
  }, 180_000);

  it('kill -9 of the executor in the middle of its upload: after the restart it uploads again and the result is published', async () => {
    const victim = startExecutor('crash', 'crash');
    await broker.waitForLog({ msg: 'peer up', peer: 'crash' }, 30_000);
    await jobs.submit(bigJob('crash', 'crash', 0));
    await victim.waitForLog({ msg: 'staging result', job: 'crash' }, 60_000);
    victim.kill('SIGKILL');
    await victim.exited;
    const again = startExecutor('crash', 'crash');
    // Its durable record of the finished attempt: the upload starts over, no killed_executor report.
    await again.waitForLog({ msg: 'staging result', job: 'crash', attempt: 1, resumed: true }, 60_000);
    const done = (await jobs.wait(['crash'], { timeoutMs: 90_000 })).get('crash')!.job;
    expect(done.state).toBe('succeeded');
    // The restart also lost attempt 1 to the broker, which placed the job again (on this executor, the only
    // one): whichever attempt delivered first is the result.
    expect(done.result).toMatchObject({ executor: 'crash' });
    expect(again.count({ msg: 'this executor died while running the attempt; reporting it instead of running it again' })).toBe(0);
    await checkPublished('crash');
    await expect.poll(() => staged('crash'), { timeout: 20_000 }).toEqual([]);
  }, 180_000);
  it('staging names are reserved: no other executor, client or job spec may write them, and executors write nothing else', async () => {
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'bigres', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    const store = NodeStore.open({ dir: join(dir, 'rogue'), nodeId: 'rogue' });
    const rogue = NodeLink.create({ ...linkOptionsFromConfig(config, createLogger({ level: 'silent', format: 'json' })), nodeId: 'rogue', role: 'executor', store, announce: true, watchPresence: false });
    await rogue.connect();
    const counter = async () => {
      const status = await client.link.request('br', 'status_request', {});
      return status.kind === 'status' ? (status.body.counters.data_staging_refused ?? 0) : 0;
    };
    try {
      const before = await counter();
      const put = (name: string) => rogue.request('br', 'data_put', { name, bytes: new Uint8Array([1, 2, 3]) });
      // Planting a result for an attempt it was never assigned, and writing a user's data.
      await expect(put('race/.attempts/1/result.zip')).rejects.toMatchObject({ code: 'reserved_name' });
      await expect(put('fire/district-3/temps')).rejects.toMatchObject({ code: 'reserved_name' });
      // A client may not write staging names either, nor name them in a job.
      await expect(data.put('race/.attempts/9/named/0', new Uint8Array([1]))).rejects.toMatchObject({ code: 'reserved_name' });
      await expect(jobs.submit({ ...bigJob('sneaky', 'none', 0), named_results: { 'named.bin': 'race/.attempts/1/result.zip' } })).rejects.toMatchObject({ code: 'reserved_name' });
      expect(await counter()).toBe(before + 3);
      expect((await data.list('race/.attempts')).map((n) => n.name)).toEqual([]);
      expect((await data.list('fire')).map((n) => n.name)).toEqual([]);
    } finally {
      await rogue.stop();
      await store.close();
    }
  });

  it('kill -9 of the broker while it publishes a large result: after the restart the result is published once', async () => {
    const executor = startExecutor('pub', 'pub');
    await broker.waitForLog({ msg: 'peer up', peer: 'pub' }, 30_000);
    await jobs.submit(bigJob('pub', 'pub', 0));
    // Its upload done, the report goes out: the broker is now checking and moving the staged objects.
    await executor.waitForLog({ msg: 'result staged', job: 'pub' }, 60_000);
    broker.kill('SIGKILL');
    await broker.exited;
    broker = ucp(['broker', '--node-id', 'br', '--data-dir', join(dir, 'br'), ...common()]);
    procs.push(broker);
    // The executor's outbox delivers the report again; the moves already made are found made.
    const done = (await jobs.wait(['pub'], { timeoutMs: 90_000 })).get('pub')!.job;
    expect(done.state).toBe('succeeded');
    expect(done.attempts.filter((a) => a.outcome === 'accepted')).toHaveLength(1);
    await checkPublished('pub');
    await expect.poll(() => staged('pub'), { timeout: 20_000 }).toEqual([]);
  }, 180_000);
});
