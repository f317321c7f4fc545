import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { JobSpec } from '../../src/protocol/index.js';
import { NodeStore } from '../../src/store/index.js';
import { NodeLink, NodeRuntime, linkOptionsFromConfig } from '../../src/transport/index.js';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, type Proc } from '../helpers/processes.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FAST = ['--set', 'metadata_sync.interval_s=1', '--set', 'liveness.heartbeat_interval_ms=250', '--set', 'liveness.dead_after_ms=1000'];
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/**
 * A small result archive is kept in its job's record (scheduler.metadata_archive_bytes), which every
 * broker replicates: accepting the result asks no datastore, the archive is read from any broker with no
 * datastore up, and a larger one still goes to a datastore. Real processes: a hub, two brokers, a
 * datastore and an executor.
 */
describe('small result archives are kept in the job record', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  let datastore: Proc;
  let client: NodeRuntime;
  let jobs: JobClient;
  let viaA: DataClient;
  let viaB: DataClient;
  let probe: NodeLink;
  let probeStore: NodeStore;
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'ar', ...FAST];

  /** Whether the datastore itself holds `name`, asked as a broker would. */
  async function onDatastore(name: string): Promise<boolean> {
    const reply = await probe.request('ar-ds', 'data_get', { name, prefix: false, limit: 1 }, 5_000).catch((err: Error) => err);
    if (reply instanceof Error && /no data named/.test(reply.message)) return false;
    if (reply instanceof Error) throw reply;
    return reply.kind === 'data_items';
  }

  async function datastoreCounters(): Promise<Record<string, number>> {
    const reply = await client.link.request('ar-ds', 'status_request', {});
    return reply.kind === 'status' ? reply.body.counters : {};
  }

  function spec(jobId: string, extra: Partial<JobSpec>): JobSpec {
    return { job_id: jobId, wasm_module: 'ar/echo.wasm', capabilities: {}, argv: ['echo'], env: {}, dirs: [], data: {}, results: ['out.txt'], named_results: {}, priority: 'normal', timeout_s: 30, max_memory_mb: 32, ...extra };
  }

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
    const brokers = ['ar-a', 'ar-b'].map((id) => ucp(['broker', '--node-id', id, '--data-dir', join(dir, id), ...common()]));
    procs.push(...brokers);
    datastore = ucp(['datastore', '--node-id', 'ar-ds', '--data-dir', join(dir, 'ar-ds'), ...common()]);
    procs.push(ucp(['executor', '--node-id', 'ar-ex', '--data-dir', join(dir, 'ar-ex'), ...common()]));
    for (const b of brokers) for (const peer of ['ar-ds', 'ar-ex']) await b.waitForLog({ msg: 'peer up', peer }, 20_000);
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'ar', 'hub.url': `mqtt://127.0.0.1:${port}`, 'liveness.heartbeat_interval_ms': 250, 'liveness.dead_after_ms': 1000 } });
    client = NodeRuntime.create({ config, nodeId: 'ar-client', role: 'client', dataDir: join(dir, 'ar-client'), logger: createLogger({ level: 'silent', format: 'json' }) });
    viaA = new DataClient(client.link, 20_000, 'ar-a');
    viaB = new DataClient(client.link, 20_000, 'ar-b');
    jobs = new JobClient(client.link, client.store, viaA);
    await client.connect();
    probeStore = NodeStore.open({ dir: join(dir, 'ar-probe'), nodeId: 'ar-probe' });
    probe = NodeLink.create({ ...linkOptionsFromConfig(config, createLogger({ level: 'silent', format: 'json' })), hubUrl: `mqtt://127.0.0.1:${port}`, nodeId: 'ar-probe', role: 'broker', store: probeStore, announce: false, watchPresence: false });
    await probe.connect();
    for (const deadline = Date.now() + 10_000; client.link.peers.alive('broker').length < 2 && Date.now() < deadline; ) await sleep(50);
  }, 90_000);

  afterAll(async () => {
    await probe?.stop();
    await probeStore?.close();
    await client?.stop();
    await datastore?.stop();
    for (const p of [...procs].reverse()) await p.stop();
    removeDir(dir);
  });

  it('keeps a small archive in the record, serves it from every broker, and stores a large one on the datastore', async () => {
    await viaA.put('ar/echo.wasm', readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'echo.wasm')));
    await viaA.put('ar/big-output.wasm', readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'big-output.wasm')));
    const putsBefore = (await datastoreCounters()).puts_stored ?? 0;

    await jobs.submit(spec('small-job', {}));
    const small = (await jobs.wait(['small-job'], { timeoutMs: 30_000 })).get('small-job')!.job;
    expect(small).toMatchObject({ state: 'succeeded', broker: 'ar-a' });
    // Clients see where it is, not its bytes: they fetch it by name like any other.
    const where = small.result!.published!['small-job/result.zip']!;
    expect(where).toMatchObject({ store: 'ar-a' });
    expect(where).not.toHaveProperty('bytes');
    expect(await onDatastore('small-job/result.zip')).toBe(false);
    // Accepting the result asked the datastore nothing.
    expect((await datastoreCounters()).puts_stored ?? 0).toBe(putsBefore);

    const fromA = (await viaA.get('small-job/result.zip')).bytes;
    expect(fromA.byteLength).toBe(where.size);
    expect(text(unzipSync(fromA)['out.txt']!)).toBe('hello from echo\n');
    // The other broker has it through metadata sync: the record and the name.
    let fromB: Uint8Array | undefined;
    for (const deadline = Date.now() + 10_000; fromB === undefined && Date.now() < deadline; await sleep(100)) {
      fromB = await viaB.get('small-job/result.zip').then((item) => item.bytes, () => undefined);
    }
    expect(fromB).toEqual(fromA);
    // Read in pieces, as a large object is: the same bytes, with their digest.
    const chunk = await client.link.request('ar-b', 'data_read', { name: 'small-job/result.zip', from: 10, max_bytes: 20 });
    expect(chunk.kind === 'data_chunk' ? chunk.body : undefined).toMatchObject({ from: 10, next: 30, size: fromA.byteLength, writer: 'ar-ex', series: false, bytes: fromA.subarray(10, 30) });
    const listed = await client.link.request('ar-b', 'data_list', { prefix: 'small-job', limit: 10 });
    expect(listed.kind === 'data_listing' ? listed.body.items : undefined).toEqual([expect.objectContaining({ name: 'small-job/result.zip', size: fromA.byteLength, store: 'ar-a' })]);

    // 64 KiB of output makes an archive over the 1,024 bytes a record keeps: it goes to the datastore.
    await jobs.submit(spec('large-job', { wasm_module: 'ar/big-output.wasm', argv: ['big-output', 'out.bin', '65536'], results: ['out.bin'] }));
    const large = (await jobs.wait(['large-job'], { timeoutMs: 30_000 })).get('large-job')!.job;
    expect(large.state).toBe('succeeded');
    expect(large.result!.published!['large-job/result.zip']).toMatchObject({ store: 'ar-ds' });
    expect(large.result!.archive_bytes).toBeGreaterThan(1_024);
    expect(await onDatastore('large-job/result.zip')).toBe(true);

    // With the datastore gone, the small archive is still read from either broker; the large one is not.
    datastore.kill('SIGKILL');
    await datastore.exited;
    expect((await viaB.get('small-job/result.zip')).bytes).toEqual(fromA);
    expect((await viaA.get('small-job/result.zip')).bytes).toEqual(fromA);
    await expect(viaA.get('large-job/result.zip')).rejects.toThrow(/not reachable/);

    // Deleted by name, it is gone from every broker.
    await viaA.delete({ name: 'small-job/result.zip' });
    await expect(viaA.get('small-job/result.zip')).rejects.toThrow(/no data named/);
    let goneFromB = false;
    for (const deadline = Date.now() + 10_000; !goneFromB && Date.now() < deadline; await sleep(100)) {
      goneFromB = await viaB.get('small-job/result.zip').then(() => false, (err: Error) => /no data named/.test(err.message));
    }
    expect(goneFromB).toBe(true);
  }, 90_000);
});
