import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { JobSpec, JobView } from '../../src/protocol/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { freePort, removeDir, ROOT, tempDir, ucp, ucpRun, type Proc } from '../helpers/processes.js';

const ATTACKS = join(ROOT, 'test', 'fixtures', 'wasm', 'attacks');
const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);

/**
 * Hostile modules (test/fixtures/wasm/attacks, each built from the source beside it) run through a real
 * `ucp up` node: hub, broker, datastore and executor in one process, as on a field unit. Every escape must
 * leave the canary outside the job tree untouched and bring nothing of the host back; every killer must end
 * as a failure of its own job, with the node still up and running the next job.
 */
describe('sandbox attacks through a real executor', () => {
  let dir: string;
  let canaryDir: string;
  let canary: string;
  let port: number;
  let up: Proc;
  let client: NodeRuntime;
  let jobs: JobClient;
  let data: DataClient;
  const SECRET = `canary-secret-${process.pid}-${Date.now()}`;
  const ENV_SECRET = `env-secret-${process.pid}`;
  let n = 0;

  function spec(module: string, extra: Partial<JobSpec> = {}): JobSpec {
    return {
      job_id: `${module}-${++n}`,
      wasm_module: `attacks/${module}.wasm`,
      capabilities: {},
      argv: [module, canary, canaryDir],
      env: {},
      dirs: ['output'],
      data: {},
      stdout_file: 'output/stdout.log',
      results: ['loot.txt', 'output', 'previous-run.txt'],
      named_results: {},
      priority: 'normal',
      timeout_s: 20,
      max_memory_mb: 64,
      ...extra,
    };
  }

  async function run(s: JobSpec): Promise<{ job: JobView; files: Record<string, string> }> {
    await jobs.submit(s);
    const done = await jobs.wait([s.job_id], { timeoutMs: 60_000 });
    const job = done.get(s.job_id)!.job;
    const archive = job.result?.archive !== undefined && job.result.archive_bytes > 0 ? unzipSync((await data.get(job.result.archive)).bytes) : {};
    return { job, files: Object.fromEntries(Object.entries(archive).map(([k, v]) => [k, text(v)])) };
  }

  function canaryUntouched(): void {
    expect(readFileSync(canary, 'utf8')).toBe(SECRET);
    expect(readdirSync(canaryDir)).toEqual(['canary.txt']);
  }

  beforeAll(async () => {
    dir = tempDir();
    canaryDir = join(dir, 'canary');
    mkdirSync(canaryDir);
    canary = join(canaryDir, 'canary.txt');
    writeFileSync(canary, SECRET);
    port = await freePort();
    up = ucp(
      [
        'up', '--port', String(port), '--executors', '1', '--node-id', 'unit', '--data-dir', join(dir, 'unit'), '--cluster', 'atk',
        '--set', 'executor.slots=2', '--set', 'executor.max_memory_mb=128', '--set', 'executor.max_output_mb=8',
        '--set', 'executor.max_files=5000', '--set', 'executor.max_job_seconds=10',
      ],
      { ATTACK_TARGET_SECRET: ENV_SECRET },
    );
    await up.waitForLine(/hub listening on/, 20_000);
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'atk', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    client = NodeRuntime.create({ config, nodeId: 'attacker', role: 'client', dataDir: join(dir, 'attacker'), logger: createLogger({ level: 'silent', format: 'json' }) });
    data = new DataClient(client.link, 10_000);
    jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    for (const file of readdirSync(ATTACKS).filter((f) => f.endsWith('.wasm'))) await data.put(`attacks/${file}`, readFileSync(join(ATTACKS, file)));
  }, 90_000);

  afterAll(async () => {
    await client?.stop();
    await up?.stop();
    removeDir(dir);
  });

  const escapes = ['abs-path', 'dotdot', 'symlink-relative', 'symlink-absolute', 'hardlink', 'rename-onto-link', 'readdir-dotdot', 'odirectory-tricks', 'preopen-confusion'];
  for (const module of escapes) {
    it(`${module}: reaches nothing outside the job tree`, async () => {
      const { job, files } = await run(spec(module));
      expect(job).toMatchObject({ state: 'succeeded' });
      const stdout = files['output/stdout.log']!;
      // It really tried: one TRY line per attempt.
      expect(stdout.match(/^TRY /gm)!.length).toBeGreaterThan(5);
      const loot = files['loot.txt'] ?? '';
      expect(loot).not.toContain(SECRET);
      expect(loot).not.toContain(ENV_SECRET);
      expect(loot).not.toMatch(/root:/);
      canaryUntouched();
    });
  }

  it('links cannot be made at all: every symlink and link attempt is refused', async () => {
    const { files } = await run(spec('symlink-relative'));
    const planted = files['output/stdout.log']!.split('\n').filter((l) => /^TRY symlink /.test(l));
    expect(planted.length).toBeGreaterThan(0);
    for (const line of planted) expect(line).toMatch(/-> ENOTSUP$/);
  });

  it('a second attempt sees a fresh tree, never the files of an earlier one', async () => {
    const first = await run(spec('stale-tree', { argv: ['stale-tree', canary, canaryDir, 'first-run-marker'] }));
    expect(first.job.state).toBe('succeeded');
    const second = await run(spec('stale-tree', { argv: ['stale-tree', canary, canaryDir, 'second-run-marker'] }));
    expect(second.job.state).toBe('succeeded');
    expect(first.files['previous-run.txt']).toContain('first-run-marker');
    expect(second.files['output/stdout.log']).toMatch(/^previous-run\.txt: none$/m);
    expect(second.files['previous-run.txt']).toContain('second-run-marker');
  });

  it('huge argv and env arrive whole', async () => {
    const argv = ['huge-args', ...Array.from({ length: 100 }, (_, i) => `${i}`.padEnd(4_000, 'a'))];
    const env = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`VAR_${i}`, 'v'.repeat(4_000)]));
    const { job, files } = await run(spec('huge-args', { argv, env }));
    expect(job.state).toBe('succeeded');
    expect(files['output/stdout.log']).toMatch(/^argv: 101 strings, 400110 bytes$/m);
    expect(files['output/stdout.log']).toMatch(/^environ: 40 strings, \d+ bytes$/m);
  });

  describe('killers end only their own job', () => {
    it('proc_raise(SIGKILL) fails the job and reaches no process', async () => {
      const { job } = await run(spec('proc-raise', { argv: ['proc-raise', '9'] }));
      expect(job.state).toBe('failed');
      expect(job.reason).toMatch(/^trap: raised signal 9 \(SIGKILL\); a job's signals end only the job/);
    });

    it('proc_raise(SIGUSR1) opens no inspector on the host', async () => {
      const { job } = await run(spec('proc-raise', { argv: ['proc-raise', '10'] }));
      expect(job.state).toBe('failed');
      expect(job.reason).toMatch(/raised signal 10/);
    });

    it('table growth stops at the executor cap', async () => {
      const { job, files } = await run(spec('table-grow'));
      expect(job.state).toBe('succeeded');
      const grown = Number(/table grew to (\d+)/.exec(files['output/stdout.log']!)![1]);
      expect(grown).toBeLessThanOrEqual(100_000);
    });

    it('memory growth stops at the executor ceiling, whatever the job asks for', async () => {
      const { job, files } = await run(spec('memory-grow', { max_memory_mb: 4_096 }));
      expect(job.state).toBe('succeeded');
      const pages = Number(/got (\d+) pages/.exec(files['output/stdout.log']!)![1]);
      expect(pages * 65_536).toBeLessThanOrEqual(128 * 1_048_576);
    });

    it('a job that asks for more time than the unit allows is stopped at the unit limit, and says so', async () => {
      const { job } = await run(spec('poll-leak', { timeout_s: 3_600 }));
      expect(job.state).toBe('failed');
      expect(job.reason).toMatch(/^timeout: killed after its 10 s time limit \(executor.max_job_seconds on unit-executor-1; the job asked for 3600 s\)/);
    }, 30_000);

    it('a stdout flood ends at the output limit', async () => {
      const { job } = await run(spec('stdout-flood', { stdout_file: undefined, results: [] }));
      expect(job).toMatchObject({ state: 'failed', result: { outcome: 'output_limit' } });
      expect(job.reason).toMatch(/wrote more than its 8 MiB output limit/);
    });

    it('a file flood ends at the output limit', async () => {
      const { job } = await run(spec('file-flood'));
      expect(job).toMatchObject({ state: 'failed', result: { outcome: 'output_limit' } });
    });

    it('file and directory floods are refused at the unit quota', async () => {
      const { job, files } = await run(spec('inode-flood'));
      expect(job.state).toBe('succeeded');
      expect(files['output/stdout.log']).toMatch(/EDQUOT/);
    });

    it('descriptors run out inside the job, not in the executor', async () => {
      const { job, files } = await run(spec('fd-exhaust'));
      expect(job.state).toBe('succeeded');
      expect(files['output/stdout.log']).toMatch(/EMFILE/);
    });

    it('unbounded recursion is a trap', async () => {
      const { job } = await run(spec('recursion'));
      expect(job).toMatchObject({ state: 'failed', result: { outcome: 'trap' } });
    });

    it('modules that import anything but WASI, or are no WASI command, are refused naming the rule', async () => {
      const cases: Array<[string, RegExp]> = [
        ['imports-env', /imports env\.exec; a job may import functions only from wasi_snapshot_preview1/],
        ['imports-unstable', /imports wasi_unstable\.fd_write; a job may import functions only from wasi_snapshot_preview1/],
        ['imports-threads', /imports wasi\.thread-spawn|shared memory/],
        ['imports-table', /imports a table/],
        ['no-start', /exports no _start function/],
      ];
      for (const [module, reason] of cases) {
        const { job } = await run(spec(module));
        expect(job, module).toMatchObject({ state: 'failed', result: { outcome: 'invalid_module' } });
        expect(job.reason, module).toMatch(reason);
      }
    });
  });

  describe('results that cannot travel', () => {
    it('a result file whose name a result cannot carry fails the job, saying which', async () => {
      const { job } = await run(spec('bad-name', { results: ['out'] }));
      expect(job).toMatchObject({ state: 'failed', result: { outcome: 'result_undeliverable' } });
      expect(job.reason).toMatch(/"out\/a b\.txt" has a name a result cannot carry/);
    });

    it('4,000 small result files travel; more than a result can list fail the job with the reason', async () => {
      const { job } = await run(spec('many-files', { argv: ['many-files', '4000'], results: ['out'] }));
      expect(job.state).toBe('succeeded');
      expect(job.result!.files.length).toBe(4_000);
      const { job: tooMany } = await run(spec('many-files', { argv: ['many-files', '4500'], results: ['out'] }));
      expect(tooMany).toMatchObject({ state: 'failed', result: { outcome: 'result_undeliverable' } });
      expect(tooMany.reason).toMatch(/more than 4096 files/);
    });
  });

  it('after all of it the node is the same process, answers a ping and runs an ordinary job', async () => {
    expect(up.child.exitCode).toBeNull();
    expect(up.count({ msg: 'peer down' })).toBe(0);
    const ping = await ucpRun(['ping', 'unit-executor-1', '--count', '1', '--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'atk', '--node-id', 'pinger', '--data-dir', join(dir, 'pinger')]);
    expect(ping.code).toBe(0);
    const { job, files } = await run(spec('stale-tree', { argv: ['stale-tree', canary, canaryDir, 'last'], results: ['previous-run.txt'] }));
    expect(job.state).toBe('succeeded');
    expect(files['previous-run.txt']).toContain('last');
    canaryUntouched();
    // Nothing was written beside the node's own data either.
    expect(statSync(join(dir, 'unit')).isDirectory()).toBe(true);
    expect(readdirSync(dir).filter((d) => d !== 'pinger').sort()).toEqual(['attacker', 'canary', 'unit']);
  });
});
