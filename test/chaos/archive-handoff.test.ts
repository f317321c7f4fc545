import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { JobSpec } from '../../src/protocol/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { waitForJob } from '../helpers/job-wait.js';
import { ROOT, freePort, removeDir, startHubProcess, tempDir, ucp, type Proc } from '../helpers/processes.js';

/**
 * A job's result archive is handed to the datastore in the broker's decision commit, not before it: the
 * decision needs no answer from the datastore, and the archive reaches the datastore even when the
 * broker is killed before the datastore could take it.
 */
describe('result archives handed to the datastore', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  let broker: Proc;
  let store: Proc;
  let client: NodeRuntime;
  let jobs: JobClient;
  let data: DataClient;
  /** Archives that came with the final updates, by job. */
  const archives = new Map<string, Uint8Array>();
  // A frozen datastore stays "alive" for 15 s, well past the time the decision takes: what is measured
  // is whether the decision waits for it, not whether the broker gives up on it.
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'handoff', '--set', 'liveness.dead_after_ms=15000'];
  const startBroker = () => {
    broker = ucp(['broker', '--node-id', 'ho-broker', '--data-dir', join(dir, 'ho-broker'), ...common(), '--log-level', 'info']);
    procs.push(broker);
  };

  const spec = (jobId: string, ms: number): JobSpec => ({
    job_id: jobId,
    wasm_module: 'handoff/spin-for.wasm',
    capabilities: { tags: [] },
    argv: ['spin-for', String(ms)],
    env: {},
    dirs: [],
    data: {},
    results: [],
    named_results: {},
    priority: 'normal',
    timeout_s: 60,
    max_memory_mb: 32,
  });

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
    startBroker();
    store = ucp(['datastore', '--node-id', 'ho-store', '--data-dir', join(dir, 'ho-store'), ...common()]);
    procs.push(store, ucp(['executor', '--node-id', 'ho-exec', '--data-dir', join(dir, 'ho-exec'), ...common()]));
    for (const peer of ['ho-store', 'ho-exec']) await broker.waitForLog({ msg: 'peer up', peer }, 30_000);
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'handoff', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    client = NodeRuntime.create({ config, nodeId: 'ho-client', role: 'client', dataDir: join(dir, 'ho-client'), logger: createLogger({ level: 'silent', format: 'json' }) });
    data = new DataClient(client.link, 30_000);
    jobs = new JobClient(client.link, client.store, data);
    jobs.subscribe(({ job, archive }) => {
      if (archive !== undefined) archives.set(job.job_id, archive);
    });
    await client.connect();
    await data.put('handoff/spin-for.wasm', readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'spin-for.wasm')));
  }, 60_000);

  afterAll(async () => {
    store?.kill('SIGCONT');
    await client?.stop();
    for (const p of [...procs].reverse()) await p.stop();
    removeDir(dir);
  });

  it('a result is accepted while the datastore is frozen; after the broker is killed and restarted, the archive reaches the datastore', async () => {
    // The module is fetched while the datastore is up; the job then runs for a second.
    await jobs.submit(spec('ho-1', 1_000));
    await waitForJob(jobs, 'ho-1', 'started', (j) => j.attempts[0]?.started_at !== undefined, 30_000);
    store.kill('SIGSTOP');
    const frozenAt = performance.now();
    const done = await waitForJob(jobs, 'ho-1', 'succeeded', (j) => j.state === 'succeeded', 12_000);
    // Before, the decision waited for the datastore's answer, which a frozen datastore never gives:
    // the request timed out after 5 s and the result was handled again, and again.
    expect(performance.now() - frozenAt).toBeLessThan(5_000);
    expect(done.attempts.filter((a) => a.outcome === 'accepted')).toHaveLength(1);
    // The client has the archive already: it came with the final update.
    await expect.poll(() => archives.get('ho-1'), { timeout: 5_000 }).toBeInstanceOf(Uint8Array);
    const archive = archives.get('ho-1')!;
    expect(() => unzipSync(archive)).not.toThrow();

    // The archive is only in the broker's outbox now. The broker dies; the datastore comes back after it.
    broker.kill('SIGKILL');
    await broker.exited;
    startBroker();
    await broker.waitForLog({ msg: 'peer up', peer: 'ho-exec' }, 30_000);
    store.kill('SIGCONT');
    await broker.waitForLog({ msg: 'peer up', peer: 'ho-store' }, 30_000);
    const stored = await expect
      .poll(async () => (await data.get('ho-1/result.zip').catch(() => undefined))?.bytes, { timeout: 20_000, interval: 200 })
      .toBeInstanceOf(Uint8Array)
      .then(() => data.get('ho-1/result.zip'));
    expect(Buffer.from(stored.bytes).equals(Buffer.from(archive))).toBe(true);
    // Listed on the datastore that holds it, once, and the job's record still says who accepted what.
    expect((await data.list('ho-1')).map((n) => [n.name, n.store])).toEqual([['ho-1/result.zip', 'ho-store']]);
    expect((await jobs.query('ho-1')).state).toBe('succeeded');
  }, 120_000);

  it("a read of a just-accepted job's archive through its broker waits for the hand-off instead of failing", async () => {
    await jobs.submit(spec('ho-read', 500));
    await waitForJob(jobs, 'ho-read', 'started', (j) => j.attempts[0]?.started_at !== undefined, 30_000);
    // Frozen, the datastore gets the hand-off and the read one after the other when it resumes: it would
    // answer the read before the put's transaction commits, had the broker not waited.
    store.kill('SIGSTOP');
    await expect.poll(() => archives.get('ho-read'), { timeout: 10_000, interval: 5 }).toBeInstanceOf(Uint8Array);
    const reading = data.get('ho-read/result.zip');
    await new Promise((r) => setTimeout(r, 300));
    store.kill('SIGCONT');
    expect(Buffer.from((await reading).bytes).equals(Buffer.from(archives.get('ho-read')!))).toBe(true);
  }, 90_000);
});
