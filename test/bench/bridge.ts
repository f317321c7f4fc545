/**
 * Firmware bridge benchmark: readings per second from device topics to stored named data, and the drain
 * rate of the bridge's buffer after an outage of the platform hub.
 *
 * Processes: Mosquitto (the field broker), the hub, a broker, a datastore and `ucp bridge`; the load is
 * ESPHome readings from 100 devices over several raw MQTT connections at QoS 0, as fast as Mosquitto takes
 * them (raw-publisher.ts). The baseline is what a bare MQTT subscriber on the same Mosquitto receives from
 * the same load, measured before the bridge starts so that the two never compete.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { NodeLink, linkOptionsFromConfig } from '../../src/transport/index.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { Proc, UCP_BIN, cleanEnv, freePort, removeDir, tempDir, ucp } from '../helpers/processes.js';
import { prepareLoad } from './raw-publisher.js';
import type { BenchResult } from './run.js';

const DEVICES = 100;
/** Readings per device; BENCH_BRIDGE_PER_DEVICE overrides it for a quick run. */
const PER_DEVICE = Number(process.env['BENCH_BRIDGE_PER_DEVICE'] ?? 2_000);
const READINGS = DEVICES * PER_DEVICE;
const OUTAGE_PER_DEVICE = PER_DEVICE;
/** Publisher connections: the load comes from several, as a fleet's would. */
const CONNECTIONS = 4;
/** BENCH_CPU_PROF=DIR: the broker, datastore and bridge write V8 CPU profiles there when they stop. */
const PROFILE_DIR = process.env['BENCH_CPU_PROF'];
const role = (args: string[]): Proc => (PROFILE_DIR === undefined ? ucp(args) : new Proc(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, UCP_BIN, ...args], cleanEnv()));
const OUTAGE_READINGS = DEVICES * OUTAGE_PER_DEVICE;
/**
 * Mosquitto's in-flight window towards the bridge, for the QoS 1 phase only (QoS 0 has none): Mosquitto's
 * default is 20; BENCH_BRIDGE_IN_FLIGHT overrides it.
 */
const QOS1_IN_FLIGHT = Number(process.env['BENCH_BRIDGE_IN_FLIGHT'] ?? 20);

async function startHub(port: number): Promise<Proc> {
  const hub = ucp(['hub', '--port', String(port), '--log-level', 'warn']);
  await hub.waitForLine(/hub listening on/, 30_000);
  return hub;
}

export async function bridgeBench(): Promise<BenchResult> {
  const dir = tempDir('ucp-bench-bridge-');
  const port = await freePort();
  const common = ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'benchbridge', '--log-level', 'info'];
  const procs: Proc[] = [];
  let link: NodeLink | undefined;
  try {
    const field = await startMosquitto(dir, { name: 'field', extra: ['max_queued_messages 1000000', `max_inflight_messages ${QOS1_IN_FLIGHT}`] });
    procs.push(field.proc);
    let hub = await startHub(port);
    procs.push(hub);
    const broker = role(['broker', '--node-id', 'bb', '--data-dir', join(dir, 'bb'), ...common]);
    procs.push(broker, role(['datastore', '--node-id', 'bd', '--data-dir', join(dir, 'bd'), ...common]));
    await broker.waitForLog({ msg: 'peer up', peer: 'bd' }, 30_000);

    // Baseline, before the bridge exists: the same load into a bare subscriber on the same Mosquitto.
    const bare = await mqtt.connectAsync(field.url, { clientId: 'bench-bare' });
    await bare.subscribeAsync('+/sensor/+/state', { qos: 0 });
    let received = 0;
    let lastAt = 0;
    bare.on('message', () => {
      received++;
      lastAt = performance.now();
    });
    const baseLoad = prepareLoad(field.port, DEVICES, PER_DEVICE, CONNECTIONS, 'bare');
    const bareStarted = await baseLoad.run();
    for (let quiet = 0; quiet < 20 && received < READINGS; ) {
      const was = received;
      await new Promise((r) => setTimeout(r, 100));
      quiet = received === was ? quiet + 1 : 0;
    }
    await bare.endAsync();
    const bareRate = received / ((lastAt - bareStarted) / 1_000);

    const config = join(dir, 'bridge.toml');
    writeFileSync(
      config,
      `[bridge]\nfield_url = "${field.url}"\ndrain_rate = 10000000\n\n[[mapping]]\nname = "esphome"\ntopic = "{device}/sensor/{metric}/state"\ncodec = "number"\ntarget = "field/{device}/{metric}"\nkeep_last = 100000\n`,
    );
    const bridge = role(['bridge', '--config', config, '--node-id', 'bbridge', '--data-dir', join(dir, 'bbridge'), ...common]);
    procs.push(bridge);
    await bridge.waitForLog({ msg: 'connected to the field broker' }, 30_000);
    await bridge.waitForLog({ msg: 'peer up', peer: 'bb' }, 30_000);
    const linkConfig = loadConfig({ env: {}, overrides: { 'node.cluster': 'benchbridge', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    link = await NodeLink.start({ ...linkOptionsFromConfig(linkConfig, createLogger({ level: 'silent', format: 'json' })), nodeId: 'bench-watch', role: 'client', announce: false, watchPresence: false });
    // A bridge busy with a burst may answer late, and a question asked while this link is still finding
    // the restarted hub is lost: ask again soon rather than give up or wait long.
    const status = async (): Promise<NonNullable<Extract<Awaited<ReturnType<NodeLink['request']>>, { kind: 'status' }>['body']['bridge']>> => {
      for (let attempt = 1; ; attempt++) {
        try {
          const reply = await link!.request('bbridge', 'status_request', {}, 2_000);
          if (reply.kind !== 'status' || reply.body.bridge === undefined) throw new Error('the bridge gave no status');
          return reply.body.bridge;
        } catch (err) {
          if (attempt >= 30) throw err;
        }
      }
    };
    const waitStored = async (target: number, label: string): Promise<void> => {
      for (;;) {
        const s = await status();
        process.stderr.write(`  ${label}: stored ${s.forwarded.stored} of ${target}, buffered ${s.buffer.records}   \r`);
        if (s.forwarded.stored >= target) return;
        await new Promise((r) => setTimeout(r, 50));
      }
    };

    // Throughput: from the first reading published to the last one stored.
    const load = prepareLoad(field.port, DEVICES, PER_DEVICE, CONNECTIONS, 'live');
    const started = await load.run();
    await waitStored(READINGS, 'live');
    const throughput = READINGS / ((performance.now() - started) / 1_000);

    // Drain: the hub is down while the devices publish; then it returns.
    hub.kill('SIGKILL');
    await hub.exited;
    const outage = prepareLoad(field.port, DEVICES, OUTAGE_PER_DEVICE, CONNECTIONS, 'outage');
    await outage.run();
    // Time for the bridge to take the burst into its buffer, so that the drain is timed from a full buffer:
    // twice what the live phase took for as many readings (its status cannot be asked while the hub is
    // down). A fixed 3 s was sometimes too short on a loaded machine, and the drain was timed with the intake.
    await new Promise((r) => setTimeout(r, Math.max(3_000, (2_000 * OUTAGE_READINGS) / throughput)));
    const from = bridge.logs.length;
    hub = await startHub(port);
    procs.push(hub);
    await bridge.waitForLog({ msg: 'peer up', peer: 'bb' }, 60_000, from);
    const drainStart = performance.now();
    await waitStored(READINGS + OUTAGE_READINGS, 'drain');
    const drainRate = OUTAGE_READINGS / ((performance.now() - drainStart) / 1_000);

    // The same live load at QoS 1: each reading's PUBACK waits for the commit that holds it.
    const qos1 = prepareLoad(field.port, DEVICES, PER_DEVICE, CONNECTIONS, 'qos1', 1);
    const qos1Started = await qos1.run();
    await waitStored(2 * READINGS + OUTAGE_READINGS, 'qos 1');
    const qos1Rate = READINGS / ((performance.now() - qos1Started) / 1_000);
    const after = await status();
    process.stderr.write('\n');

    return {
      suite: 'bridge',
      rows: [
        { metric: 'readings/s, device topic -> stored series', bare: Math.round(bareRate), project: Math.round(throughput), ratio: Math.round((throughput / bareRate) * 100) / 100, target: '>= 20000/s', pass: throughput >= 20_000 },
        { metric: `readings/s at QoS 1, ${QOS1_IN_FLIGHT} in flight`, bare: null, project: Math.round(qos1Rate), ratio: null, target: '-', pass: null },
        { metric: 'buffer drain after an outage, readings/s', bare: null, project: Math.round(drainRate), ratio: null, target: '>= 50000/s', pass: drainRate >= 50_000 },
      ],
      details: {
        devices: DEVICES,
        publisherConnections: CONNECTIONS,
        readings: READINGS,
        outageReadings: OUTAGE_READINGS,
        bareReceived: received,
        // The bridge's own view of the drain: backlog readings and the time from the platform's return.
        bridgeDrained: after.forwarded.drained,
        bridgeDrainMs: after.forwarded.drain_ms,
        bridgeBatches: after.forwarded.batches,
        bridgeFailures: after.forwarded.failures,
      },
    };
  } finally {
    await link?.stop();
    for (const p of procs.reverse()) await p.stop();
    removeDir(dir);
  }
}
