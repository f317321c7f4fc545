import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, freePort, removeDir, tempDir, ucp, ucpRun, type Proc } from '../helpers/processes.js';

const JOBS = 12;

/**
 * The hub restarted in the middle of a plan, with the client offline: every agent reconnects with
 * backoff, the durable outboxes carry what the hub lost, and the plan completes with exactly one
 * accepted result per job, collected later by `ucp results --wait`.
 */
describe('hub restart mid-plan', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  let hub: Proc;
  let broker: Proc;
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'hr', '--log-level', 'warn'];
  const client = () => ['--node-id', 'hr-client', '--data-dir', join(dir, 'hr-client'), ...common()];
  const startHub = async () => {
    const h = ucp(['hub', '--port', String(port), '--log-level', 'warn']);
    procs.push(h);
    await h.waitForLine(/hub listening on/, 30_000);
    return h;
  };

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    hub = await startHub();
    broker = ucp(['broker', '--node-id', 'hr-broker', '--data-dir', join(dir, 'hr-broker'), ...common(), '--log-level', 'info']);
    procs.push(broker, ucp(['datastore', '--node-id', 'hr-store', '--data-dir', join(dir, 'hr-store'), ...common()]));
    for (const id of ['hr-ex-1', 'hr-ex-2']) procs.push(ucp(['executor', '--node-id', id, '--data-dir', join(dir, id), ...common()]));
    for (const peer of ['hr-store', 'hr-ex-1', 'hr-ex-2']) await broker.waitForLog({ msg: 'peer up', peer }, 30_000);
  }, 90_000);

  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    removeDir(dir);
  });

  it('every job ends with exactly one accepted result, collected after the client comes back', async () => {
    const folder = join(dir, 'plan');
    mkdirSync(folder);
    copyFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'spin-for.wasm'), join(folder, 'spin-for.wasm'));
    const jobs = Array.from({ length: JOBS }, (_, i) => `[[jobs]]\n[jobs.metadata]\njob_id = "hr-${i}"\nwasm_module = "hr/spin-for.wasm"\nargv = ["spin-for", "1500"]\nresults = ["result.txt"]\nresults_receiver = "dtn://client/"\ntimeout_s = 120\n`);
    writeFileSync(join(folder, 'plan.toml'), `${jobs.join('\n')}\n[named_data]\n"hr/spin-for.wasm" = "spin-for.wasm"\n`);
    const results = join(dir, 'results');
    const detached = await ucpRun(['run', join(folder, 'plan.toml'), '--detach', '--results', results, ...client()], {}, 60_000);
    expect(detached.code, detached.stderr).toBe(0);
    // The hub goes away while the jobs run, with everything it held in memory, and comes back.
    await broker.waitForLog({ msg: 'result accepted' }, 60_000);
    hub.kill('SIGKILL');
    await hub.exited;
    await new Promise((r) => setTimeout(r, 1_500));
    hub = await startHub();
    const collected = await ucpRun(['results', '--wait', '--timeout', '240', '--results', results, ...client()], {}, 270_000);
    expect(collected.code, `${collected.stdout}\n${collected.stderr}`).toBe(0);
    expect(readdirSync(results).filter((f) => f.endsWith('_result.zip')).sort()).toEqual(Array.from({ length: JOBS }, (_, i) => `hr-${i}_result.zip`).sort());
    for (let i = 0; i < JOBS; i++) {
      const shown = await ucpRun(['job', `hr-${i}`, '--json', ...common()]);
      const job = JSON.parse(shown.stdout) as { state: string; attempts: Array<{ outcome: string }> };
      expect(job.state).toBe('succeeded');
      expect(job.attempts.filter((a) => a.outcome === 'accepted').length).toBe(1);
    }
  }, 360_000);
});
