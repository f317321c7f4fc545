import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, removeDir, ROOT, startHubProcess, tempDir, ucp, ucpRun, type Proc } from '../helpers/processes.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'wasm');
/** The default client id kept in a state directory, as the CLI made it there. */
const clientIn = (root: string) => readFileSync(join(root, 'client-id'), 'utf8').trim();
const MADE_ID = new RegExp(`^client-${hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 40)}-[0-9a-f]{6}$`);

/**
 * Who a client command is, and where it keeps its state: real `ucp` processes started the way a user
 * starts them (no --node-id, no --data-dir), from different working directories, at the same time.
 */
describe('client identity and state directories', () => {
  let dir: string;
  let port: number;
  let stateHome: string;
  const procs: Proc[] = [];
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'ident'];

  /** A plan in `folder` whose one job spins for `ms` and keeps its archive. */
  function planIn(folder: string, ms: number, id?: string): string {
    mkdirSync(folder, { recursive: true });
    writeFileSync(
      join(folder, 'plan.toml'),
      `[named_data]\nspin = "${join(FIXTURES, 'spin-for.wasm')}"\n[[jobs]]\n[jobs.metadata]\n${id !== undefined ? `job_id = "${id}"\n` : ''}wasm_module = "spin"\nargv = ["spin-for", "${ms}"]\nresults = ["/result.txt"]\nresults_receiver = "dtn://client/"\n`,
    );
    return join(folder, 'plan.toml');
  }

  async function owners(): Promise<Map<string, string>> {
    const listed = await ucpRun(['jobs', '--json', ...common()]);
    return new Map((JSON.parse(listed.stdout) as Array<{ id: string; owner: string }>).map((j) => [j.id, j.owner]));
  }

  beforeAll(async () => {
    dir = tempDir('ucp-ident-test-');
    stateHome = join(dir, 'state');
    port = await freePort();
    procs.push(await startHubProcess(port));
    const broker = ucp(['broker', '--node-id', 'br', '--data-dir', join(dir, 'br'), ...common()]);
    procs.push(broker, ucp(['datastore', '--node-id', 'ds', '--data-dir', join(dir, 'ds'), ...common()]));
    procs.push(ucp(['executor', '--node-id', 'ex', '--data-dir', join(dir, 'ex'), '--set', 'executor.slots=4', ...common()]));
    for (const peer of ['ds', 'ex']) await broker.waitForLog({ msg: 'peer up', peer }, 60_000);
  }, 120_000);

  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    removeDir(dir);
  });

  it('two `ucp run`s from two directories at the same time both succeed, as two identities of the same user', async () => {
    const env = { XDG_STATE_HOME: stateHome };
    const [one, two] = ['one', 'two'].map((name) => {
      const cwd = join(dir, 'cwd', name);
      const proc = ucp(['run', planIn(cwd, 1_500, `concurrent-${name}`), '--results', 'results', ...common()], env, cwd);
      procs.push(proc);
      return proc;
    });
    const [a, b] = await Promise.all([one!.exited, two!.exited]);
    expect(a.code, `${one!.lines.join('\n')}\n${one!.stderr}`).toBe(0);
    expect(b.code, `${two!.lines.join('\n')}\n${two!.stderr}`).toBe(0);
    for (const name of ['one', 'two']) {
      expect(existsSync(join(dir, 'cwd', name, 'results', `concurrent-${name}_result.zip`))).toBe(true);
      // The state is not kept in the working directory.
      expect(readdirSync(join(dir, 'cwd', name)).sort()).toEqual(['plan.toml', 'results']);
    }
    const owner = await owners();
    const client = clientIn(join(stateHome, 'ucp-edge'));
    expect(client).toMatch(MADE_ID);
    expect(new Set([owner.get('concurrent-one'), owner.get('concurrent-two')])).toEqual(new Set([client, `${client}-2`]));
    // Each identity keeps its state in the XDG state directory, under its own name.
    expect(readdirSync(join(stateHome, 'ucp-edge')).sort()).toEqual(['client-id', client, `${client}-2`].sort());
  }, 120_000);

  it('a job submitted by the second identity is collected by a later `ucp results` and cancelled by `ucp cancel` from the first', async () => {
    const env = { XDG_STATE_HOME: join(dir, 'state-later') };
    // The first identity is busy waiting for a job no executor can run, so the next commands take the second one.
    mkdirSync(join(dir, 'busy'), { recursive: true });
    writeFileSync(join(dir, 'busy', 'plan.toml'), `[named_data]\nspin = "${join(FIXTURES, 'spin-for.wasm')}"\n[[jobs]]\n[jobs.metadata]\njob_id = "busy-run"\nwasm_module = "spin"\n[jobs.metadata.capabilities]\ntags = ["nobody-has-this"]\n`);
    const busy = ucp(['run', join(dir, 'busy', 'plan.toml'), ...common()], env);
    procs.push(busy);
    await busy.waitFor('the busy run to submit', () => busy.lines.find((l) => l.startsWith('submitted busy-run')), 60_000);
    const folder = join(dir, 'later');
    const detached = await ucpRun(['run', planIn(folder, 300, 'later-done'), '--detach', ...common()], env);
    expect(detached.code, detached.stderr).toBe(0);
    writeFileSync(join(folder, 'spin.toml'), `[named_data]\nspin = "${join(FIXTURES, 'spin.wasm')}"\n[[jobs]]\n[jobs.metadata]\njob_id = "later-runaway"\nwasm_module = "spin"\nargv = ["spin"]\n`);
    expect((await ucpRun(['run', join(folder, 'spin.toml'), '--detach', ...common()], env)).code).toBe(0);
    // Ctrl-C: the busy run stops waiting and gives its identity back.
    busy.child.kill('SIGINT');
    expect((await busy.exited).code).toBe(3);
    const owner = await owners();
    const client = clientIn(join(dir, 'state-later', 'ucp-edge'));
    expect(owner.get('busy-run')).toBe(client);
    expect(owner.get('later-done')).toBe(`${client}-2`);

    // Now the first identity is idle again: it collects and cancels what the second one submitted.
    const cancelled = await ucpRun(['cancel', 'later-runaway', 'busy-run', ...common()], env);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout.split('\n').sort()).toEqual(['busy-run: cancelled while queued', expect.stringMatching(/^later-runaway: cancelled \(stopped on ex\)$/)]);
    const collected = await ucpRun(['results', '--wait', '--timeout', '60', '--results', join(dir, 'later-results'), ...common()], env, 90_000);
    // The cancelled jobs failed, so the collection reports failures (exit 1) after writing later-done's archive.
    expect(collected.code, `${collected.stdout}\n${collected.stderr}`).toBe(1);
    expect(existsSync(join(dir, 'later-results', 'later-done_result.zip'))).toBe(true);
    expect(collected.stdout).toContain('later-runaway: FAILED: cancelled by its submitter');
    expect(collected.stdout).toContain('busy-run: FAILED: cancelled by its submitter');
    const again = await ucpRun(['results', ...common()], env);
    expect(again.stdout).toContain('no results to collect');
  }, 180_000);

  it('keeps state in $XDG_STATE_HOME/ucp-edge/<node>, else ~/.local/state/ucp-edge/<node>, under systemd in its state directory, and in --data-dir as given', async () => {
    const queue = (env: Record<string, string>, extra: string[] = []) => ucpRun(['notice', 'nobody', 'hold this', '--timeout', '0', ...common(), ...extra], env);
    const xdg = join(dir, 'xdg');
    expect((await queue({ XDG_STATE_HOME: xdg })).code).toBe(3);
    expect(existsSync(join(xdg, 'ucp-edge', clientIn(join(xdg, 'ucp-edge')), 'ucp.mdb'))).toBe(true);

    const home = join(dir, 'home');
    mkdirSync(home);
    expect((await queue({ XDG_STATE_HOME: '', HOME: home })).code).toBe(3);
    const inHome = join(home, '.local', 'state', 'ucp-edge');
    expect(existsSync(join(inHome, clientIn(inHome), 'ucp.mdb'))).toBe(true);

    // A systemd unit with StateDirectory=ucp-edge gets STATE_DIRECTORY=/var/lib/ucp-edge.
    const service = join(dir, 'var-lib-ucp-edge');
    expect((await queue({ STATE_DIRECTORY: service, INVOCATION_ID: 'f00d', HOME: home })).code).toBe(3);
    expect(existsSync(join(service, clientIn(service), 'ucp.mdb'))).toBe(true);

    // --data-dir: that directory, with an identity of its own that stays with it.
    const given = join(dir, 'given');
    expect((await queue({ XDG_STATE_HOME: xdg }, ['--data-dir', given])).code).toBe(3);
    expect(existsSync(join(given, 'ucp.mdb'))).toBe(true);
    const folder = join(dir, 'given-plan');
    const first = await ucpRun(['run', planIn(folder, 10), '--detach', '--data-dir', given, ...common()]);
    const second = await ucpRun(['run', planIn(folder, 10), '--detach', '--data-dir', join(dir, 'given-too'), ...common()]);
    const third = await ucpRun(['run', planIn(folder, 10), '--detach', '--data-dir', given, ...common()]);
    const idOf = (out: string) => /ucp results (\S+)/.exec(out)?.[1] ?? '';
    const owner = await owners();
    const [a, b, c] = [first, second, third].map((r) => owner.get(idOf(r.stdout)));
    expect(a).toMatch(MADE_ID);
    expect(b).not.toBe(a);
    expect(c).toBe(a);
  }, 180_000);
});
