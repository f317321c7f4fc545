import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, type Proc } from '../helpers/processes.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('self-promotion', () => {
  const procs: Proc[] = [];
  const dir = tempDir();
  let client: NodeRuntime | undefined;

  afterAll(async () => {
    await client?.stop();
    for (const p of [...procs].reverse()) await p.stop();
    removeDir(dir);
  });

  it('a broker-eligible executor promotes itself when no broker is alive, not before, and jobs run through it', async () => {
    const port = await freePort();
    const common = ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'pr', '--set', 'liveness.heartbeat_interval_ms=250', '--set', 'liveness.dead_after_ms=1000'];
    procs.push(await startHubProcess(port));
    const broker = ucp(['broker', '--node-id', 'br', '--data-dir', join(dir, 'br'), ...common]);
    procs.push(broker, ucp(['datastore', '--node-id', 'ds', '--data-dir', join(dir, 'ds'), ...common]));
    const executor = ucp(['executor', '--node-id', 'unit-7', '--data-dir', join(dir, 'unit-7'), '--set', 'node.broker_eligible=true', '--set', 'liveness.promote_after_ms=500', ...common]);
    procs.push(executor);
    await broker.waitForLog({ msg: 'peer up', peer: 'unit-7' });
    await sleep(2_000);
    expect(executor.logs.some((l) => l.msg === 'promoted to broker')).toBe(false);

    broker.kill('SIGKILL');
    const promoted = await executor.waitForLog({ msg: 'promoted to broker' }, 10_000);
    expect(promoted.broker).toBe('unit-7.broker');

    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'pr', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    client = NodeRuntime.create({ config, nodeId: 'tester', role: 'client', dataDir: join(dir, 'tester'), logger: createLogger({ level: 'silent', format: 'json' }) });
    const data = new DataClient(client.link, 10_000);
    const jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    expect(await data.broker()).toBe('unit-7.broker');
    await data.put('bin/echo.wasm', readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'echo.wasm')));
    await jobs.submit({ job_id: 'after-promotion', wasm_module: 'bin/echo.wasm', capabilities: {}, argv: ['echo'], env: {}, dirs: [], data: {}, results: ['out.txt'], named_results: {}, priority: 'normal', timeout_s: 30, max_memory_mb: 32 });
    const done = (await jobs.wait(['after-promotion'], { timeoutMs: 15_000 })).get('after-promotion')?.job;
    expect(done).toMatchObject({ state: 'succeeded', broker: 'unit-7.broker', result: { executor: 'unit-7' } });
  }, 60_000);
});
