import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAVE_MOSQUITTO, SKIP_WITHOUT_MOSQUITTO, startMosquitto } from '../helpers/mosquitto.js';
import { DataClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { NodeLink, linkOptionsFromConfig } from '../../src/transport/index.js';
import { ROOT, freePort, removeDir, tempDir, ucp, type Proc } from '../helpers/processes.js';

/**
 * A bridge killed with SIGKILL right after a reading fired a trigger: the job it started must still run,
 * once, under the id it was given, and its command reach the device. Real parts: Debian's Mosquitto as
 * the field broker, the platform's hub, broker, datastore and executor as processes, the tank-alarm WASM
 * module.
 */
describe.skipIf(SKIP_WITHOUT_MOSQUITTO)('firmware bridge killed after a trigger fired', () => {
  let dir: string;
  let port: number;
  let fieldUrl: string;
  let config: string;
  const procs: Proc[] = [];
  let hub: Proc;
  let bridge: Proc;
  let device: mqtt.MqttClient;
  let link: NodeLink;
  let data: DataClient;
  const commands: Array<{ topic: string; body: Record<string, unknown> }> = [];
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'brk', '--log-level', 'warn'];

  const startHub = async () => {
    hub = ucp(['hub', '--port', String(port), '--log-level', 'warn']);
    procs.push(hub);
    await hub.waitForLine(/hub listening on/, 30_000);
  };
  const startBridge = async () => {
    bridge = ucp(['bridge', '--config', config, '--node-id', 'bridge-k', '--data-dir', join(dir, 'bridge-k'), ...common(), '--log-level', 'info']);
    procs.push(bridge);
    await bridge.waitForLog({ msg: 'connected to the field broker' }, 30_000);
  };
  const lines = async (name: string): Promise<Array<Record<string, unknown>>> => {
    try {
      const text = new TextDecoder().decode((await data.get(name)).bytes);
      return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
    } catch {
      return [];
    }
  };
  /** The series once it has `n` records, or what it has after `timeoutMs` (asked again while this link finds a restarted hub). */
  const waitLines = async (name: string, n: number, timeoutMs = 45_000): Promise<Array<Record<string, unknown>>> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = await lines(name);
      if (got.length >= n || Date.now() > deadline) return got;
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  /** The bridge's trigger jobs the broker knows, by id, as an operator sees them (asked again while this link finds a restarted hub). */
  const jobsOf = async (): Promise<string[]> => {
    for (let attempt = 1; ; attempt++) {
      try {
        const reply = await link.request('brk-b', 'job_list', { limit: 100, owner: 'bridge-k' }, 2_000);
        if (reply.kind !== 'job_listing') throw new Error(`the broker answered ${reply.kind}`);
        return reply.body.items.map((j) => j.job_id);
      } catch (err) {
        if (attempt >= 10) throw err;
      }
    }
  };
  const waitCommands = async (n: number, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (commands.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  };

  beforeAll(async () => {
    if (!HAVE_MOSQUITTO) return;
    dir = tempDir();
    port = await freePort();
    const field = await startMosquitto(dir, { name: 'field' });
    fieldUrl = field.url;
    procs.push(field.proc);
    await startHub();
    const broker = ucp(['broker', '--node-id', 'brk-b', '--data-dir', join(dir, 'brk-b'), ...common(), '--log-level', 'info']);
    procs.push(broker, ucp(['datastore', '--node-id', 'brk-d', '--data-dir', join(dir, 'brk-d'), ...common()]), ucp(['executor', '--node-id', 'brk-e', '--data-dir', join(dir, 'brk-e'), ...common()]));
    await broker.waitForLog({ msg: 'peer up', peer: 'brk-d' }, 30_000);
    await broker.waitForLog({ msg: 'peer up', peer: 'brk-e' }, 30_000);
    config = join(dir, 'bridge.toml');
    writeFileSync(
      config,
      `[bridge]
field_url = "${fieldUrl}"

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
`,
    );
    await startBridge();
    device = await mqtt.connectAsync(fieldUrl, { clientId: 'tank-sim' });
    await device.subscribeAsync('devices/+/cmd', { qos: 1 });
    device.on('message', (topic, payload) => commands.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown> }));
    const linkConfig = loadConfig({ env: {}, overrides: { 'node.cluster': 'brk', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    link = await NodeLink.start({ ...linkOptionsFromConfig(linkConfig, createLogger({ level: 'silent', format: 'json' })), nodeId: 'tester-k', role: 'operator', announce: false, watchPresence: true });
    data = new DataClient(link, 5_000);
    await data.putFile('modules/tank-alarm', join(ROOT, 'examples', 'tank-alarm', 'alarm.wasm'));
  }, 120_000);

  afterAll(async () => {
    await device?.endAsync();
    await link?.stop();
    for (const p of procs.reverse()) await p.stop();
    if (dir !== undefined) removeDir(dir);
  });

  it('the platform is down when the trigger fires and the bridge is killed: after both return, the job runs once and its command reaches the device', async () => {
    hub.kill('SIGKILL');
    await hub.exited;
    await device.publishAsync('tanks/tank-3/level', '50', { qos: 1 });
    await device.publishAsync('tanks/tank-3/level', '85.5', { qos: 1 });
    // Time to take the readings in (nothing can be asked of the bridge with its hub down), then the kill.
    await new Promise((r) => setTimeout(r, 1_500));
    bridge.kill('SIGKILL');
    await bridge.exited;
    await startHub();
    await startBridge();
    await waitCommands(1, 90_000);
    expect(commands, JSON.stringify(bridge.logs.slice(-15))).toEqual([{ topic: 'devices/tank-3/cmd', body: { pump: 'on', level: 85.5, limit: 80 } }]);
    // The job that fired before the kill, under its own id, and no other.
    const fired = bridge.logs.find((l) => l.msg === 'trigger job submitted');
    expect(fired?.['created']).toBe(true);
    expect(await jobsOf()).toEqual([fired!['job']]);
    await bridge.waitForLog({ msg: 'following trigger jobs fired before the restart', jobs: 1 });
    expect((await waitLines('field/tanks/tank-3/commands', 1)).map((l) => l['v'])).toEqual([{ pump: 'on', level: 85.5, limit: 80 }]);
    // The reading that fired it was not lost either.
    expect((await waitLines('field/tanks/tank-3/level', 2)).map((l) => l['v'])).toEqual([50, 85.5]);
  }, 180_000);

  it('the bridge is killed right after the trigger fired, the platform up: the resubmission is the same job, run once', async () => {
    commands.length = 0;
    const before = await jobsOf();
    const from = bridge.logs.length;
    await device.publishAsync('tanks/tank-4/level', '92', { qos: 1 });
    const fired = await bridge.waitForLog({ msg: 'trigger fired: job recorded' }, 10_000, from);
    bridge.kill('SIGKILL');
    await bridge.exited;
    await startBridge();
    await waitCommands(1);
    await new Promise((r) => setTimeout(r, 2_000));
    expect(commands.filter((c) => c.topic === 'devices/tank-4/cmd')).toEqual([{ topic: 'devices/tank-4/cmd', body: { pump: 'on', level: 92, limit: 80 } }]);
    const after = await jobsOf();
    expect(after.filter((j) => !before.includes(j))).toEqual([fired['job']]);
  }, 120_000);

  it('a restart is not a crossing: a reading still above the threshold fires nothing, the next crossing fires once', async () => {
    // tank-4 went above 80 before the last restart (the test before); it stays there.
    const before = await jobsOf();
    await device.publishAsync('tanks/tank-4/level', '95', { qos: 1 });
    await waitLines('field/tanks/tank-4/level', 2);
    bridge.kill('SIGKILL');
    await bridge.exited;
    await startBridge();
    await device.publishAsync('tanks/tank-4/level', '97', { qos: 1 });
    await waitLines('field/tanks/tank-4/level', 3);
    // The restarted bridge's own log, all of it: the reading at 97 fired nothing.
    expect(bridge.logs.filter((l) => l.msg === 'trigger fired: job recorded')).toEqual([]);
    await device.publishAsync('tanks/tank-4/level', '40', { qos: 1 });
    await device.publishAsync('tanks/tank-4/level', '90', { qos: 1 });
    const fired = await bridge.waitForLog({ msg: 'trigger fired: job recorded' }, 20_000);
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await jobsOf()).filter((j) => !before.includes(j))).toEqual([fired['job']]);
  }, 120_000);
});
