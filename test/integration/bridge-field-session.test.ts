import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAVE_MOSQUITTO, SKIP_WITHOUT_MOSQUITTO, startMosquitto } from '../helpers/mosquitto.js';
import { MqttProxy } from '../helpers/mqtt-proxy.js';
import { DataClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { NodeLink, linkOptionsFromConfig } from '../../src/transport/index.js';
import { freePort, removeDir, tempDir, ucp, type Proc } from '../helpers/processes.js';

const SERIES = 'field/meters/m1/reading';
/** Readings per step: well over Mosquitto's 20 in flight, so most of them wait in the broker's queue. */
const N = 300;
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

/**
 * Nothing a device publishes at QoS 1 is lost or stored twice while the bridge is stopped, killed, down or
 * cut off from the field broker. Real parts: Debian's Mosquitto as the field broker, the platform's hub,
 * broker and datastore and the bridge as processes, a device publishing with mqtt.js, and a TCP proxy
 * between the bridge and Mosquitto that reads the packets and can keep a PUBACK from the broker.
 */
describe.skipIf(SKIP_WITHOUT_MOSQUITTO).each(['3.1.1', '5'] as const)('firmware bridge field session, MQTT %s', (version) => {
  let dir: string;
  let port: number;
  let proxy: MqttProxy;
  let config: string;
  const procs: Proc[] = [];
  let bridge: Proc;
  let device: mqtt.MqttClient;
  let link: NodeLink;
  let data: DataClient;
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'fs', '--log-level', 'warn'];

  const startBridge = async () => {
    bridge = ucp(['bridge', '--config', config, '--node-id', 'bridge-s', '--data-dir', join(dir, 'bridge-s'), ...common(), '--log-level', 'info']);
    procs.push(bridge);
    await bridge.waitForLog({ msg: 'connected to the field broker' }, 30_000);
  };
  const values = async (): Promise<unknown[]> => {
    try {
      const text = new TextDecoder().decode((await data.get(SERIES)).bytes);
      return text.split('\n').filter((l) => l.trim() !== '').map((l) => (JSON.parse(l) as { v: unknown }).v);
    } catch {
      return [];
    }
  };
  /** The series once it has `n` values and nothing more came for a second, or what it has at the deadline. */
  const settled = async (n: number, timeoutMs = 45_000): Promise<unknown[]> => {
    const deadline = Date.now() + timeoutMs;
    let got = await values();
    while (got.length < n && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      got = await values();
    }
    // Time for a duplicate to show up.
    await new Promise((r) => setTimeout(r, 1_000));
    return values();
  };
  const publish = async (from: number, to: number) => {
    for (const v of range(from, to)) await device.publishAsync('meters/m1/reading', String(v), { qos: 1 });
  };
  const why = () => JSON.stringify(bridge.logs.slice(-10));

  beforeAll(async () => {
    if (!HAVE_MOSQUITTO) return;
    dir = tempDir();
    port = await freePort();
    const field = await startMosquitto(dir, { name: 'field' });
    procs.push(field.proc);
    proxy = await MqttProxy.start(field.port);
    const hub = ucp(['hub', '--port', String(port), '--log-level', 'warn']);
    procs.push(hub);
    await hub.waitForLine(/hub listening on/, 30_000);
    const broker = ucp(['broker', '--node-id', 'fs-b', '--data-dir', join(dir, 'fs-b'), ...common(), '--log-level', 'info']);
    procs.push(broker, ucp(['datastore', '--node-id', 'fs-d', '--data-dir', join(dir, 'fs-d'), ...common()]));
    await broker.waitForLog({ msg: 'peer up', peer: 'fs-d' }, 30_000);
    config = join(dir, 'bridge.toml');
    writeFileSync(
      config,
      `[bridge]
field_url = "${proxy.url}"
field_mqtt_version = "${version}"

[[mapping]]
name = "meters"
topic = "meters/{device}/reading"
codec = "number"
target = "field/meters/{device}/reading"
`,
    );
    await startBridge();
    device = await mqtt.connectAsync(field.url, { clientId: 'meter-sim' });
    const linkConfig = loadConfig({ env: {}, overrides: { 'node.cluster': 'fs', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    link = await NodeLink.start({ ...linkOptionsFromConfig(linkConfig, createLogger({ level: 'silent', format: 'json' })), nodeId: 'tester-s', role: 'operator', announce: false, watchPresence: true });
    data = new DataClient(link, 5_000);
  }, 120_000);

  afterAll(async () => {
    await device?.endAsync();
    await link?.stop();
    for (const p of procs.reverse()) await p.stop();
    await proxy?.close();
    if (dir !== undefined) removeDir(dir);
  });

  it('readings sent to a stopped bridge that is then killed are stored once each, in order, after it restarts', async () => {
    bridge.kill('SIGSTOP');
    await publish(0, N);
    bridge.kill('SIGKILL');
    await bridge.exited;
    const connections = new Set(proxy.toClient.map((p) => p.connection)).size;
    await startBridge();
    expect(await settled(N), why()).toEqual(range(0, N));
    // Those the broker had sent into the stopped bridge's socket came again, marked as redeliveries.
    expect(proxy.toClient.filter((p) => p.type === 3 && (p.flags & 0x08) !== 0 && p.connection > connections).length).toBeGreaterThan(0);
  }, 120_000);

  it('readings published while the bridge is not running are delivered when it starts', async () => {
    await bridge.stop();
    await publish(N, 2 * N);
    await startBridge();
    expect(await settled(2 * N), why()).toEqual(range(0, 2 * N));
    expect(bridge.logs.find((l) => l.msg === 'connected to the field broker')?.['session']).toBe('resumed');
  }, 120_000);

  it('a reading committed whose PUBACK never reached the broker, then the bridge killed: redelivered, stored once', async () => {
    const held = proxy.hold((p) => p.type === 4);
    await device.publishAsync('meters/m1/reading', String(2 * N), { qos: 1 });
    // The bridge acknowledges only after the commit: the reading is in its LMDB now.
    const puback = await held;
    bridge.kill('SIGKILL');
    await bridge.exited;
    await startBridge();
    expect(await settled(2 * N + 1), why()).toEqual(range(0, 2 * N + 1));
    expect(proxy.toClient.some((p) => p.type === 3 && (p.flags & 0x08) !== 0 && p.messageId === puback.messageId && p.connection > puback.connection)).toBe(true);
  }, 120_000);

  it('a reading committed whose PUBACK was lost with the connection: redelivered on the next one, stored once', async () => {
    const held = proxy.hold((p) => p.type === 4);
    await device.publishAsync('meters/m1/reading', String(2 * N + 1), { qos: 1 });
    const puback = await held;
    const from = bridge.logs.length;
    proxy.cut();
    await bridge.waitForLog({ msg: 'connected to the field broker', session: 'resumed' }, 30_000, from);
    expect(await settled(2 * N + 2), why()).toEqual(range(0, 2 * N + 2));
    expect(proxy.toClient.some((p) => p.type === 3 && (p.flags & 0x08) !== 0 && p.messageId === puback.messageId && p.connection > puback.connection)).toBe(true);
    // One PUBACK per PUBLISH the bridge took in: mqtt.js sent none of its own besides the bridge's.
    const publishes = proxy.toClient.filter((p) => p.type === 3 && p.connection > puback.connection).length;
    await new Promise((r) => setTimeout(r, 500));
    expect(proxy.toBroker.filter((p) => p.type === 4 && p.connection > puback.connection).length).toBe(publishes);
  }, 120_000);
});
