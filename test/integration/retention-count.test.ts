import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { JobSpec } from '../../src/protocol/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, type Proc } from '../helpers/processes.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const JOBS = 120;
const COUNT = 5;

/**
 * jobs.retention_count is held within a second or two, not only at the next pruning interval (60 s with a
 * long jobs.retention_s): a broker finishing jobs fast would otherwise hold thousands over the count, and
 * remove them all at once. Real broker, datastore and executor processes; trivial jobs.
 */
describe('retention by count', () => {
  let dir: string;
  const procs: Proc[] = [];
  let client: NodeRuntime;
  let jobs: JobClient;

  beforeAll(async () => {
    dir = tempDir();
    const port = await freePort();
    procs.push(await startHubProcess(port));
    const common = ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'rc'];
    const broker = ucp(['broker', '--node-id', 'rc-broker', '--data-dir', join(dir, 'broker'), '--set', 'jobs.retention_s=3600', '--set', `jobs.retention_count=${COUNT}`, ...common]);
    procs.push(broker);
    procs.push(ucp(['datastore', '--node-id', 'rc-ds', '--data-dir', join(dir, 'ds'), ...common]));
    procs.push(ucp(['executor', '--node-id', 'rc-ex', '--data-dir', join(dir, 'ex'), ...common]));
    for (const peer of ['rc-ds', 'rc-ex']) await broker.waitForLog({ msg: 'peer up', peer }, 30_000);
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'rc', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    client = NodeRuntime.create({ config, nodeId: 'rc-client', role: 'client', dataDir: join(dir, 'client'), logger: createLogger({ level: 'silent', format: 'json' }) });
    const data = new DataClient(client.link, 20_000);
    jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    await data.put('rc/exit-code.wasm', readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'exit-code.wasm')));
  }, 60_000);

  afterAll(async () => {
    await client?.stop();
    for (const p of [...procs].reverse()) await p.stop();
    removeDir(dir);
  });

  it('a broker over its count by more than the slack prunes to the count within seconds', async () => {
    const ids = Array.from({ length: JOBS }, (_, i) => `rc-${String(i).padStart(3, '0')}`);
    const spec = (id: string): JobSpec => ({ job_id: id, wasm_module: 'rc/exit-code.wasm', capabilities: {}, argv: ['exit-code', '0'], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 60, max_memory_mb: 16 });
    // Ten at a time, so the jobs finish in order and the count limit has a clear oldest.
    for (let i = 0; i < JOBS; i += 10) {
      const batch = ids.slice(i, i + 10);
      for (const id of batch) await jobs.submit(spec(id));
      const done = await jobs.wait(batch, { timeoutMs: 60_000 });
      expect([...done.values()].map((f) => f.job.state)).toEqual(batch.map(() => 'succeeded'));
    }
    // The pass starts once 106 jobs are held (the count plus a slack of 100) and leaves the newest 5; the
    // 14 that finish after it stay until the next interval. Without it all 120 stay for 60 s.
    let held = JOBS;
    for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(250)) {
      held = (await jobs.list({ states: ['succeeded'] })).items.length;
      if (held <= COUNT + JOBS - 106) break;
    }
    expect(held).toBeLessThanOrEqual(COUNT + JOBS - 106);
    const listed = (await jobs.list({ states: ['succeeded'] })).items.map((i) => i.job_id);
    // The newest stayed, the oldest went.
    expect(listed).toContain(ids.at(-1));
    expect(listed).not.toContain(ids[0]);
  }, 120_000);
});
