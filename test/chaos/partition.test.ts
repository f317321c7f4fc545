import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { JobView } from '../../src/protocol/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { SKIP_WITHOUT_MOSQUITTO, startMosquitto } from '../helpers/mosquitto.js';
import { TcpLink } from '../helpers/tcp-link.js';
import { freePort, type Proc, removeDir, ROOT, tempDir, ucp, ucpRun } from '../helpers/processes.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FAST = ['--set', 'liveness.heartbeat_interval_ms=250', '--set', 'liveness.dead_after_ms=1000', '--set', 'metadata_sync.interval_s=1'];

/**
 * Two districts, each with its own Mosquitto hub, broker, executor and datastore, joined by a Mosquitto
 * bridge through a TCP link this test can cut. While cut, each side carries on: the east broker adopts the
 * west broker's job and runs it on its own executor, while the west executor finishes it too, so both
 * brokers accept a result. When the link heals, every broker settles on the earlier acceptance.
 */
describe.skipIf(SKIP_WITHOUT_MOSQUITTO)('a partition between districts', () => {
  const dir = tempDir();
  const procs: Proc[] = [];
  const link = new TcpLink();
  let client: NodeRuntime | undefined;

  afterAll(async () => {
    await client?.stop();
    for (const p of [...procs].reverse()) await p.stop();
    await link.stop();
    removeDir(dir);
  });

  it('heals to one deterministic winner on every broker; the superseded acceptance is recorded and shown', async () => {
    const east = await startMosquitto(dir, { name: 'east' });
    procs.push(east.proc);
    const proxyPort = await link.start(east.port);
    const west = await startMosquitto(dir, { name: 'west', extra: ['connection to-east', `address 127.0.0.1:${proxyPort}`, 'topic ucp/# both 1', 'cleansession true', 'restart_timeout 1 1', 'keepalive_interval 5'] });
    procs.push(west.proc);
    const on = (port: number) => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'pt', ...FAST];
    const start = (args: string[], port: number) => {
      const p = ucp([...args, '--data-dir', join(dir, args[2]!), ...on(port)]);
      procs.push(p);
      return p;
    };
    const bw = start(['broker', '--node-id', 'br-west'], west.port);
    const be = start(['broker', '--node-id', 'br-east'], east.port);
    start(['datastore', '--node-id', 'ds-east'], east.port);
    start(['executor', '--node-id', 'ex-west'], west.port);
    for (const peer of ['br-east', 'ds-east', 'ex-west']) await bw.waitForLog({ msg: 'peer up', peer }, 15_000);

    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'pt', 'hub.url': `mqtt://127.0.0.1:${east.port}`, 'liveness.heartbeat_interval_ms': 250, 'liveness.dead_after_ms': 1000 } });
    client = NodeRuntime.create({ config, nodeId: 'responder', role: 'client', dataDir: join(dir, 'responder'), logger: createLogger({ level: 'silent', format: 'json' }) });
    const data = new DataClient(client.link, 15_000, 'br-west');
    const jobs = new JobClient(client.link, client.store, data);
    await client.connect();
    // The module lives in the east, so both sides can run the job while apart (the west executor fetches
    // it before the cut); the west gets its own datastore for the results it accepts.
    await data.put('bin/spin-for.wasm', readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'spin-for.wasm')));
    start(['datastore', '--node-id', 'ds-west'], west.port);
    await bw.waitForLog({ msg: 'peer up', peer: 'ds-west' }, 15_000);
    await jobs.submit({ job_id: 'split', wasm_module: 'bin/spin-for.wasm', capabilities: {}, argv: ['spin-for', '6000'], env: {}, dirs: [], data: {}, results: ['result.txt'], named_results: {}, priority: 'high', timeout_s: 60, max_memory_mb: 32 });
    const query = async (broker: string): Promise<JobView> => {
      const reply = await client!.link.request(broker, 'job_query', { job_id: 'split' });
      if (reply.kind !== 'job_info') throw new Error(`${broker} answered ${reply.kind}`);
      return reply.body.job;
    };
    for (let deadline = Date.now() + 10_000; (await query('br-west')).state !== 'running'; ) {
      if (Date.now() > deadline) throw new Error('the job never ran on the west side');
      await sleep(50);
    }
    // The east side's own executor joins; the job already runs in the west.
    start(['executor', '--node-id', 'ex-east'], east.port);
    await be.waitForLog({ msg: 'peer up', peer: 'ex-east' }, 15_000);
    await sleep(200);
    // Long enough that the link is cut while the west still runs it, even on a loaded machine.
    expect((await query('br-west')).result).toBeUndefined();
    link.partition();
    // Each side finishes the job on its own: the west on its first attempt, the east after adopting it.
    // (From the east, only the east broker can be asked.)
    await bw.waitForLog({ msg: 'result accepted', job: 'split', attempt: 1 }, 30_000);
    for (let deadline = Date.now() + 20_000; ; ) {
      const e = await query('br-east');
      if (e.result !== undefined) {
        expect(e.result).toMatchObject({ attempt: 2, executor: 'ex-east', decided_by: 'br-east' });
        expect(e.attempts[0]).toMatchObject({ executor: 'ex-west', outcome: 'lost' });
        break;
      }
      if (Date.now() > deadline) throw new Error(`no result in the east: ${JSON.stringify(e)}`);
      await sleep(100);
    }

    link.heal();
    let settled: Array<JobView | undefined> = [];
    for (let deadline = Date.now() + 30_000; ; ) {
      // The bridge takes a moment to reconnect: an unanswered question is asked again.
      settled = await Promise.all(['br-west', 'br-east'].map((b) => query(b).catch(() => undefined)));
      if (settled.every((j) => (j?.superseded?.length ?? 0) > 0)) break;
      if (Date.now() > deadline) throw new Error(`did not converge: ${JSON.stringify(settled)}`);
      await sleep(200);
    }
    // Both brokers hold the same record. The two acceptances were concurrent (made apart), so the one
    // with the earlier HLC time won, and the other is listed as superseded.
    const [atWest, atEast] = settled as JobView[];
    expect(atWest!.result).toEqual(atEast!.result);
    expect(atWest!.superseded).toEqual(atEast!.superseded);
    const winner = atWest!.result!;
    const loser = atWest!.superseded![0]!;
    expect(atWest!.superseded).toHaveLength(1);
    expect(new Set([winner.decided_by, loser.decided_by])).toEqual(new Set(['br-west', 'br-east']));
    expect(winner.decided_at![0] < loser.decided_at[0] || (winner.decided_at![0] === loser.decided_at[0] && winner.decided_by! < loser.decided_by)).toBe(true);
    const expected = winner.decided_by === 'br-west' ? { attempt: 1, executor: 'ex-west' } : { attempt: 2, executor: 'ex-east' };
    expect(winner).toMatchObject(expected);
    const status = await client.link.request(loser.decided_by, 'status_request', {});
    expect(status.kind === 'status' ? status.body.counters.acceptances_superseded : 0).toBe(1);
    const shown = await ucpRun(['job', 'split', '--hub', `mqtt://127.0.0.1:${east.port}`, '--cluster', 'pt']);
    expect(shown.stdout).toContain(`conflict: attempt ${loser.attempt} on ${loser.executor}, accepted by ${loser.decided_by}`);
  }, 90_000);
});
