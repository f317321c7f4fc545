import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Encoder } from 'cbor-x';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, removeDir, tempDir, ucp, ucpRun, type Proc, startHubProcess } from '../helpers/processes.js';
import { SKIP_WITHOUT_MOSQUITTO, mosquittoPub } from '../helpers/mosquitto.js';

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true });

function envelope(kind: string, body: unknown, extra: Record<string, unknown> = {}) {
  return { v: 1, kind, id: '1.0', from: 'rogue-device', role: 'bridge', inc: 1, vc: {}, hlc: [Date.now(), 0], body, ...extra };
}

/**
 * Hostile and broken input from a real MQTT client (mosquitto_pub) straight into a node's inbox: every
 * piece is dropped with a counter and one log line, and the node keeps serving.
 */
describe.skipIf(SKIP_WITHOUT_MOSQUITTO)('bad input from the wire', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  let node: Proc;
  const inbox = 'ucp/badin/inbox/node-b/bridge/rogue-device';
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'badin'];

  const payloads: Record<string, Buffer> = {
    malformed_cbor: Buffer.from('hello world'),
    too_large: Buffer.alloc(10_000, 0x41),
    too_deep: Buffer.concat([Buffer.alloc(100, 0x81), Buffer.from([0x01])]),
    unsupported_version: cbor.encode({ ...envelope('ping', {}), v: 99 }),
    bad_envelope: cbor.encode(envelope('ping', {}, { from: 'no/slashes/allowed' })),
    unknown_kind: cbor.encode(envelope('self_destruct', {})),
    bad_body: cbor.encode(envelope('notice', { severity: 'info', text: 'x'.repeat(5_000) })),
    wrong_topic: cbor.encode(envelope('death', { graceful: false })),
    // Published as rogue-device (the topic says so) but claiming to be someone else.
    wrong_sender: cbor.encode(envelope('ping', {}, { from: 'node-a' })),
    // Only a broker may tell an executor anything about its jobs.
    not_permitted: cbor.encode(envelope('job_verdict', { job_id: 'j-1', attempt: 1, verdict: 'rejected', reason: 'forged' })),
  };

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
    node = ucp(['executor', '--node-id', 'node-b', '--data-dir', join(dir, 'b'), '--set', 'protocol.max_message_bytes=8192', ...common()]);
    procs.push(node);
    await node.waitForLog({ msg: 'connected' });
  });

  afterAll(async () => {
    for (const p of procs) await p.stop();
    removeDir(dir);
  });

  it('drops each kind of bad message with its own counter and a single log line', async () => {
    for (const [name, bytes] of Object.entries(payloads)) {
      const file = join(dir, `${name}.bin`);
      writeFileSync(file, bytes);
      mosquittoPub(port, inbox, file);
    }
    // Repeats are counted but not logged again.
    for (let i = 0; i < 20; i++) mosquittoPub(port, inbox, join(dir, 'malformed_cbor.bin'));

    const status = await ucpRun(['status', 'node-b', '--json', ...common()]);
    expect(status.code).toBe(0);
    const counters = (JSON.parse(status.stdout) as { counters: Record<string, number> }).counters;
    expect(counters).toMatchObject({
      rx_dropped_malformed_cbor: 21,
      rx_dropped_too_large: 1,
      rx_dropped_too_deep: 1,
      rx_dropped_unsupported_version: 1,
      rx_dropped_bad_envelope: 1,
      rx_dropped_unknown_kind: 1,
      rx_dropped_bad_body: 1,
      rx_dropped_wrong_topic: 1,
      rx_dropped_wrong_sender: 1,
      rx_dropped_not_permitted: 1,
    });
    const warnings = node.logs.filter((l) => typeof l.counter === 'string' && l.counter.startsWith('rx_dropped_'));
    expect(warnings.map((l) => l.counter).sort()).toEqual(Object.keys(payloads).map((k) => `rx_dropped_${k}`).sort());
    for (const w of warnings) {
      expect(typeof w.reason).toBe('string');
      expect(String(w.msg)).not.toContain('\n');
    }
    expect(node.logs.find((l) => l.counter === 'rx_dropped_too_large')?.reason).toMatch(/10000 bytes exceeds the 8192-byte limit/);
    expect(node.logs.find((l) => l.counter === 'rx_dropped_bad_body')?.reason).toMatch(/body\.text/);
  });

  it('keeps serving requests and durable messages afterwards', async () => {
    const ping = await ucpRun(['ping', 'node-b', '--count', '3', '--json', ...common()]);
    expect(ping.code).toBe(0);
    expect(JSON.parse(ping.stdout)).toMatchObject({ node: 'node-b', count: 3 });
    const notice = await ucpRun(['notice', 'node-b', 'still here?', '--node-id', 'ops', '--data-dir', join(dir, 'ops'), ...common()]);
    expect(notice.code).toBe(0);
    await node.waitForLog({ msg: 'operator notice', text: 'still here?' });
    expect(node.child.exitCode).toBeNull();
  });
});
