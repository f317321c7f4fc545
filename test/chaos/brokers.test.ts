import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { AnyEnvelope, BodyOf, JobSpec, Kind } from '../../src/protocol/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, type Proc } from '../helpers/processes.js';

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SYNC = ['--set', 'metadata_sync.interval_s=1', '--set', 'liveness.heartbeat_interval_ms=250', '--set', 'liveness.dead_after_ms=1000'];

/**
 * Three brokers on one hub, each a real process with its own LMDB store, syncing their metadata: a broker
 * killed with kill -9 must not take any job, result or name with it, and a broker restarted with stale
 * state catches up by receiving only what changed while it was away.
 */
describe('brokers keep their metadata in sync', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  const brokers = new Map<string, Proc>();
  let client: NodeRuntime;
  let jobs: JobClient;
  let data: DataClient;
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'mb', ...SYNC];
  const startBroker = (id: string) => {
    const p = ucp(['broker', '--node-id', id, '--data-dir', join(dir, id), ...common()]);
    brokers.set(id, p);
    return p;
  };

  /** A request to one broker in particular, as a client attached to it would make. */
  async function ask<K extends Kind>(broker: string, kind: K, body: BodyOf<K>): Promise<AnyEnvelope> {
    return client.link.request(broker, kind, body);
  }
  async function counters(broker: string): Promise<Record<string, number>> {
    const reply = await ask(broker, 'status_request', {});
    return reply.kind === 'status' ? reply.body.counters : {};
  }

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
    for (const id of ['br-a', 'br-b', 'br-c']) startBroker(id);
    procs.push(ucp(['datastore', '--node-id', 'ds', '--data-dir', join(dir, 'ds'), ...common()]));
    procs.push(ucp(['executor', '--node-id', 'ex', '--data-dir', join(dir, 'ex'), ...common()]));
    for (const [, b] of brokers) for (const peer of ['ds', 'ex']) await b.waitForLog({ msg: 'peer up', peer });
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'mb', 'hub.url': `mqtt://127.0.0.1:${port}`, 'liveness.heartbeat_interval_ms': 250, 'liveness.dead_after_ms': 1000 } });
    client = NodeRuntime.create({ config, nodeId: 'tester', role: 'client', dataDir: join(dir, 'tester'), logger: createLogger({ level: 'silent', format: 'json' }) });
    data = new DataClient(client.link, 20_000, 'br-a');
    jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    for (const deadline = Date.now() + 10_000; client.link.peers.alive('broker').length < 3 && Date.now() < deadline; ) await sleep(50);
  }, 60_000);

  afterAll(async () => {
    await client?.stop();
    for (const b of brokers.values()) await b.stop();
    for (const p of [...procs].reverse()) await p.stop();
    removeDir(dir);
  });

  it('a job and names handled by one broker stay findable and readable through the others after it is killed', async () => {
    // The client is attached to br-a (its node.broker).
    expect(await data.broker()).toBe('br-a');
    await data.put('bin/echo.wasm', readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'echo.wasm')));
    for (let i = 0; i < 5; i++) await data.put(`fire/district-${i}/temps`, bytes(`reading ${i}`));
    const spec: JobSpec = { job_id: 'synced-job', wasm_module: 'bin/echo.wasm', capabilities: {}, argv: ['echo', 'hi'], env: {}, dirs: [], data: {}, results: ['out.txt'], named_results: { 'out.txt': 'synced/out' }, priority: 'normal', timeout_s: 30, max_memory_mb: 32 };
    await jobs.submit(spec);
    const done = (await jobs.wait(['synced-job'], { timeoutMs: 20_000 })).get('synced-job')!.job;
    expect(done).toMatchObject({ state: 'succeeded', broker: 'br-a' });
    await sleep(300);

    brokers.get('br-a')!.kill('SIGKILL');
    await brokers.get('br-a')!.exited;
    for (const survivor of ['br-b', 'br-c']) {
      const info = await ask(survivor, 'job_query', { job_id: 'synced-job' });
      expect(info.kind === 'job_info' ? info.body.job : undefined, survivor).toMatchObject({ state: 'succeeded', broker: 'br-a', result: { attempt: 1, executor: 'ex', archive: 'synced-job/result.zip' } });
      const listing = await ask(survivor, 'data_list', { prefix: 'fire', limit: 100 });
      expect(listing.kind === 'data_listing' ? listing.body.items.map((i) => i.name) : [], survivor).toEqual([0, 1, 2, 3, 4].map((i) => `fire/district-${i}/temps`));
      const item = await ask(survivor, 'data_get', { name: 'fire/district-3/temps', prefix: false, limit: 1 });
      expect(item.kind === 'data_items' ? text(item.body.items[0]!.bytes) : '', survivor).toBe('reading 3');
      const out = await ask(survivor, 'data_get', { name: 'synced/out', prefix: false, limit: 1 });
      expect(out.kind === 'data_items' ? text(out.body.items[0]!.bytes) : '', survivor).toBe('hello from echo\n');
    }
    // The client re-attaches to a survivor by itself.
    data.prefer(undefined);
    expect(['br-b', 'br-c']).toContain(await data.broker());
    data.prefer('br-b');
    expect(text((await data.get('fire/district-0/temps')).bytes)).toBe('reading 0');
  });

  it('a broker restarted with stale state catches up, receiving only the changes made while it was away', async () => {
    brokers.get('br-c')!.kill('SIGKILL');
    await brokers.get('br-c')!.exited;
    const away = 20;
    for (let i = 0; i < away; i++) await data.put(`while-away/${i}`, bytes(`v${i}`));
    await data.put('fire/district-0/temps', bytes('updated'));
    const restarted = startBroker('br-c');
    await restarted.waitForLog({ msg: 'connected' });
    const deadline = performance.now() + 15_000;
    let listed: string[] = [];
    while (performance.now() < deadline) {
      const listing = await ask('br-c', 'data_list', { prefix: 'while-away', limit: 100 });
      listed = listing.kind === 'data_listing' ? listing.body.items.map((i) => i.name) : [];
      if (listed.length === away) break;
      await sleep(100);
    }
    expect(listed).toHaveLength(away);
    const updated = await ask('br-c', 'data_get', { name: 'fire/district-0/temps', prefix: false, limit: 1 });
    expect(updated.kind === 'data_items' ? text(updated.body.items[0]!.bytes) : '').toBe('updated');
    await sleep(1_500);
    // 21 names changed while it was away; the 8 names and the job it already had did not travel again.
    // (Registry records may travel too: a unit that looked dead for a moment on a loaded machine.)
    const c = await counters('br-c');
    expect(c.sync_names_received).toBe(away + 1);
    expect(c.sync_jobs_received ?? 0).toBe(0);
  });

  it('kill -9 the broker managing jobs in flight: a survivor adopts them, the results reach it, each job has exactly one accepted result', async () => {
    expect(await data.broker()).toBe('br-b');
    await data.put('bin/spin-for.wasm', readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'spin-for.wasm')));
    const ids = Array.from({ length: 6 }, (_, i) => `adopted-${i}`);
    for (const id of ids) {
      await jobs.submit({ job_id: id, wasm_module: 'bin/spin-for.wasm', capabilities: {}, argv: ['spin-for', '800'], env: {}, dirs: [], data: {}, results: ['result.txt'], named_results: {}, priority: 'normal', timeout_s: 30, max_memory_mb: 32 });
    }
    const deadline = performance.now() + 10_000;
    while (performance.now() < deadline) {
      const first = await jobs.query(ids[0]!);
      if (first.state === 'running') break;
      await sleep(50);
    }
    brokers.get('br-b')!.kill('SIGKILL');
    await brokers.get('br-b')!.exited;
    const done = await jobs.wait(ids, { timeoutMs: 30_000 });
    expect(done.size).toBe(ids.length);
    for (const id of ids) {
      const job = done.get(id)!.job;
      expect(job, id).toMatchObject({ state: 'succeeded', broker: 'br-c' });
      expect(job.attempts.filter((a) => a.outcome === 'accepted'), id).toHaveLength(1);
      expect(text((await data.get(`${id}/result.zip`)).bytes).length).toBeGreaterThan(0);
    }
    const c = await counters('br-c');
    expect(c.jobs_adopted).toBeGreaterThan(0);
  }, 60_000);
});
