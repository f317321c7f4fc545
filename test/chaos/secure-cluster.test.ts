import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import type { JobSpec, JobView } from '../../src/protocol/index.js';
import type { NodeRuntime } from '../../src/transport/index.js';
import { SKIP_WITHOUT_MOSQUITTO } from '../helpers/mosquitto.js';
import { ROOT, type Proc } from '../helpers/processes.js';
import { SecureCluster, type HubKind } from '../helpers/secure-cluster.js';
import { waitForJob } from '../helpers/job-wait.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'wasm');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const HUBS: HubKind[] = SKIP_WITHOUT_MOSQUITTO ? ['embedded'] : ['embedded', 'mosquitto'];

/**
 * A legitimate cluster the way a field deployment should run: every node with its own credential, every
 * connection over TLS (a throwaway CA made with openssl), one executor logging in with a client
 * certificate instead of a password. It still runs the REC smoke plan, survives the loss of an executor
 * with first come, first served, and keeps three brokers in sync through a broker's kill -9.
 */
describe.each(HUBS)('a cluster with per-node credentials and TLS (%s hub)', (kind) => {
  let c: SecureCluster;
  const brokers = new Map<string, Proc>();
  let client: NodeRuntime;
  let jobs: JobClient;
  let data: DataClient;

  function spin(jobId: string, ms: number, tag: string): JobSpec {
    return { job_id: jobId, wasm_module: 'bin/spin-for.wasm', capabilities: { tags: [tag] }, argv: ['spin-for', String(ms)], env: {}, dirs: [], data: {}, results: ['result.txt'], named_results: {}, priority: 'normal', timeout_s: 60, max_memory_mb: 32 };
  }

  const until = (jobId: string, what: string, ok: (job: JobView) => boolean, timeoutMs = 30_000) => waitForJob(jobs, jobId, what, ok, timeoutMs);

  beforeAll(async () => {
    c = await SecureCluster.start({
      kind,
      cluster: 'sec',
      tls: true,
      nodes: { 'br-a': 'broker', 'br-b': 'broker', 'br-c': 'broker', ds: 'datastore', 'ex-a': 'executor', 'ex-b': 'executor', 'field-client': 'client', tester: 'client' },
      certificates: ['ex-cert'],
      settings: { 'liveness.heartbeat_interval_ms': '250', 'liveness.dead_after_ms': '1500', 'metadata_sync.interval_s': '1' },
    });
    for (const id of ['br-a', 'br-b', 'br-c']) brokers.set(id, c.spawn('broker', id, ['--set', 'log.format=json']));
    c.spawn('datastore', 'ds');
    c.spawn('executor', 'ex-a', ['--set', 'log.format=json'], { UCP_EXECUTOR_TAGS: 'loss' });
    c.spawn('executor', 'ex-b', ['--set', 'log.format=json'], { UCP_EXECUTOR_TAGS: 'loss' });
    c.spawn('executor', 'ex-cert', ['--set', 'log.format=json'], { UCP_EXECUTOR_TAGS: 'cert' });
    for (const [, b] of brokers) for (const peer of ['ds', 'ex-a', 'ex-b', 'ex-cert']) await b.waitForLog({ msg: 'peer up', peer }, 30_000);
    client = await c.runtime('tester');
    data = new DataClient(client.link, 30_000, 'br-a');
    jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    await data.put('bin/spin-for.wasm', readFileSync(join(FIXTURES, 'spin-for.wasm')));
  }, 180_000);

  afterAll(async () => {
    await c?.stop();
  });

  it('runs the REC smoke plan over TLS with per-node credentials', async () => {
    const results = join(c.dir, 'smoke-results');
    const run = await c.run(['run', join(ROOT, 'examples', 'fire-watch', 'plan.toml'), '--results', results], 'field-client');
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toMatch(/all 2 job\(s\) succeeded/);
    for (const id of ['fw-stats', 'fw-alert']) expect(existsSync(join(results, `${id}_result.zip`)), id).toBe(true);
    expect(Object.keys(unzipSync(readFileSync(join(results, 'fw-alert_result.zip'))))).not.toHaveLength(0);
    // Nothing travelled in the clear: every node's hub URL is mqtts://, and none warned about it.
    for (const p of c.procs) expect(p.lines.join('\n')).not.toMatch(/without TLS/);
  });

  it('an executor logging in with its client certificate runs jobs; a certificate from another CA gets nobody in', async () => {
    await jobs.submit(spin('by-cert', 100, 'cert'));
    const done = (await jobs.wait(['by-cert'], { timeoutMs: 30_000 })).get('by-cert')!.job;
    expect(done).toMatchObject({ state: 'succeeded', result: { executor: 'ex-cert' } });
    const rogue = c.pki!.client('ex-cert', c.pki!.rogueCa());
    await expect(c.mqtt({ clientId: 'ex-cert', cert: readFileSync(rogue.cert), key: readFileSync(rogue.key), reconnectPeriod: 0 })).rejects.toThrow();
    // A node without the hub's CA refuses to talk to it at all.
    await expect(c.mqtt({ clientId: 'tester', username: 'tester', password: c.passwords.get('tester')!, ca: undefined, rejectUnauthorized: true })).rejects.toThrow(/certificate/);
  });

  it('kill -9 an executor mid-job: the job completes on the other one, first come first served', async () => {
    await jobs.submit(spin('lost', 2_000, 'loss'));
    const running = await until('lost', 'running', (j) => j.attempts.length === 1 && j.attempts[0]!.started_at !== undefined);
    const victim = running.attempts[0]!.executor;
    c.procs.find((p) => p.child.spawnargs.includes(victim) && p.child.spawnargs.includes('executor'))!.kill('SIGKILL');
    const done = (await jobs.wait(['lost'], { timeoutMs: 40_000 })).get('lost')!.job;
    const survivor = victim === 'ex-a' ? 'ex-b' : 'ex-a';
    expect(done).toMatchObject({ state: 'succeeded', result: { attempt: 2, executor: survivor } });
    expect(done.attempts.map((a) => [a.executor, a.outcome])).toEqual([
      [victim, 'lost'],
      [survivor, 'accepted'],
    ]);
  });

  it('three brokers stay in sync: a job and a name handled by one are found through the others after it is killed', async () => {
    await jobs.submit(spin('synced', 100, 'cert'));
    const done = (await jobs.wait(['synced'], { timeoutMs: 30_000 })).get('synced')!.job;
    expect(done.broker).toBe('br-a');
    await data.put('field/notes', new TextEncoder().encode('kept by every broker'));
    for (const b of ['br-b', 'br-c']) {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const reply = await client.link.request(b, 'job_query', { job_id: 'synced' }).catch(() => undefined);
        if (reply?.kind === 'job_info' && reply.body.job.state === 'succeeded') break;
        if (Date.now() > deadline) throw new Error(`${b} never learned of the job`);
        await sleep(100);
      }
    }
    brokers.get('br-a')!.kill('SIGKILL');
    data.prefer('br-c');
    expect(new TextDecoder().decode((await data.get('field/notes')).bytes)).toBe('kept by every broker');
    expect(await jobs.query('synced')).toMatchObject({ state: 'succeeded', result: { attempt: 1 } });
    const status = await c.counters('br-b');
    expect(status.sync_changes_refused ?? 0).toBe(0);
  });
});
