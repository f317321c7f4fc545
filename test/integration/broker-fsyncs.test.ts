import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { JobSpec } from '../../src/protocol/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, type Proc } from '../helpers/processes.js';

const HAS_STRACE = spawnSync('strace', ['-V']).status === 0;
const JOBS = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * In "flush" mode every commit is an fsync, which on an SD card is the expensive part of a job. A job
 * costs its broker two: the submission (its record, assignment and outbox entry) and the result (record,
 * retention entry, the archive's name). A write that misses its turn's batch adds a third, unseen by any
 * other test: the broker is traced for real (strace) while jobs run one at a time.
 */
describe.skipIf(!HAS_STRACE)('a broker in "flush" mode', () => {
  let dir: string;
  const procs: Proc[] = [];
  let broker: Proc;
  let client: NodeRuntime;
  let jobs: JobClient;

  beforeAll(async () => {
    dir = tempDir();
    const port = await freePort();
    const common = ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'fs'];
    procs.push(await startHubProcess(port));
    broker = ucp(['broker', '--node-id', 'fs-broker', '--data-dir', join(dir, 'fs-broker'), '--set', 'store.sync=flush', ...common]);
    procs.push(broker, ucp(['datastore', '--node-id', 'fs-ds', '--data-dir', join(dir, 'fs-ds'), ...common]), ucp(['executor', '--node-id', 'fs-ex', '--data-dir', join(dir, 'fs-ex'), ...common]));
    for (const peer of ['fs-ds', 'fs-ex']) await broker.waitForLog({ msg: 'peer up', peer }, 20_000);
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'fs', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    client = NodeRuntime.create({ config, nodeId: 'fs-client', role: 'client', dataDir: join(dir, 'fs-client'), logger: createLogger({ level: 'silent', format: 'json' }) });
    const data = new DataClient(client.link, 20_000);
    jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    await data.put('fs/exit-code.wasm', readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'exit-code.wasm')));
  }, 60_000);

  afterAll(async () => {
    await client?.stop();
    for (const p of [...procs].reverse()) await p.stop();
    removeDir(dir);
  });

  const run = async (id: string) => {
    // The archive is kept (the default): its name is indexed with the accepted result.
    const spec: JobSpec = { job_id: id, wasm_module: 'fs/exit-code.wasm', capabilities: {}, argv: ['exit-code', '0'], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 30, max_memory_mb: 16 };
    await jobs.submit(spec);
    expect((await jobs.wait([id], { timeoutMs: 20_000 })).get(id)!.job.state).toBe('succeeded');
  };

  it('makes two fsyncs per job, one for its submission and one for its result', async () => {
    for (let i = 0; i < 3; i++) await run(`fs-warm-${i}`);
    const out = join(dir, 'strace.txt');
    const strace = spawn('strace', ['-f', '-c', '-o', out, '-e', 'trace=fsync,fdatasync', '-p', String(broker.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let said = '';
    strace.stderr!.on('data', (d: Buffer) => (said += d.toString()));
    for (const deadline = Date.now() + 20_000; !/attached/.test(said) && Date.now() < deadline; ) await sleep(50);
    expect(said).toMatch(/attached/);
    await sleep(300);
    for (let i = 0; i < JOBS; i++) await run(`fs-${i}`);
    await sleep(300);
    const stopped = new Promise((r) => strace.once('close', r));
    strace.kill('SIGINT');
    await stopped;
    let calls = 0;
    for (const line of (existsSync(out) ? readFileSync(out, 'utf8') : '').split('\n')) {
      // % time  seconds  usecs/call  calls  [errors]  syscall
      const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$/.exec(line);
      if (m !== null) calls += Number(m[1]);
    }
    // Counted at all, and no more than two per job: a commit that starts while a flush is under way may
    // share the next flush with another, and a registry write may add one.
    expect(calls).toBeGreaterThanOrEqual(JOBS);
    expect(calls).toBeLessThanOrEqual(2 * JOBS + 2);
  }, 60_000);
});
