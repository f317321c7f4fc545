import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { AnyEnvelope, JobSpec } from '../../src/protocol/index.js';
import { NodeStore } from '../../src/store/index.js';
import { NodeLink, NodeRuntime, linkOptionsFromConfig } from '../../src/transport/index.js';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, type Proc } from '../helpers/processes.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FAST = ['--set', 'metadata_sync.interval_s=1', '--set', 'liveness.heartbeat_interval_ms=250', '--set', 'liveness.dead_after_ms=1000'];
const RETENTION_S = 6;

/**
 * Job retention across three real brokers: a finished job, its result archive, its named result and the
 * data under its id are kept for jobs.retention_s, then gone from every broker's replica and from the
 * datastore; a broker that was stopped during the pruning comes back holding the old record and hands
 * it to nobody, and drops it itself.
 */
describe('finished jobs are kept for their retention, then gone everywhere', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  const brokers = new Map<string, Proc>();
  let client: NodeRuntime;
  let jobs: JobClient;
  let data: DataClient;
  let datastore: Proc;
  const startDatastore = () => (datastore = ucp(['datastore', '--node-id', 'rt-ds', '--data-dir', join(dir, 'rt-ds'), ...common()]));
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'rt', ...FAST];
  const startBroker = (id: string) => {
    const p = ucp(['broker', '--node-id', id, '--data-dir', join(dir, id), '--set', `jobs.retention_s=${RETENTION_S}`, ...common()]);
    brokers.set(id, p);
    return p;
  };
  const ask = (broker: string, jobId: string): Promise<AnyEnvelope | Error> => client.link.request(broker, 'job_query', { job_id: jobId }).catch((err: Error) => err);
  const known = async (broker: string, jobId: string) => {
    const reply = await ask(broker, jobId);
    if (reply instanceof Error) {
      if (/no job/.test(reply.message)) return false;
      throw reply;
    }
    return reply.kind === 'job_info';
  };
  async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}; rt-a said:\n${brokers.get('rt-a')!.lines.slice(-8).join('\n')}\n${brokers.get('rt-a')!.stderr.slice(-1_500)}`);
      await sleep(200);
    }
  }

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
    for (const id of ['rt-a', 'rt-b', 'rt-c']) startBroker(id);
    startDatastore();
    procs.push(ucp(['executor', '--node-id', 'rt-ex', '--data-dir', join(dir, 'rt-ex'), ...common()]));
    for (const [, b] of brokers) for (const peer of ['rt-ds', 'rt-ex']) await b.waitForLog({ msg: 'peer up', peer }, 20_000);
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'rt', 'hub.url': `mqtt://127.0.0.1:${port}`, 'liveness.heartbeat_interval_ms': 250, 'liveness.dead_after_ms': 1000 } });
    client = NodeRuntime.create({ config, nodeId: 'rt-client', role: 'client', dataDir: join(dir, 'rt-client'), logger: createLogger({ level: 'silent', format: 'json' }) });
    data = new DataClient(client.link, 20_000, 'rt-a');
    jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    for (const deadline = Date.now() + 10_000; client.link.peers.alive('broker').length < 3 && Date.now() < deadline; ) await sleep(50);
  }, 90_000);

  afterAll(async () => {
    await client?.stop();
    for (const b of brokers.values()) await b.stop();
    await datastore?.stop();
    for (const p of [...procs].reverse()) await p.stop();
    removeDir(dir);
  });

  it('a pruned job is gone from every replica and the datastore, and does not come back from a broker that was away', async () => {
    await data.put('rt/echo.wasm', readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'echo.wasm')));
    await data.put('kept-job/input.txt', new TextEncoder().encode('staged for the job'));
    const spec: JobSpec = { job_id: 'kept-job', wasm_module: 'rt/echo.wasm', capabilities: {}, argv: ['echo'], env: {}, dirs: [], data: { 'input.txt': 'kept-job/input.txt' }, results: ['out.txt'], named_results: { 'out.txt': 'rt/echo-out' }, priority: 'normal', timeout_s: 30, max_memory_mb: 32 };
    await jobs.submit(spec);
    const done = (await jobs.wait(['kept-job'], { timeoutMs: 30_000 })).get('kept-job')!.job;
    expect(done).toMatchObject({ state: 'succeeded', broker: 'rt-a' });
    await until('every broker holds the job', async () => (await Promise.all(['rt-a', 'rt-b', 'rt-c'].map((b) => known(b, 'kept-job')))).every(Boolean));
    expect((await data.get('kept-job/result.zip')).bytes.byteLength).toBeGreaterThan(0);
    expect(new TextDecoder().decode((await data.get('rt/echo-out')).bytes)).toBe('hello from echo\n');

    // rt-c is away (frozen: no will, no heartbeats) while the others prune.
    const away = brokers.get('rt-c')!;
    away.kill('SIGSTOP');
    await until('rt-a and rt-b dropped the job', async () => !(await known('rt-a', 'kept-job')) && !(await known('rt-b', 'kept-job')), (RETENTION_S + 30) * 1_000);
    for (const name of ['kept-job/result.zip', 'rt/echo-out', 'kept-job/input.txt']) {
      await until(`${name} is deleted`, async () => (await data.get(name).then(() => false, () => true)));
    }
    const listed = await client.link.request('rt-a', 'data_list', { prefix: 'kept-job', limit: 10 });
    expect(listed.kind === 'data_listing' ? listed.body.items : ['?']).toEqual([]);

    // Back, with the old record still in its store: nothing comes back to the others through anti-entropy.
    away.kill('SIGCONT');
    await sleep(4_000);
    expect(await known('rt-a', 'kept-job')).toBe(false);
    expect(await known('rt-b', 'kept-job')).toBe(false);
    await until('rt-c dropped it too', async () => !(await known('rt-c', 'kept-job')), 20_000);
    expect(await known('rt-a', 'kept-job')).toBe(false);
  }, 150_000);

  it('a datastore that was down while a job was pruned deletes the job\'s data when it is back', async () => {
    await data.put('gone-job/input.txt', new TextEncoder().encode('for a job that will be pruned'));
    const spec: JobSpec = { job_id: 'gone-job', wasm_module: 'rt/echo.wasm', capabilities: {}, argv: ['echo'], env: {}, dirs: [], data: { 'input.txt': 'gone-job/input.txt' }, results: ['out.txt'], named_results: { 'out.txt': 'rt/gone-out' }, priority: 'normal', timeout_s: 30, max_memory_mb: 32 };
    await jobs.submit(spec);
    expect((await jobs.wait(['gone-job'], { timeoutMs: 30_000 })).get('gone-job')!.job).toMatchObject({ state: 'succeeded', broker: 'rt-a' });
    const counters = async () => {
      const reply = await client.link.request('rt-a', 'status_request', {});
      return reply.kind === 'status' ? reply.body.counters : {};
    };
    // The job's small archive is kept in its record, not on rt-ds: it goes with the record.
    const names = ['rt/gone-out', 'gone-job/input.txt'];
    expect((await data.get('gone-job/result.zip')).bytes.byteLength).toBeGreaterThan(0);

    // Its only copies are on rt-ds, which is killed and stays down while the brokers prune the job.
    datastore.kill('SIGKILL');
    await datastore.exited;
    // Until then it is read with no datastore up.
    expect((await data.get('gone-job/result.zip')).bytes.byteLength).toBeGreaterThan(0);
    await until('rt-a dropped the job', async () => !(await known('rt-a', 'gone-job')), (RETENTION_S + 30) * 1_000);
    await sleep(1_000);
    startDatastore();

    // Asked directly, as a broker would (datastores serve brokers only): its copies go once it is back.
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'rt', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    const store = NodeStore.open({ dir: join(dir, 'rt-probe'), nodeId: 'rt-probe' });
    const probe = NodeLink.create({ ...linkOptionsFromConfig(config, createLogger({ level: 'silent', format: 'json' })), hubUrl: `mqtt://127.0.0.1:${port}`, nodeId: 'rt-probe', role: 'broker', store, announce: false, watchPresence: false });
    try {
      await probe.connect();
      const held = async (name: string) => {
        const reply = await probe.request('rt-ds', 'data_get', { name, prefix: false, limit: 1 }, 2_000).catch((err: Error) => err);
        if (reply instanceof Error && /no data named/.test(reply.message)) return false;
        if (reply instanceof Error) return undefined;
        return reply.kind === 'data_items';
      };
      await until('rt-ds deleted the pruned job\'s data', async () => (await Promise.all([...names, 'gone-job/result.zip'].map(held))).every((h) => h === false), 30_000);
      await expect(data.get('gone-job/result.zip')).rejects.toThrow(/no data named/);
      // rt-a owed them while rt-ds was down, and paid them when it came back.
      expect(await counters()).toMatchObject({ data_deletions_owed: names.length, data_deletions_paid: names.length });
    } finally {
      await probe.stop();
      await store.close();
    }
  }, 150_000);

  it('a deleted name is dropped by every broker once all live brokers have seen the deletion', async () => {
    const counters = async (broker: string) => {
      const reply = await client.link.request(broker, 'status_request', {});
      return reply.kind === 'status' ? reply.body.counters : {};
    };
    const before = await Promise.all(['rt-a', 'rt-b', 'rt-c'].map(async (b) => (await counters(b)).tombstones_pruned ?? 0));
    await data.put('plain/to-delete', new TextEncoder().encode('short-lived'));
    await data.delete({ name: 'plain/to-delete' });
    await until('every broker dropped the deletion', async () => {
      const now = await Promise.all(['rt-a', 'rt-b', 'rt-c'].map(async (b) => (await counters(b)).tombstones_pruned ?? 0));
      return now.every((n, i) => n > before[i]!);
    });
    await expect(data.get('plain/to-delete')).rejects.toThrow();
  }, 60_000);
});
