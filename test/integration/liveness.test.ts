import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, removeDir, tempDir, ucp, type Proc, startHubProcess } from '../helpers/processes.js';
import { SKIP_WITHOUT_MOSQUITTO, startMosquitto } from '../helpers/mosquitto.js';

/**
 * A frozen process (SIGSTOP: a power or radio cut, as far as the cluster can tell) keeps its socket open,
 * so no last will comes: only the stopped heartbeats reveal it. When it thaws with the same incarnation it
 * was partitioned, not restarted.
 */
describe('heartbeat liveness with SIGSTOP', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  let a: Proc;
  let b: Proc;
  const timing = ['--set', 'liveness.heartbeat_interval_ms=200', '--set', 'liveness.dead_after_ms=1000', '--set', 'transport.keepalive_s=60'];

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
    const common = ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'live', ...timing];
    a = ucp(['broker', '--node-id', 'node-a', '--data-dir', join(dir, 'a'), ...common]);
    b = ucp(['executor', '--node-id', 'node-b', '--data-dir', join(dir, 'b'), ...common]);
    procs.push(a, b);
    await a.waitForLog({ msg: 'peer up', peer: 'node-b' });
  });

  afterAll(async () => {
    for (const p of procs) await p.stop();
    removeDir(dir);
  });

  it('a stopped node is declared dead when its heartbeats stop, and rejoins on SIGCONT', async () => {
    const from = a.logs.length;
    const stoppedAt = Date.now();
    b.kill('SIGSTOP');
    const down = await a.waitForLog({ msg: 'peer down', peer: 'node-b' }, 10_000, from);
    expect(down.reason).toBe('heartbeat_timeout');
    // Not before the configured silence has passed: 1000 ms after the last heartbeat, which came at most
    // one 200 ms interval before the stop (less a little for timer granularity).
    expect(down.time - stoppedAt).toBeGreaterThanOrEqual(750);
    b.kill('SIGCONT');
    const up = await a.waitForLog({ msg: 'peer up', peer: 'node-b' }, 10_000, from);
    expect(up.rejoined).toBe(true);
    expect(up.incarnation).toBe(down.incarnation);
  });
});

/** The same presence contract through an external Mosquitto broker instead of the embedded hub. */
describe.skipIf(SKIP_WITHOUT_MOSQUITTO)('interop with Mosquitto', () => {
  let dir: string;
  const procs: Proc[] = [];
  let url: string;

  beforeAll(async () => {
    dir = tempDir();
    const mosquitto = await startMosquitto(dir);
    procs.push(mosquitto.proc);
    url = mosquitto.url;
  });

  afterAll(async () => {
    for (const p of procs) await p.stop();
    removeDir(dir);
  });

  it('births, a SIGKILL caught by the last will, and a durable notice all work through Mosquitto', async () => {
    const common = ['--hub', url, '--cluster', 'mosq'];
    const a = ucp(['broker', '--node-id', 'm-a', '--data-dir', join(dir, 'a'), ...common]);
    let b = ucp(['executor', '--node-id', 'm-b', '--data-dir', join(dir, 'b'), ...common]);
    procs.push(a, b);
    await a.waitForLog({ msg: 'peer up', peer: 'm-b', incarnation: 1 });

    const killedAt = Date.now();
    b.kill('SIGKILL');
    const down = await a.waitForLog({ msg: 'peer down', peer: 'm-b' }, 5_000);
    expect(down.reason).toBe('will');
    expect(down.time - killedAt).toBeLessThan(1_000);

    const sender = ucp(['notice', 'm-b', 'via mosquitto', '--timeout', '30', '--log-level', 'info', '--node-id', 'ops', '--data-dir', join(dir, 'ops'), ...common]);
    procs.push(sender);
    await sender.waitForLog({ msg: 'connected' });
    b = ucp(['executor', '--node-id', 'm-b', '--data-dir', join(dir, 'b'), ...common]);
    procs.push(b);
    const up = await a.waitForLog({ msg: 'peer up', peer: 'm-b', incarnation: 2 });
    expect(up.restartedFrom).toBe(1);
    expect((await sender.exited).code).toBe(0);
    await b.waitForLog({ msg: 'operator notice', text: 'via mosquitto' });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(b.count({ msg: 'operator notice' })).toBe(1);
  });
});
