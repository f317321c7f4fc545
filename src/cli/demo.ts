import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unzipSync } from 'fflate';
import type { UcpConfig } from '../config/index.js';
import type { Logger } from '../log/index.js';
import { DataClient, JobClient, loadPlan } from '../client/index.js';
import { NodeRuntime } from '../transport/index.js';
import { table, waitForNodes, type Output } from './inspect.js';
import { summarize } from './latency.js';
import { startLocalCluster } from './local-cluster.js';

const EXAMPLE_PLAN = 'examples/fire-watch/plan.toml';
const EXPECTED_OUTPUT: Record<string, string> = {
  'fw-stats': 'readings=6 min=41.5 max=71.0 mean=55.6\n',
  'fw-alert': 'ALERT district 3: max 71.0 C >= 60.0 C\n',
};

/** The example plan in the package, found from this module whether it runs from src/ or dist/src/. */
function examplePlan(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, EXAMPLE_PLAN);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`cannot find ${EXAMPLE_PLAN} in the package`);
}

/**
 * `npm start`: an all-in-one cluster on an embedded hub (broker, datastore, two executors and a client)
 * that shows what works end to end (presence, request/reply, durable delivery, named data, a chained
 * WASM plan, a graceful leave) and checks what it shows. Exits non-zero if a check fails.
 */
export async function runDemo(config: UcpConfig, logger: Logger, out: Output): Promise<number> {
  const dataRoot = mkdtempSync(join(tmpdir(), 'ucp-demo-'));
  const failures: string[] = [];
  const check = (ok: boolean, what: string) => {
    out.print(`  ${ok ? 'ok  ' : 'FAIL'} ${what}`);
    if (!ok) failures.push(what);
  };
  out.print(`ucp-edge demo: embedded hub, broker, datastore, 2 executors and a client (data in ${dataRoot})`);
  const cluster = await startLocalCluster({ config, logger, dataRoot, executors: 2, base: 'demo', port: 0, host: '127.0.0.1' });
  const client = NodeRuntime.create({ config, nodeId: 'demo-client', role: 'client', dataDir: join(dataRoot, 'demo-client'), logger, hubUrl: cluster.hub.url });
  const data = new DataClient(client.link, 10_000);
  const jobs = new JobClient(client.link, client.store, data);
  try {
    await client.connect();
    const ids = cluster.nodes.map((n) => n.link.id);
    await waitForNodes(client.link, ids, 10_000);
    out.print(`\n1. Presence: the client sees every node's retained birth on ${cluster.hub.url}`);
    out.print(
      table(
        ['NODE', 'ROLE', 'INCARNATION'],
        ids.map((id) => {
          const p = client.link.peers.get(id);
          return [id, p?.role ?? '?', String(p?.incarnation ?? '?')];
        }),
      ),
    );
    check(ids.every((id) => client.link.peers.get(id)?.alive === true), `${ids.length} nodes alive`);

    out.print('\n2. Request/reply: 50 pings to each node through the hub (TCP_NODELAY on every socket)');
    for (const id of ids) {
      const rtts: number[] = [];
      for (let i = 0; i < 50; i++) {
        const t0 = performance.now();
        await client.link.request(id, 'ping', {});
        rtts.push(performance.now() - t0);
      }
      const { p50Ms, maxMs } = summarize(rtts);
      out.print(`  ${id.padEnd(18)} p50 ${p50Ms.toFixed(2)} ms  max ${maxMs.toFixed(2)} ms`);
    }

    out.print('\n3. Durable outbox: a notice to each node is kept in LMDB until the node acknowledges it');
    for (const id of ids) {
      const msgId = await client.link.sendDurable(id, 'notice', { severity: 'info', text: `demo notice for ${id}` });
      await client.link.delivered(msgId);
    }
    for (const id of ids) {
      const reply = await client.link.request(id, 'status_request', {});
      const received = reply.kind === 'status' ? (reply.body.counters.notices_received ?? 0) : 0;
      check(received === 1, `${id} stored its notice exactly once`);
    }
    check(client.link.outboxPending === 0, 'client outbox empty after acknowledgements');

    out.print('\n4. Named data: the broker places it on a datastore and finds it again by name or prefix');
    const readings = ['21.5', '22.0', '23.4'].join('\n');
    const put = await data.put('fire/district-3/temps', new TextEncoder().encode(readings));
    await data.put('fire/district-3/wind', new TextEncoder().encode('NW 14 km/h'));
    out.print(`  fire/district-3/temps ${put.outcome} on ${put.store}`);
    const back = new TextDecoder().decode((await data.get('fire/district-3/temps')).bytes);
    check(back === readings, 'read back exactly what was stored');
    const names: string[] = [];
    for await (const item of data.getPrefix('fire/district-3')) names.push(item.name);
    check(names.join(',') === 'fire/district-3/temps,fire/district-3/wind', `prefix get returns both names (${names.join(', ')})`);

    out.print(`\n5. Jobs: the example plan ${EXAMPLE_PLAN} (two chained WASM jobs, the second reads the first one's result)`);
    const plan = loadPlan(examplePlan(), { priority: config.client.priority, timeoutS: config.client.timeout_s, maxMemoryMb: config.client.max_memory_mb });
    const submitted = await jobs.submitPlan(plan);
    const finished = await jobs.wait(
      submitted.map((j) => j.job_id),
      { timeoutMs: 30_000 },
    );
    for (const [id, expected] of Object.entries(EXPECTED_OUTPUT)) {
      const done = finished.get(id);
      const got = done !== undefined && done.job.result !== undefined ? new TextDecoder().decode(unzipSync(await jobs.resultArchive(done))['out.txt'] ?? new Uint8Array()) : '';
      out.print(`  ${id} on ${done?.job.result?.executor ?? '?'} (${done?.job.state ?? 'unfinished'}): ${got.trim()}`);
      check(done?.job.state === 'succeeded' && got === expected, `${id} returned what it should`);
    }
    const alert = new TextDecoder().decode((await data.get('fire-watch/district-3/alert')).bytes);
    check(alert === EXPECTED_OUTPUT['fw-alert'], 'the alert is readable as named data fire-watch/district-3/alert');

    out.print('\n6. Graceful leave: an executor stops and publishes its death');
    const leaving = cluster.nodes[cluster.nodes.length - 1]!;
    await leaving.stop();
    const deadline = performance.now() + 2_000;
    while (client.link.peers.get(leaving.link.id)?.alive !== false && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const seen = client.link.peers.get(leaving.link.id);
    check(seen?.alive === false && seen.downReason === 'graceful', `client saw ${leaving.link.id} leave gracefully`);
  } finally {
    await client.stop();
    await cluster.stop();
    rmSync(dataRoot, { recursive: true, force: true });
  }
  out.print(failures.length === 0 ? '\nall checks passed' : `\n${failures.length} check(s) failed`);
  return failures.length === 0 ? 0 : 1;
}
