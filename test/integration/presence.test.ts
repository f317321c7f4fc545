import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { freePort, removeDir, tempDir, ucp, ucpRun, type Proc, startHubProcess } from '../helpers/processes.js';

/**
 * Two real nodes on a real embedded hub, in separate processes: births, a SIGKILL seen through the last
 * will, a restart with a higher incarnation, and a replayed stale death that must not kill the new one.
 */
describe('presence between real processes', () => {
  let dir: string;
  let port: number;
  let a: Proc;
  let b: Proc;
  const procs: Proc[] = [];
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'itest', '--log-level', 'info'];
  const startA = () => ucp(['broker', '--node-id', 'node-a', '--data-dir', `${dir}/a`, ...common()]);
  const startB = () => ucp(['executor', '--node-id', 'node-b', '--data-dir', `${dir}/b`, ...common()]);

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
  });

  afterAll(async () => {
    for (const p of procs) await p.stop();
    removeDir(dir);
  });

  it('two nodes see each other born', async () => {
    a = startA();
    b = startB();
    procs.push(a, b);
    const seenByA = await a.waitForLog({ msg: 'peer up', peer: 'node-b' });
    const seenByB = await b.waitForLog({ msg: 'peer up', peer: 'node-a' });
    expect(seenByA.role).toBe('executor');
    expect(seenByA.incarnation).toBe(1);
    expect(seenByB.role).toBe('broker');
  });

  it('kill -9 of a node is observed through its last will within 1 s', async () => {
    const killedAt = Date.now();
    b.kill('SIGKILL');
    const down = await a.waitForLog({ msg: 'peer down', peer: 'node-b' }, 5_000);
    // The will, not the heartbeat timeout (4 s by default), is what caught it.
    expect(down.reason).toBe('will');
    expect(down.incarnation).toBe(1);
    expect(down.time - killedAt).toBeLessThan(1_000);
  });

  it('a restarted node is born again with a higher incarnation', async () => {
    const from = a.logs.length;
    b = startB();
    procs.push(b);
    const up = await a.waitForLog({ msg: 'peer up', peer: 'node-b' }, 10_000, from);
    expect(up.incarnation).toBe(2);
    expect(up.restartedFrom).toBe(1);
  });

  it('a replayed stale death is ignored and the node stays alive', async () => {
    // Capture the retained death of a short-lived incarnation and replay it after the node restarted,
    // as a slow hub delivering an old last will would.
    const observer = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'replayer' });
    const from = a.logs.length;
    b.kill('SIGKILL');
    await a.waitForLog({ msg: 'peer down', peer: 'node-b', incarnation: 2 }, 5_000, from);
    const staleDeath = await new Promise<Buffer>((resolve) => {
      observer.on('message', (_topic, payload) => resolve(payload));
      void observer.subscribeAsync('ucp/itest/presence/executor/node-b', { qos: 1 });
    });
    await observer.unsubscribeAsync('ucp/itest/presence/executor/node-b');
    b = startB();
    procs.push(b);
    await a.waitForLog({ msg: 'peer up', peer: 'node-b', incarnation: 3 }, 10_000, from);

    await observer.publishAsync('ucp/itest/presence/executor/node-b', staleDeath, { qos: 1, retain: true });
    await a.waitForLog({ msg: 'ignored a death from an older incarnation', peer: 'node-b' }, 5_000, from);
    await observer.endAsync();

    const status = await ucpRun(['status', 'node-a', '--json', ...common()]);
    expect(status.code).toBe(0);
    const body = JSON.parse(status.stdout) as { peers: Array<{ id: string; alive: boolean; incarnation: number }>; counters: Record<string, number> };
    expect(body.peers.find((p) => p.id === 'node-b')).toMatchObject({ alive: true, incarnation: 3 });
    expect(body.counters.stale_deaths_ignored).toBe(1);
    // The live node saw its stale will replace its retained birth, and published the birth again.
    const own = await ucpRun(['status', 'node-b', '--json', ...common()]);
    expect((JSON.parse(own.stdout) as { counters: Record<string, number> }).counters.birth_repaired).toBe(1);

    // A newcomer reading the retained presence sees node-b alive, not the replayed death.
    const nodes = await ucpRun(['nodes', '--json', '--wait', '300', ...common()]);
    const list = JSON.parse(nodes.stdout) as Array<{ id: string; state: string; incarnation: number }>;
    expect(list.find((n) => n.id === 'node-b')).toMatchObject({ state: 'alive', incarnation: 3 });
  });

  it('a notice sent while the receiver is down is delivered once after it comes back', async () => {
    b.kill('SIGKILL');
    await a.waitForLog({ msg: 'peer down', peer: 'node-b', incarnation: 3 }, 5_000);
    const sender = ucp(['notice', 'node-b', 'move units to depot B', '--severity', 'warning', '--timeout', '30', '--node-id', 'ops-1', '--data-dir', `${dir}/ops`, ...common()]);
    procs.push(sender);
    // Let the client store the notice and try while node-b is still gone.
    await sender.waitForLog({ msg: 'connected' });
    await new Promise((r) => setTimeout(r, 700));
    b = startB();
    procs.push(b);
    const { code } = await sender.exited;
    expect(code).toBe(0);
    expect(sender.lines.join('\n')).toMatch(/delivered to node-b/);
    await b.waitForLog({ msg: 'operator notice' });
    // Give any duplicate delivery (outbox retry, QoS 1 redelivery) time to show up before counting.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(b.count({ msg: 'operator notice', text: 'move units to depot B' })).toBe(1);
  });

  it('a notice queued by a client that exits is delivered by its next run', async () => {
    b.kill('SIGKILL');
    await a.waitForLog({ msg: 'peer down', peer: 'node-b', incarnation: 4 }, 5_000);
    const queued = await ucpRun(['notice', 'node-b', 'second wave', '--timeout', '0', '--node-id', 'ops-1', '--data-dir', `${dir}/ops`, ...common()]);
    expect(queued.code).toBe(3);
    expect(queued.stdout).toMatch(/queued for node-b/);
    b = startB();
    procs.push(b);
    await a.waitForLog({ msg: 'peer up', peer: 'node-b', incarnation: 5 });
    const flushed = await ucpRun(['outbox', '--wait', '20', '--json', '--node-id', 'ops-1', '--data-dir', `${dir}/ops`, ...common()]);
    expect(flushed.code).toBe(0);
    expect(JSON.parse(flushed.stdout)).toMatchObject({ pending: 1, delivered: 1, left: [] });
    await b.waitForLog({ msg: 'operator notice', text: 'second wave' });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(b.count({ msg: 'operator notice', text: 'second wave' })).toBe(1);
  });

  it('SIGTERM stops a node cleanly: a graceful death, no waiting for a timeout, exit 0', async () => {
    const from = a.logs.length;
    b.kill('SIGTERM');
    const down = await a.waitForLog({ msg: 'peer down', peer: 'node-b' }, 5_000, from);
    expect(down.reason).toBe('graceful');
    expect((await b.exited).code).toBe(0);
    // Its retained presence now says so to anyone who asks later.
    const nodes = await ucpRun(['nodes', '--json', '--wait', '300', ...common()]);
    const list = JSON.parse(nodes.stdout) as Array<{ id: string; state: string; reason?: string }>;
    expect(list.find((n) => n.id === 'node-b')).toMatchObject({ state: 'dead', reason: 'graceful' });
  });
});
