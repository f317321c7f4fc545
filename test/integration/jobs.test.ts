import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { JobSpec, JobView } from '../../src/protocol/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, ucpRun, type Proc } from '../helpers/processes.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'wasm');
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** The files of a result zip, as text. */
function unzip(file: string): Record<string, string> {
  return Object.fromEntries(Object.entries(unzipSync(readFileSync(file))).map(([name, bytes]) => [name, text(bytes)]));
}

/**
 * Jobs end to end through real processes: a hub, a broker, a datastore and executors, each its own `ucp`
 * process with its own LMDB store, running real WASI modules. Plans go in through `ucp run` or through a
 * client in this process.
 */
describe('jobs end to end', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  let client: NodeRuntime;
  let jobs: JobClient;
  let data: DataClient;
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'jb'];
  const cliClient = (id: string) => [...common(), '--node-id', id, '--data-dir', join(dir, id)];
  const startExecutor = (id: string, tags: string, slots: number) =>
    ucp(['executor', '--node-id', id, '--data-dir', join(dir, id), '--set', `executor.slots=${slots}`, ...common()], { UCP_EXECUTOR_TAGS: tags });

  /** A plan folder holding the given fixture modules and files. */
  function planDir(name: string, modules: string[], files: Record<string, string> = {}): string {
    const folder = join(dir, name);
    mkdirSync(folder, { recursive: true });
    for (const m of modules) copyFileSync(join(FIXTURES, `${m}.wasm`), join(folder, `${m}.wasm`));
    for (const [file, content] of Object.entries(files)) writeFileSync(join(folder, file), content);
    return folder;
  }

  /** A job spec with REC's defaults, for jobs submitted without a plan. */
  function spec(jobId: string, module: string, extra: Partial<JobSpec> = {}): JobSpec {
    return { job_id: jobId, wasm_module: module, capabilities: {}, argv: [], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 30, max_memory_mb: 64, ...extra };
  }

  async function finish(ids: string[], timeoutMs = 20_000): Promise<Map<string, JobView>> {
    const done = await jobs.wait(ids, { timeoutMs });
    return new Map([...done].map(([id, f]) => [id, f.job]));
  }

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
    const broker = ucp(['broker', '--node-id', 'br', '--data-dir', join(dir, 'br'), ...common()]);
    procs.push(broker, ucp(['datastore', '--node-id', 'ds', '--data-dir', join(dir, 'ds'), ...common()]));
    procs.push(startExecutor('ex-fire', 'firefighting', 2), startExecutor('ex-medic', 'medical', 2));
    for (const peer of ['ds', 'ex-fire', 'ex-medic']) await broker.waitForLog({ msg: 'peer up', peer }, 60_000);

    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'jb', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    // An operator, as every command on an open hub is: it also follows the jobs the CLI submits.
    client = NodeRuntime.create({ config, nodeId: 'tester', role: 'operator', dataDir: join(dir, 'tester'), logger: createLogger({ level: 'silent', format: 'json' }) });
    data = new DataClient(client.link, 10_000);
    jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    for (const m of ['echo', 'exit-code', 'trap', 'spin', 'spin-for', 'memory-hog', 'sum']) await data.put(`bin/${m}.wasm`, readFileSync(join(FIXTURES, `${m}.wasm`)));
  }, 120_000);

  afterAll(async () => {
    await client?.stop();
    for (const p of procs.reverse()) await p.stop();
    removeDir(dir);
  });

  it('runs a REC-format plan with inline data: the zip holds out.txt and the output/ logs, stdout shows argv, env and stdin, named results are readable', async () => {
    const folder = planDir('rec', ['echo'], { 'stdin.txt': 'line one\nline two\n' });
    writeFileSync(
      join(folder, 'plan.toml'),
      `[[jobs]]
[jobs.metadata]
job_id = "rec-echo"
wasm_module = "rec/echo.wasm"
argv = ["echo", "two words", "--flag"]
stdin_file = "rec/stdin"
dirs = ["output"]
stdout_file = "output/stdout.txt"
stderr_file = "output/stderr.txt"
results = ["out.txt", "output"]
results_receiver = "dtn://client/"

[jobs.metadata.capabilities]
cpu_cores = 1

[jobs.metadata.env]
GREETING = "hello responders"

[jobs.metadata.named_results]
"out.txt" = "rec/echo-out"

[jobs.data]
"rec/echo.wasm" = "echo.wasm"
"rec/stdin" = "stdin.txt"
`,
    );
    const results = join(dir, 'rec-results');
    const run = await ucpRun(['run', join(folder, 'plan.toml'), '--results', results, ...cliClient('cli-rec')]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('rec-echo: succeeded');
    const zip = unzip(join(results, 'rec-echo_result.zip'));
    expect(Object.keys(zip).sort()).toEqual(['out.txt', 'output/stderr.txt', 'output/stdout.txt']);
    expect(zip['out.txt']).toBe('hello from echo\n');
    expect(zip['output/stdout.txt']).toBe('argv[0]=echo\nargv[1]=two words\nargv[2]=--flag\nenv GREETING=hello responders\nstdin:\nline one\nline two\n');
    expect(zip['output/stderr.txt']).toBe('echo done\n');
    const named = await ucpRun(['data', 'get', 'rec/echo-out', ...common()]);
    expect(named).toMatchObject({ code: 0, stdout: 'hello from echo' });
  });

  it('chains two jobs on different executors: the second waits for the first one\'s named result', async () => {
    const folder = planDir('chain', ['sum'], { 'numbers.txt': '1 2 3 4\n' });
    writeFileSync(
      join(folder, 'plan.toml'),
      `[named_data]
"chain/numbers" = "numbers.txt"
"chain/sum.wasm" = "sum.wasm"

# Listed first, but it reads what the job below publishes: it must wait for it.
[[jobs]]
[jobs.metadata]
job_id = "chain-second"
wasm_module = "chain/sum.wasm"
argv = ["sum", "in.txt", "total.txt"]
results = ["total.txt"]
results_receiver = "dtn://client/"
[jobs.metadata.capabilities]
tags = ["medical"]
[jobs.metadata.data]
"in.txt" = "chain/partial"

[[jobs]]
[jobs.metadata]
job_id = "chain-first"
wasm_module = "chain/sum.wasm"
argv = ["sum", "in.txt", "partial.txt"]
[jobs.metadata.capabilities]
tags = ["firefighting"]
[jobs.metadata.data]
"in.txt" = "chain/numbers"
[jobs.metadata.named_results]
"partial.txt" = "chain/partial"
`,
    );
    const results = join(dir, 'chain-results');
    const run = await ucpRun(['run', join(folder, 'plan.toml'), '--results', results, ...cliClient('cli-chain')]);
    expect(run.code).toBe(0);
    expect(unzip(join(results, 'chain-second_result.zip'))['total.txt']).toBe('10\n');
    const [first, second] = await Promise.all([jobs.query('chain-first'), jobs.query('chain-second')]);
    expect(first.result?.executor).toBe('ex-fire');
    expect(second.result?.executor).toBe('ex-medic');
    // The second job was placed only after the first one's result had arrived.
    expect(second.attempts[0]!.assigned_at).toBeGreaterThanOrEqual(first.attempts[0]!.ended_at!);
  });

  it('keeps jobs needing a tag nobody offers queued, then runs them in priority order when such an executor joins', async () => {
    await jobs.submit(spec('late-normal', 'bin/spin-for.wasm', { argv: ['spin-for', '50'], capabilities: { tags: ['hazmat'] } }));
    for (let i = 1; i <= 3; i++) await jobs.submit(spec(`late-low-${i}`, 'bin/spin-for.wasm', { argv: ['spin-for', '50'], priority: 'low', capabilities: { tags: ['hazmat'] } }));
    await jobs.submit(spec('late-critical', 'bin/spin-for.wasm', { argv: ['spin-for', '50'], priority: 'critical', capabilities: { tags: ['hazmat'] } }));
    await new Promise((r) => setTimeout(r, 1_500));
    const waiting = await jobs.query('late-normal');
    expect(waiting.state).toBe('queued');
    expect(waiting.attempts).toEqual([]);
    expect(waiting.reason).toContain('missing tag "hazmat"');

    const hazmat = startExecutor('ex-hazmat', 'hazmat', 1);
    procs.push(hazmat);
    const ids = ['late-normal', 'late-critical', 'late-low-1', 'late-low-2', 'late-low-3'];
    const done = await finish(ids);
    for (const id of ids) expect(done.get(id)).toMatchObject({ state: 'succeeded', result: { executor: 'ex-hazmat' } });
    // One slot: the order of assignment is the order of priority, then of arrival.
    const order = ids.map((id) => ({ id, at: done.get(id)!.attempts[0]!.assigned_at })).sort((a, b) => a.at - b.at);
    expect(order.map((o) => o.id)).toEqual(['late-critical', 'late-normal', 'late-low-1', 'late-low-2', 'late-low-3']);
  });

  it('reports timeout, trap, memory cap, missing data and a non-zero exit, each with its reason', async () => {
    await jobs.submit(spec('fail-timeout', 'bin/spin.wasm', { timeout_s: 1 }));
    await jobs.submit(spec('fail-trap', 'bin/trap.wasm'));
    await jobs.submit(spec('fail-memory', 'bin/memory-hog.wasm', { argv: ['memory-hog', '64'], max_memory_mb: 16 }));
    await jobs.submit(spec('fail-missing', 'bin/echo.wasm', { data: { 'input.txt': 'nowhere/to-be-found' } }));
    await jobs.submit(spec('fail-exit', 'bin/exit-code.wasm', { argv: ['exit-code', '3'], results: ['nothing-here'] }));
    const done = await finish(['fail-timeout', 'fail-trap', 'fail-memory', 'fail-missing', 'fail-exit']);
    for (const job of done.values()) expect(job.state).toBe('failed');
    expect(done.get('fail-timeout')!.result).toMatchObject({ outcome: 'timeout' });
    expect(done.get('fail-timeout')!.reason).toMatch(/^timeout: killed after its 1 s time limit/);
    expect(done.get('fail-trap')!.reason).toMatch(/^trap: .*unreachable/);
    expect(done.get('fail-memory')!.reason).toMatch(/^memory_limit: ran out of its 16 MiB memory limit/);
    expect(done.get('fail-missing')!.reason).toMatch(/^missing_input: missing input "nowhere\/to-be-found"/);
    // A non-zero exit is a result: the job fails, its archive is delivered, and the reason quotes the
    // last line of stderr (discarded otherwise, as REC does when a plan names no stderr_file).
    const exit = done.get('fail-exit')!;
    expect(exit.result).toMatchObject({ outcome: 'exited', exit_code: 3, missing: ['nothing-here'] });
    expect(exit.reason).toContain('exited with code 3; stderr: exiting with 3');
    const archive = unzipSync((await data.get('fail-exit/result.zip')).bytes);
    expect(Object.keys(archive)).toEqual([]);
  });

  it('a client that detaches, restarts and collects its results later', async () => {
    const folder = planDir('detach', ['spin-for']);
    writeFileSync(
      join(folder, 'plan.toml'),
      ['a', 'b'].map((n) => `[[jobs]]\n[jobs.metadata]\njob_id = "detach-${n}"\nwasm_module = "detach/spin-for.wasm"\nargv = ["spin-for", "300"]\nresults = ["result.txt"]\nresults_receiver = "dtn://client/"\n`).join('\n') + '\n[named_data]\n"detach/spin-for.wasm" = "spin-for.wasm"\n',
    );
    const results = join(dir, 'detach-results');
    const detached = await ucpRun(['run', join(folder, 'plan.toml'), '--detach', '--results', results, ...cliClient('cli-detach')]);
    // Submitted is success: the jobs run on without this command.
    expect(detached.code).toBe(0);
    expect(detached.stdout).toContain('ucp results detach-a detach-b');
    expect(existsSync(results)).toBe(false);

    // A new process with the same client identity finds what the first one submitted.
    const collected = await ucpRun(['results', '--wait', '--results', results, ...cliClient('cli-detach')]);
    expect(collected.code).toBe(0);
    for (const id of ['detach-a', 'detach-b']) expect(unzip(join(results, `${id}_result.zip`))['result.txt']).toBe('spun 300\n');
    const again = await ucpRun(['results', '--results', results, ...cliClient('cli-detach')]);
    expect(again).toMatchObject({ code: 0, stdout: expect.stringContaining('no results to collect') });
  });

  it('refuses a bad plan before submitting anything, one line per problem naming the job and field', async () => {
    const folder = planDir('bad', ['echo']);
    writeFileSync(
      join(folder, 'plan.toml'),
      `[[jobs]]
[jobs.metadata]
job_id = "bad-ok"
wasm_module = "bad/echo.wasm"
[jobs.data]
"bad/echo.wasm" = "echo.wasm"

[[jobs]]
[jobs.metadata]
job_id = "bad-1"
wasm_module = "bad/echo.wasm"
colour = "red"
argv = "echo"

[[jobs]]
[jobs.metadata]
job_id = "bad-2"
wasm_module = "bad/echo.wasm"
[jobs.data]
"bad/input" = "missing-file.txt"
`,
    );
    const run = await ucpRun(['run', join(folder, 'plan.toml'), ...cliClient('cli-bad')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('jobs[1].metadata: unknown field "colour"');
    expect(run.stderr).toMatch(/jobs\[1\]\.metadata\.argv: .*array/);
    expect(run.stderr).toContain('jobs[2].data."bad/input": file not found: missing-file.txt');

    writeFileSync(join(folder, 'ref.toml'), `[[jobs]]\n[jobs.metadata]\njob_id = "bad-ref"\nwasm_module = "bad/not-published.wasm"\n`);
    const ref = await ucpRun(['run', join(folder, 'ref.toml'), ...cliClient('cli-bad')]);
    expect(ref.code).toBe(2);
    expect(ref.stderr).toContain('jobs[0].metadata.wasm_module: "bad/not-published.wasm" is neither in the plan nor in the network');
    const listed = await jobs.list();
    expect(listed.items.map((j) => j.job_id).filter((id) => id.startsWith('bad-'))).toEqual([]);
  });

  it('`ucp job ID --json` shows the state, the accepted attempt and each attempt with its outcome; `ucp jobs` lists it', async () => {
    await jobs.submit(spec('shown', 'bin/echo.wasm'));
    await finish(['shown']);
    const shown = await ucpRun(['job', 'shown', '--json', ...common()]);
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ id: 'shown', state: 'succeeded', acceptedAttempt: 1, attempts: [{ attempt: 1, outcome: 'accepted' }] });
    const listed = await ucpRun(['jobs', ...common()]);
    expect(listed.stdout).toMatch(/^shown\s+succeeded\s+normal\s+ex-\S+\s+1\s+tester/m);
    const unknown = await ucpRun(['job', 'no-such-job', ...common()]);
    expect(unknown).toMatchObject({ code: 1, stderr: expect.stringContaining('no job "no-such-job"') });
  });
});
