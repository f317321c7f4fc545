import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode as encodeCbor } from 'cbor-x';
import sparkplug from 'sparkplug-payload';
import { HAVE_MOSQUITTO, SKIP_WITHOUT_MOSQUITTO, startMosquitto } from '../helpers/mosquitto.js';
import { DataClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { NodeLink, linkOptionsFromConfig } from '../../src/transport/index.js';
import { ROOT, freePort, removeDir, tempDir, ucp, ucpRun, type Proc } from '../helpers/processes.js';

interface Line {
  seq: number;
  t: number;
  v: unknown;
  stale?: boolean;
}

/**
 * The firmware bridge with real parts: Debian's Mosquitto as the field broker, the platform's hub, broker
 * and datastore as processes, and `ucp bridge` reading device topics from one and storing series on the
 * other.
 */
describe.skipIf(SKIP_WITHOUT_MOSQUITTO)('firmware bridge', () => {
  let dir: string;
  let port: number;
  let fieldUrl: string;
  const procs: Proc[] = [];
  let hub: Proc;
  let bridge: Proc;
  let device: mqtt.MqttClient;
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'br', '--log-level', 'warn'];

  let link: NodeLink;
  let data: DataClient;
  const series = async (name: string): Promise<Line[]> => {
    let text: string;
    try {
      text = new TextDecoder().decode((await data.get(name)).bytes);
    } catch {
      return [];
    }
    return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Line);
  };
  const waitSeries = async (name: string, done: (lines: Line[]) => boolean, timeoutMs = 30_000): Promise<Line[]> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lines = await series(name);
      if (done(lines)) return lines;
      if (Date.now() > deadline) throw new Error(`${name}: ${lines.length} records after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 300));
    }
  };
  const status = async () => {
    const reply = await link.request('bridge-1', 'status_request', {});
    if (reply.kind !== 'status' || reply.body.bridge === undefined) throw new Error(`bridge-1 answered ${reply.kind}`);
    return { counters: reply.body.counters, bridge: reply.body.bridge };
  };
  const publish = (topic: string, payload: string | Buffer) => device.publishAsync(topic, payload, { qos: 1 });

  beforeAll(async () => {
    if (!HAVE_MOSQUITTO) return;
    dir = tempDir();
    port = await freePort();
    const field = await startMosquitto(dir, { name: 'field' });
    fieldUrl = field.url;
    procs.push(field.proc);
    hub = ucp(['hub', '--port', String(port), '--log-level', 'warn']);
    await hub.waitForLine(/hub listening on/, 30_000);
    const broker = ucp(['broker', '--node-id', 'br', '--data-dir', join(dir, 'br'), ...common(), '--log-level', 'info']);
    procs.push(broker, ucp(['datastore', '--node-id', 'ds', '--data-dir', join(dir, 'ds'), ...common()]), ucp(['executor', '--node-id', 'ex', '--data-dir', join(dir, 'ex'), ...common()]));
    await broker.waitForLog({ msg: 'peer up', peer: 'ds' }, 30_000);
    await broker.waitForLog({ msg: 'peer up', peer: 'ex' }, 30_000);
    const config = join(dir, 'bridge.toml');
    writeFileSync(
      config,
      `[bridge]
field_url = "${fieldUrl}"
max_payload_bytes = 1024

[[mapping]]
name = "esphome"
topic = "{device}/sensor/{metric}/state"
codec = "number"
target = ["field/{device}/{metric}", "field/{device}/{metric}/latest"]
keep_last = 600

[[mapping]]
name = "tasmota"
topic = "tele/{device}/SENSOR"
codec = "json"
fields = { temperature = "AM2301.Temperature", humidity = "AM2301.Humidity" }
type = "number"
min = -40
max = 125
target = "field/{device}/{metric}"

[[mapping]]
name = "cbor-meters"
topic = "meters/{device}"
codec = "cbor"
path = "kwh"
target = "field/{device}/kwh"

[[mapping]]
name = "labels"
topic = "labels/{device}"
codec = "text"
target = "field/{device}/label"

[[mapping]]
name = "stills"
topic = "stills/{device}"
codec = "raw"
target = "field/{device}/still/latest"

[[mapping]]
name = "plc"
topic = "spBv1.0/#"
codec = "sparkplug-b"
target = "field/{group}/{edge}/{metric}"

[[mapping]]
name = "tanks"
topic = "tanks/{device}/level"
codec = "number"
target = "field/tanks/{device}/level"

[[trigger]]
name = "tank-high"
on = "field/tanks/{device}/level"
when = "threshold"
above = 80
[trigger.job]
wasm_module = "modules/tank-alarm"
argv = ["alarm", "80"]
input = "reading.json"
output = "command.json"
timeout_s = 30
[trigger.result]
store = "field/tanks/{device}/commands"
command_topic = "devices/{device}/cmd"
ack_topic = "devices/{device}/ack"
ack_timeout_s = 20
`,
    );
    bridge = ucp(['bridge', '--config', config, '--node-id', 'bridge-1', '--data-dir', join(dir, 'bridge-1'), ...common(), '--log-level', 'info']);
    procs.push(bridge);
    await bridge.waitForLog({ msg: 'connected to the field broker' }, 30_000);
    await bridge.waitForLog({ msg: 'peer up', peer: 'br' }, 30_000);
    device = await mqtt.connectAsync(fieldUrl, { clientId: 'device-sim' });
    const linkConfig = loadConfig({ env: {}, overrides: { 'node.cluster': 'br', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    link = await NodeLink.start({ ...linkOptionsFromConfig(linkConfig, createLogger({ level: 'silent', format: 'json' })), nodeId: 'tester', role: 'client', announce: false, watchPresence: true });
    data = new DataClient(link, 30_000);
  }, 120_000);

  afterAll(async () => {
    await device?.endAsync();
    await link?.stop();
    for (const p of procs.reverse()) await p.stop();
    if (dir !== undefined) removeDir(dir);
  });

  it('stores readings of several codecs as series, with the newest under /latest', async () => {
    await publish('pump-1/sensor/level/state', '41.5');
    await publish('tele/kitchen/SENSOR', JSON.stringify({ Time: '2024-06-01T10:00:00', AM2301: { Temperature: 21.3, Humidity: 45 } }));
    await publish('meters/m-7', Buffer.from(encodeCbor({ kwh: 1234.5 })));
    await publish('labels/pump-1', 'north tank');
    await publish('pump-1/sensor/level/state', '42');
    const level = await waitSeries('field/pump-1/level', (l) => l.length === 2);
    expect(level.map((l) => l.v)).toEqual([41.5, 42]);
    expect(level.map((l) => l.seq)).toEqual([0, 1]);
    expect((await waitSeries('field/pump-1/level/latest', (l) => l.length === 1 && l[0]!.v === 42))[0]!.v).toBe(42);
    expect((await waitSeries('field/kitchen/temperature', (l) => l.length === 1))[0]!.v).toBe(21.3);
    expect((await waitSeries('field/kitchen/humidity', (l) => l.length === 1))[0]!.v).toBe(45);
    expect((await waitSeries('field/m-7/kwh', (l) => l.length === 1))[0]!.v).toBe(1234.5);
    expect((await waitSeries('field/pump-1/label', (l) => l.length === 1))[0]!.v).toBe('north tank');
  });

  it('counts a malformed payload of every codec per device and topic, and keeps running', async () => {
    await publish('pump-9/sensor/level/state', 'twelve');
    await publish('tele/attic/SENSOR', '{"AM2301": {"Temperature": 21');
    await publish('tele/attic/SENSOR', JSON.stringify({ AM2301: { Temperature: 900, Humidity: 40 } }));
    await publish('tele/attic/SENSOR', JSON.stringify({ AM2301: { Temperature: 'warm' } }));
    await publish('meters/m-9', Buffer.from([0xff, 0xfe, 0x00]));
    await publish('labels/pump-9', Buffer.from([0xc3, 0x28]));
    await publish('stills/cam-9', Buffer.alloc(2_000));
    await publish('spBv1.0/plant/NDATA/edge-9', Buffer.from('not protobuf at all'));
    await publish('pump-9/sensor/level/state', '12');
    await waitSeries('field/pump-9/level', (l) => l.length === 1 && l[0]!.v === 12);
    const s = await status();
    const bad = (deviceName: string, reason: string) => s.bridge.bad_payloads.find((b) => b.device === deviceName && b.reason === reason);
    expect(bad('pump-9', 'unparsable')).toMatchObject({ topic: 'pump-9/sensor/level/state', count: 1 });
    expect(bad('attic', 'unparsable')).toMatchObject({ topic: 'tele/attic/SENSOR', count: 1 });
    expect(bad('attic', 'out_of_range')).toBeDefined();
    expect(bad('attic', 'wrong_type')).toBeDefined();
    expect(bad('m-9', 'unparsable')).toBeDefined();
    expect(bad('pump-9', 'unparsable')).toBeDefined();
    expect(s.bridge.bad_payloads.find((b) => b.topic === 'labels/pump-9')).toMatchObject({ reason: 'unparsable' });
    expect(bad('cam-9', 'oversized')).toBeDefined();
    expect(s.bridge.bad_payloads.find((b) => b.topic === 'spBv1.0/plant/NDATA/edge-9')).toMatchObject({ reason: 'unparsable' });
    expect(s.counters['bad_payload_unparsable']).toBeGreaterThanOrEqual(5);
    // The readable part of the Tasmota message with a bad temperature still counts: humidity is stored.
    expect((await waitSeries('field/attic/humidity', (l) => l.length === 1))[0]!.v).toBe(40);
  });

  it('buffers 1,000 readings while the platform hub is down and stores those within retention, in order, exactly once', async () => {
    hub.kill('SIGKILL');
    await hub.exited;
    for (let i = 0; i < 1_000; i++) void publish('pump-2/sensor/level/state', String(i));
    await publish('pump-2/sensor/level/state', '1000');
    // Give the bridge time to take them all in (it acknowledges each to Mosquitto at once).
    await new Promise((r) => setTimeout(r, 1_500));
    hub = ucp(['hub', '--port', String(port), '--log-level', 'warn']);
    procs.push(hub);
    await hub.waitForLine(/hub listening on/, 30_000);
    const lines = await waitSeries('field/pump-2/level', (l) => l.length >= 600, 60_000);
    // keep_last = 600: the newest 600 of 1,001, in sequence order, each once.
    expect(lines.length).toBe(600);
    expect(lines.map((l) => l.v)).toEqual(Array.from({ length: 600 }, (_, i) => 401 + i));
    expect(lines.map((l) => l.seq)).toEqual(Array.from({ length: 600 }, (_, i) => 401 + i));
    const shown = await ucpRun(['status', 'bridge-1', '--json', ...common()]);
    expect(shown.code, shown.stderr).toBe(0);
    const s = JSON.parse(shown.stdout) as Awaited<ReturnType<typeof status>>;
    expect(s.counters['readings_outside_retention']).toBe(401);
    expect(s.bridge.buffer.records).toBe(0);
    expect((await series('field/pump-2/level/latest')).map((l) => l.v)).toEqual([1000]);
  }, 120_000);

  it('follows a Sparkplug B node: birth, data by alias, a sequence gap (rebirth requested), a death (stale), a stale death ignored', async () => {
    const spb = sparkplug.get('spBv1.0')!;
    const enc = (p: Parameters<typeof spb.encodePayload>[0]) => Buffer.from(spb.encodePayload(p));
    const ncmd: Array<Record<string, unknown>> = [];
    const listener = await mqtt.connectAsync(fieldUrl, { clientId: 'scada-watch' });
    await listener.subscribeAsync('spBv1.0/plant/NCMD/edge-1', { qos: 1 });
    listener.on('message', (_t, payload) => ncmd.push(spb.decodePayload(payload) as Record<string, unknown>));
    const now = Date.now();
    await publish('spBv1.0/plant/NBIRTH/edge-1', enc({ timestamp: now, seq: 0, metrics: [{ name: 'bdSeq', type: 'Int64', value: 7 }, { name: 'Tank/Level', alias: 1, type: 'Float', value: 10.5 }, { name: 'Pump/Run', alias: 2, type: 'Boolean', value: false }] }));
    await publish('spBv1.0/plant/NDATA/edge-1', enc({ timestamp: now, seq: 1, metrics: [{ alias: 1, type: 'Float', value: 11.5 }] }));
    await publish('spBv1.0/plant/NDATA/edge-1', enc({ timestamp: now, seq: 2, metrics: [{ alias: 2, type: 'Boolean', value: true }] }));
    const level = await waitSeries('field/plant/edge-1/Tank/Level', (l) => l.length === 2);
    expect(level.map((l) => l.v)).toEqual([10.5, 11.5]);
    expect((await waitSeries('field/plant/edge-1/Pump/Run', (l) => l.length === 2)).map((l) => l.v)).toEqual([false, true]);
    // seq 3 and 4 lost: a gap, and a rebirth request the real subscriber sees.
    await publish('spBv1.0/plant/NDATA/edge-1', enc({ timestamp: now, seq: 5, metrics: [{ alias: 1, type: 'Float', value: 12.5 }] }));
    await waitSeries('field/plant/edge-1/Tank/Level', (l) => l.length === 3);
    for (let i = 0; i < 50 && ncmd.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(ncmd[0]).toMatchObject({ metrics: [expect.objectContaining({ name: 'Node Control/Rebirth', value: true })] });
    // A will from an earlier session (bdSeq 6) is stale: ignored.
    await publish('spBv1.0/plant/NDEATH/edge-1', enc({ timestamp: now, metrics: [{ name: 'bdSeq', type: 'Int64', value: 6 }] }));
    // The death matching the current birth takes the node offline and marks its metrics stale.
    await publish('spBv1.0/plant/NDEATH/edge-1', enc({ timestamp: now, metrics: [{ name: 'bdSeq', type: 'Int64', value: 7 }] }));
    const after = await waitSeries('field/plant/edge-1/Tank/Level', (l) => l.length === 4);
    expect(after.at(-1)).toMatchObject({ stale: true });
    expect((await waitSeries('field/plant/edge-1/Pump/Run', (l) => l.length === 3)).at(-1)).toMatchObject({ stale: true });
    const s = await status();
    const edge = (s.bridge as unknown as { edge_nodes: Array<Record<string, unknown>> }).edge_nodes.find((e) => e.node === 'edge-1');
    expect(edge).toMatchObject({ group: 'plant', state: 'offline', bd_seq: 7, seq_gaps: 1, stale_deaths_ignored: 1, rebirths_requested: 1 });
    expect(s.counters['sparkplug_stale_death_ignored']).toBe(1);
    // Data from the dead node by an alias no live birth defined: counted, and a rebirth asked for again later.
    await publish('spBv1.0/plant/NDATA/edge-1', enc({ timestamp: now, seq: 6, metrics: [{ alias: 9, type: 'Float', value: 1 }] }));
    await listener.endAsync();
  });

  it('a threshold rule runs a WASM job whose result reaches the device command topic, and records the acknowledgement', async () => {
    await data.putFile('modules/tank-alarm', join(ROOT, 'examples', 'tank-alarm', 'alarm.wasm'));
    const commands: Array<{ topic: string; body: Record<string, unknown> }> = [];
    // The tank's controller: a real MQTT subscriber on its command topic, answering on its ack topic.
    const tank = await mqtt.connectAsync(fieldUrl, { clientId: 'tank-7' });
    await tank.subscribeAsync('devices/+/cmd', { qos: 1 });
    tank.on('message', (topic, payload) => {
      commands.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown> });
      void tank.publishAsync(topic.replace(/cmd$/, 'ack'), 'done', { qos: 1 });
    });
    await publish('tanks/tank-7/level', '50');
    await publish('tanks/tank-7/level', '85.5');
    await publish('tanks/tank-7/level', '90');
    for (let i = 0; i < 300 && commands.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    // Crossing 80 once fires once: 90 is still above.
    expect(commands).toEqual([{ topic: 'devices/tank-7/cmd', body: { pump: 'on', level: 85.5, limit: 80 } }]);
    let acked: Record<string, unknown> | undefined;
    for (let i = 0; i < 100 && acked === undefined; i++) {
      const s = await status();
      acked = (s.bridge as unknown as { commands: Array<Record<string, unknown>> }).commands.find((c) => c.state === 'acked');
      if (acked === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    expect(acked).toMatchObject({ device: 'tank-7', topic: 'devices/tank-7/cmd', detail: 'done' });
    const stored = await waitSeries('field/tanks/tank-7/commands', (l) => l.length === 1);
    expect(stored[0]).toMatchObject({ v: { pump: 'on', level: 85.5, limit: 80 } });
    const log = await waitSeries('bridge/bridge-1/commands', (l) => l.some((x) => (x as unknown as { state: string }).state === 'acked'));
    expect(log.find((x) => (x as unknown as { state: string }).state === 'acked')).toMatchObject({ device: 'tank-7' });
    expect((await status()).counters['triggers_fired']).toBe(1);
    await tank.endAsync();
  }, 60_000);
});
