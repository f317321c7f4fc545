import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, ucpRun, type Proc } from '../helpers/processes.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'wasm');

/** Non-empty stderr lines that are not JSON log lines. */
const said = (stderr: string) => stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('{'));

/**
 * The `ucp` command in a new user's first hour: what it exits with, what its help shows, that it says
 * what it waits for, that query commands answer without log noise, and what Ctrl-C does.
 */
describe('a CLI that behaves', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'cli'];
  const client = (id: string) => [...common(), '--node-id', id, '--data-dir', join(dir, 'clients', id)];

  beforeAll(async () => {
    dir = tempDir('ucp-cli-behaviour-');
    port = await freePort();
    procs.push(await startHubProcess(port));
    const broker = ucp(['broker', '--node-id', 'br', '--data-dir', join(dir, 'br'), ...common()]);
    procs.push(broker, ucp(['datastore', '--node-id', 'ds', '--data-dir', join(dir, 'ds'), ...common()]));
    procs.push(ucp(['executor', '--node-id', 'ex', '--data-dir', join(dir, 'ex'), ...common()]));
    for (const peer of ['ds', 'ex']) await broker.waitForLog({ msg: 'peer up', peer }, 60_000);
  }, 120_000);

  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    removeDir(dir);
  });

  it('bad usage exits 2 in one line: an unknown command or option, a missing argument, a bad value', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['frobnicate'], /^ucp: unknown command 'frobnicate'/],
      [['run', 'plan.toml', '--bogus'], /^ucp: unknown option '--bogus' \(add --help for usage\)$/],
      [['ping'], /^ucp: missing required argument 'node' \(add --help for usage\)$/],
      [['nodes', '--wait', 'soon'], /^ucp: option '--wait <ms>' argument 'soon' is invalid\. wait must be an integer 0\.\.600000 \(add --help for usage\)$/],
      [['notice', 'n', 'text', '--severity', 'panic'], /^ucp: option '--severity <level>' argument 'panic' is invalid/],
      [['run', join(dir, 'no-such-plan.toml')], /no such plan file/],
    ];
    for (const [args, line] of cases) {
      const result = await ucpRun(args);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(2);
      expect(said(result.stderr), args.join(' ')).toEqual([expect.stringMatching(line)]);
    }
  }, 120_000);

  it("a subcommand's help shows the global options that apply to it", async () => {
    const help = async (...args: string[]) => {
      const result = await ucpRun([...args, '--help']);
      expect(result.code).toBe(0);
      return result.stdout;
    };
    const broker = await help('broker');
    for (const flag of ['--hub <url>', '--cluster <name>', '--data-dir <dir>', '--node-id <id>', '--config <file>', '--log-level <level>', '--set <key=value>']) expect(broker).toContain(flag);
    expect(broker).not.toContain('--json');
    const nodes = await help('nodes');
    expect(nodes).toContain('--json');
    expect(nodes).not.toContain('--data-dir');
    const run = await help('run');
    for (const flag of ['--node-id <id>', '--data-dir <dir>', '--json']) expect(run).toContain(flag);
    expect(await help('data', 'get')).toContain('--hub <url>');
    expect(await help('hub')).not.toContain('--hub <url>');
  }, 120_000);

  it('query commands answer without log lines unless --log-level asks for them', async () => {
    const folder = join(dir, 'quiet');
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, 'plan.toml'), `[named_data]\nsmoke = "${join(FIXTURES, 'rec-smoke.wasm')}"\n[[jobs]]\n[jobs.metadata]\njob_id = "quiet-job"\nwasm_module = "smoke"\nresults_receiver = "dtn://client/"\nresults = ["/out.txt"]\n`);
    const ran = await ucpRun(['run', join(folder, 'plan.toml'), '--results', join(dir, 'quiet-results'), ...client('quiet-client')]);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stderr.split('\n').filter((l) => l !== '' && !/^waiting for .*\.\.\.$/.test(l))).toEqual([]);
    for (const args of [['nodes'], ['jobs'], ['job', 'quiet-job'], ['data', 'ls'], ['data', 'get', 'smoke', '--out', join(dir, 'smoke.wasm')], ['ping', 'br', '-c', '1'], ['status', 'br'], ['results', 'quiet-job', '--results', join(dir, 'quiet-again'), ...client('quiet-client')]]) {
      const result = await ucpRun([...common(), ...args]);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
      // Nothing but, on a slow machine, a note of what it waited for.
      expect(result.stderr.split('\n').filter((l) => l !== '' && !/^waiting for .*\.\.\.$/.test(l)), args.join(' ')).toEqual([]);
    }
    const loud = await ucpRun(['jobs', '--log-level', 'info', ...common()]);
    expect(loud.stderr).toContain('"msg":"connected"');
  }, 180_000);

  it('`ucp status` of a broker that decided a result shows how long its decisions and submissions took', async () => {
    const folder = join(dir, 'timed');
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, 'plan.toml'), `[named_data]\nsmoke = "${join(FIXTURES, 'rec-smoke.wasm')}"\n[[jobs]]\n[jobs.metadata]\njob_id = "timed-job"\nwasm_module = "smoke"\n`);
    expect((await ucpRun(['run', join(folder, 'plan.toml'), ...client('timed-client')])).code).toBe(0);
    const shown = await ucpRun(['status', 'br', '--json', ...common()]);
    const timings = (JSON.parse(shown.stdout) as { timings: Record<string, { count: number; p50_ms: number; p99_ms: number; max_ms: number }> }).timings;
    for (const name of ['result_decision_ms', 'submission_ms']) {
      const t = timings[name]!;
      expect(t.count, name).toBeGreaterThanOrEqual(1);
      expect(t.p50_ms, name).toBeGreaterThan(0);
      expect(t.p50_ms, name).toBeLessThanOrEqual(t.p99_ms);
      expect(t.p99_ms, name).toBeLessThanOrEqual(t.max_ms);
    }
    const table = (await ucpRun(['status', 'br', ...common()])).stdout;
    expect(table).toMatch(/^TIMING\s+COUNT\s+P50 MS\s+P99 MS\s+MAX MS$/m);
    expect(table).toMatch(/^result_decision_ms\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+$/m);
  }, 120_000);

  it('`ucp nodes` lists clients that have left only with --all', async () => {
    // A client run that came and went.
    const folder = join(dir, 'leaving');
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, 'plan.toml'), `[named_data]\nsmoke = "${join(FIXTURES, 'rec-smoke.wasm')}"\n[[jobs]]\n[jobs.metadata]\nwasm_module = "smoke"\n`);
    expect((await ucpRun(['run', join(folder, 'plan.toml'), ...client('came-and-went')])).code).toBe(0);
    const nodes = await ucpRun(['nodes', '--json', ...common()]);
    const ids = (JSON.parse(nodes.stdout) as Array<{ id: string; state: string }>).map((n) => n.id);
    expect(ids).toEqual(expect.arrayContaining(['br', 'ds', 'ex']));
    expect(ids).not.toContain('came-and-went');
    const all = await ucpRun(['nodes', '--all', '--json', ...common()]);
    expect(JSON.parse(all.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ id: 'came-and-went', role: 'operator', state: 'dead' })]));
  }, 120_000);

  /**
   * Runs a command that waits `waitS` seconds for something that never comes, and returns when its note
   * about the wait and its final error arrived. The note must come within a second of the wait starting,
   * so at least waitS - 1 seconds before the error: measured between the two lines, so that a slow start
   * of the process on a loaded machine does not count.
   */
  async function noteThenError(proc: Proc, waitS: number, about: string): Promise<{ note: string; error: string }> {
    procs.push(proc);
    const note = await proc.waitFor(`a note about ${about}`, () => said(proc.stderr).find((l) => l.startsWith(`waiting for ${about}`)), 60_000);
    const notedAt = Date.now();
    const { code } = await proc.exited;
    const gap = Date.now() - notedAt;
    expect(code, proc.stderr).toBe(1);
    expect(gap, proc.stderr).toBeGreaterThanOrEqual((waitS - 1) * 1_000);
    // Notes (on a slow machine, one about the hub first) and then the error, on one line.
    const lines = said(proc.stderr);
    expect(lines.slice(0, -1).every((l) => /^waiting for .*\.\.\.$/.test(l)), proc.stderr).toBe(true);
    return { note, error: lines.at(-1)! };
  }

  it('says within a second what it waits for: the hub, a broker', async () => {
    // Nobody listens on this port: the command says it waits for the hub, then gives up in one line.
    const closed = await freePort();
    const hub = await noteThenError(ucp(['jobs', '--hub', `mqtt://127.0.0.1:${closed}`, '--set', 'transport.connect_timeout_ms=4000']), 4, 'the hub');
    expect(hub.note).toBe(`waiting for the hub at mqtt://127.0.0.1:${closed} (giving up after 4 s)...`);
    expect(hub.error).toMatch(/^ucp: cannot reach the hub/);

    // A cluster with a hub but no broker: `ucp run` says it waits for one.
    const lonelyPort = await freePort();
    const lonely = ucp(['hub', '--port', String(lonelyPort), '--log-level', 'warn']);
    procs.push(lonely);
    await lonely.waitForLine(/hub listening/);
    const folder = join(dir, 'nobroker');
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, 'plan.toml'), `[named_data]\nsmoke = "${join(FIXTURES, 'rec-smoke.wasm')}"\n[[jobs]]\n[jobs.metadata]\nwasm_module = "smoke"\n`);
    const broker = await noteThenError(ucp(['run', join(folder, 'plan.toml'), '--hub', `mqtt://127.0.0.1:${lonelyPort}`, '--set', 'client.broker_wait_s=4', '--node-id', 'lonely', '--data-dir', join(dir, 'lonely')]), 4, 'a broker');
    expect(broker.note).toBe('waiting for a broker (up to 4 s; start one with `ucp broker`)...');
    expect(broker.error).toMatch(/^ucp: no broker is alive in this cluster after 4000 ms/);
  }, 120_000);

  it('Ctrl-C while `ucp run` waits says how to collect the results later, leaves cleanly and exits 3', async () => {
    const folder = join(dir, 'interrupt');
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, 'plan.toml'), `[named_data]\nsmoke = "${join(FIXTURES, 'rec-smoke.wasm')}"\n[[jobs]]\n[jobs.metadata]\njob_id = "needs-hazmat"\nwasm_module = "smoke"\n[jobs.metadata.capabilities]\ntags = ["hazmat"]\n`);
    const run = ucp(['run', join(folder, 'plan.toml'), ...client('impatient')]);
    procs.push(run);
    // While queued, it says why: no executor offers the tag.
    await run.waitForLine(/^needs-hazmat: queued: waiting for a suitable executor \(ex: missing tag "hazmat"\)$|^submitted needs-hazmat: queued: waiting for a suitable executor/, 20_000);
    run.child.kill('SIGINT');
    const { code } = await run.exited;
    expect(code, `${run.lines.join('\n')}\n${run.stderr}`).toBe(3);
    expect(run.lines).toContain('interrupted: the jobs keep running without this command');
    expect(run.lines).toContain('not finished yet: needs-hazmat; collect it later with `ucp results needs-hazmat`');
    // It left with a graceful death, and the job is still there for later.
    const job = await ucpRun(['job', 'needs-hazmat', '--json', ...common()]);
    expect(JSON.parse(job.stdout)).toMatchObject({ state: 'queued' });
    expect((await ucpRun(['cancel', 'needs-hazmat', ...client('impatient')])).code).toBe(0);
  }, 120_000);
});
