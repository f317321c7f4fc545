import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { NodeRuntime } from '../../src/transport/index.js';
import { SKIP_WITHOUT_MOSQUITTO, startMosquitto } from '../helpers/mosquitto.js';
import { removeDir, ROOT, tempDir, ucp, ucpRun, type Proc } from '../helpers/processes.js';

const FAST = ['--set', 'liveness.heartbeat_interval_ms=250', '--set', 'liveness.dead_after_ms=1000', '--set', 'metadata_sync.interval_s=1', '--set', 'scheduler.delegate_after_ms=500'];

/**
 * Two districts whose hubs are bridged for broker traffic only (presence, heartbeats and inboxes of the
 * brokers), as a radio link between districts would be configured: each broker sees only its own
 * district's executors. A job that needs a unit only the other district has is delegated to that
 * district's broker, which runs it; the submitting side still answers for it.
 */
describe.skipIf(SKIP_WITHOUT_MOSQUITTO)('cross-broker scheduling', () => {
  const dir = tempDir();
  const procs: Proc[] = [];
  let client: NodeRuntime | undefined;

  afterAll(async () => {
    await client?.stop();
    for (const p of [...procs].reverse()) await p.stop();
    removeDir(dir);
  });

  it('delegates a job no executor in sight can run to the peer broker that has one', async () => {
    const east = await startMosquitto(dir, { name: 'east' });
    procs.push(east.proc);
    // Broker traffic only: what is sent to a broker, and brokers' presence and heartbeats.
    const brokerTopics = ['br-east', 'br-west'].flatMap((b) => [`topic ucp/dg/inbox/${b}/# both 1`, `topic ucp/dg/presence/broker/${b} both 1`, `topic ucp/dg/heartbeat/broker/${b} both 1`]);
    const west = await startMosquitto(dir, { name: 'west', extra: ['connection to-east', `address 127.0.0.1:${east.port}`, ...brokerTopics, 'cleansession true', 'restart_timeout 1 1'] });
    procs.push(west.proc);
    const on = (port: number) => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'dg', ...FAST];
    const start = (args: string[], port: number, env: Record<string, string> = {}) => {
      const p = ucp([...args, '--data-dir', join(dir, args[2]!), ...on(port)], env);
      procs.push(p);
      return p;
    };
    const bw = start(['broker', '--node-id', 'br-west'], west.port);
    const be = start(['broker', '--node-id', 'br-east'], east.port);
    start(['datastore', '--node-id', 'ds-west'], west.port);
    start(['datastore', '--node-id', 'ds-east'], east.port);
    start(['executor', '--node-id', 'ex-west'], west.port, { UCP_EXECUTOR_TAGS: 'medical' });
    start(['executor', '--node-id', 'ex-east'], east.port, { UCP_EXECUTOR_TAGS: 'ambulance' });
    for (const peer of ['br-east', 'ds-west', 'ex-west']) await bw.waitForLog({ msg: 'peer up', peer }, 15_000);
    for (const peer of ['br-west', 'ds-east', 'ex-east']) await be.waitForLog({ msg: 'peer up', peer }, 15_000);
    expect(bw.logs.some((l) => l.msg === 'peer up' && l.peer === 'ex-east')).toBe(false);

    // The module is stored in the east, where the job will run, through the east broker (the west one is
    // visible from here too, but its replies do not cross the bridge to a command-line client).
    const put = await ucpRun(['data', 'put', 'bin/echo.wasm', join(ROOT, 'test', 'fixtures', 'wasm', 'echo.wasm'), '--set', 'node.broker=br-east', ...on(east.port)]);
    expect(put.code, put.stderr).toBe(0);

    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'dg', 'hub.url': `mqtt://127.0.0.1:${west.port}` } });
    client = NodeRuntime.create({ config, nodeId: 'responder', role: 'client', dataDir: join(dir, 'responder'), logger: createLogger({ level: 'silent', format: 'json' }) });
    const jobs = new JobClient(client.link, client.store, new DataClient(client.link, 15_000, 'br-west'));
    await client.connect();
    for (let deadline = Date.now() + 10_000; Date.now() < deadline; ) {
      const listing = await client.link.request('br-west', 'data_list', { prefix: 'bin', limit: 10 });
      if (listing.kind === 'data_listing' && listing.body.items.length > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await jobs.submit({ job_id: 'needs-ambulance', wasm_module: 'bin/echo.wasm', capabilities: { tags: ['ambulance'] }, argv: ['echo'], env: {}, dirs: [], data: {}, results: ['out.txt'], named_results: {}, priority: 'critical', timeout_s: 30, max_memory_mb: 32 });
    const done = (await jobs.wait(['needs-ambulance'], { timeoutMs: 30_000 })).get('needs-ambulance')?.job;
    expect(done).toMatchObject({ state: 'succeeded', broker: 'br-east', result: { executor: 'ex-east' } });
    expect(done!.attempts.map((a) => a.executor)).toEqual(['ex-east']);
    const counter = async (broker: string, name: string) => {
      const status = await client!.link.request(broker, 'status_request', {});
      return status.kind === 'status' ? status.body.counters[name] : undefined;
    };
    expect(await counter('br-west', 'jobs_delegated')).toBe(1);
    // The west learnt of the east's units from the replicated registry (each broker records what it sees).
    expect(await counter('br-west', 'sync_nodes_received')).toBeGreaterThan(0);
    // (The east broker's replies do not cross the bridge to this client: its log tells.)
    expect(be.logs.filter((l) => l.msg === 'took over a job a peer broker cannot place').map((l) => [l.job, l.from])).toEqual([['needs-ambulance', 'br-west']]);
  }, 90_000);
});
