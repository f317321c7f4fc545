import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { JobSpec, JobView } from '../../src/protocol/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { waitForJob } from '../helpers/job-wait.js';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, type Proc } from '../helpers/processes.js';
import { TcpLink } from '../helpers/tcp-link.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'wasm');
const READMITTED = 'executor back without the lost attempt; the job may run there again';
// Long enough that the submission below reaches the broker while the silent unit still counts as alive.
const LIVENESS = ['--set', 'liveness.heartbeat_interval_ms=250', '--set', 'liveness.dead_after_ms=2000'];

/**
 * The only executor of a kind drops off the air (its radio link fades: nothing crosses, nobody is told)
 * and comes back as the same process. Real processes: the hub, a broker and the executor, whose link to
 * the hub runs through a TCP proxy that this test freezes and heals.
 */
describe('an executor that was cut off, not restarted, comes back', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  const radio = new TcpLink();
  let broker: Proc;
  let unit: Proc;
  let client: NodeRuntime;
  let jobs: JobClient;
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'rj', ...LIVENESS];

  const spec = (jobId: string, wasm: string, argv: string[]): JobSpec => ({
    job_id: jobId,
    wasm_module: wasm,
    capabilities: { tags: ['lone'] },
    argv,
    env: {},
    dirs: [],
    data: {},
    results: [],
    named_results: {},
    priority: 'normal',
    timeout_s: 60,
    max_memory_mb: 32,
  });
  const until = (jobId: string, what: string, ok: (job: JobView) => boolean, timeoutMs = 20_000) => waitForJob(jobs, jobId, what, ok, timeoutMs);

  /** Freezes the unit's link and waits until the broker has given the unit's jobs up. */
  async function cutOff(from: number, submit?: () => Promise<unknown>): Promise<Record<string, unknown>> {
    radio.freeze();
    await submit?.();
    return broker.waitForLog({ msg: 'executor lost; redeploying its jobs', executor: 'lone' }, 10_000, from);
  }

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
    broker = ucp(['broker', '--node-id', 'rj-b', '--data-dir', join(dir, 'rj-b'), '--log-level', 'info', ...common()]);
    procs.push(broker, ucp(['datastore', '--node-id', 'rj-d', '--data-dir', join(dir, 'rj-d'), ...common()]));
    const radioPort = await radio.start(port);
    unit = ucp(['executor', '--node-id', 'lone', '--data-dir', join(dir, 'lone'), '--log-level', 'info', ...common(), '--hub', `mqtt://127.0.0.1:${radioPort}`], { UCP_EXECUTOR_TAGS: 'lone' });
    procs.push(unit);
    await broker.waitForLog({ msg: 'peer up', peer: 'rj-d' }, 15_000);
    await broker.waitForLog({ msg: 'peer up', peer: 'lone' }, 15_000);
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'rj', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    client = NodeRuntime.create({ config, nodeId: 'tester', role: 'client', dataDir: join(dir, 'tester'), logger: createLogger({ level: 'silent', format: 'json' }) });
    const data = new DataClient(client.link, 10_000);
    jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    await data.put('bin/exit-code.wasm', readFileSync(join(FIXTURES, 'exit-code.wasm')));
    await data.put('bin/spin-for.wasm', readFileSync(join(FIXTURES, 'spin-for.wasm')));
  }, 60_000);

  afterAll(async () => {
    await client?.stop();
    for (const p of procs.reverse()) await p.stop();
    await radio.stop();
    removeDir(dir);
  });

  it('a job assigned just as the unit fell silent never reached it: it runs there once the unit is back', async () => {
    const from = broker.logs.length;
    // Assigned at once (the unit still counts as alive), into a link that carries nothing.
    const lost = await cutOff(from, () => jobs.submit(spec('unheard', 'bin/exit-code.wasm', ['exit-code', '0'])));
    expect(lost['jobs']).toBe(1);
    radio.heal();
    const done = await until('unheard', 'succeeded', (j) => j.state === 'succeeded');
    expect(done.attempts.map((a) => [a.executor, a.outcome])).toEqual([['lone', 'lost'], ['lone', 'accepted']]);
    expect(unit.count({ msg: 'job finished', job: 'unheard' })).toBe(1);
    expect(broker.count({ msg: READMITTED, job: 'unheard' })).toBe(1);
  }, 60_000);

  it('a unit still running its attempt when it comes back gets no second one: its own result is accepted', async () => {
    const job = 'long-heard';
    await jobs.submit(spec(job, 'bin/spin-for.wasm', ['spin-for', '4000']));
    await until(job, 'running', (j) => j.attempts[0]?.started_at !== undefined);
    await cutOff(broker.logs.length);
    radio.heal();
    const done = await until(job, 'succeeded', (j) => j.state === 'succeeded');
    expect(done.attempts.map((a) => [a.executor, a.outcome]), JSON.stringify(done.attempts)).toEqual([['lone', 'accepted']]);
    expect(unit.count({ msg: 'job finished', job })).toBe(1);
    expect(broker.count({ msg: READMITTED, job })).toBe(0);
  }, 60_000);

  it('a unit that finished its attempt while cut off gets no second one: the result it still owes is accepted', async () => {
    const job = 'done-unheard';
    await jobs.submit(spec(job, 'bin/spin-for.wasm', ['spin-for', '500']));
    await until(job, 'running', (j) => j.attempts[0]?.started_at !== undefined);
    const from = unit.logs.length;
    await cutOff(broker.logs.length);
    // Finished while nobody could hear it: its result waits in its outbox, its slot is free.
    await unit.waitForLog({ msg: 'job finished', job }, 10_000, from);
    radio.heal();
    const done = await until(job, 'succeeded', (j) => j.state === 'succeeded');
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await jobs.query(job)).attempts.map((a) => [a.executor, a.outcome])).toEqual([['lone', 'accepted']]);
    expect(done.attempts).toHaveLength(1);
    expect(broker.count({ msg: READMITTED, job })).toBe(0);
  }, 60_000);
});
