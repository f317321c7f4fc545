/**
 * A load generator for the bridge bench that a broker, not the generator, limits: MQTT 3.1.1 over plain
 * sockets, several connections, QoS 0 (or 1), Nagle off, every PUBLISH packet encoded before the clock starts and
 * written in large pieces. mqtt.js spends a few microseconds of CPU per publish, which on two cores capped
 * the offered load near what the bridge itself was asked to reach.
 */
import { connect, type Socket } from 'node:net';

/** ESPHome's topics and values, as `ucp bridge simulate --profile esphome` publishes them. */
export function esphomeReading(d: number, n: number): { topic: string; payload: string } {
  const dev = `esp-${String(d + 1).padStart(3, '0')}`;
  const metric = n % 2 === 0 ? 'temperature' : 'level';
  const value = n % 2 === 0 ? 21 + 4 * Math.sin((n + d * 7) / 20) : 60 + 30 * Math.sin((n + d * 7) / 20);
  return { topic: `${dev}/sensor/${metric}/state`, payload: value.toFixed(2) };
}

function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

/** A PUBLISH at QoS 0, or at QoS 1 with packet identifier `messageId`. */
function publishPacket(topic: string, payload: string, messageId?: number): Buffer {
  const t = Buffer.from(topic);
  const p = Buffer.from(payload);
  const id = messageId !== undefined ? 2 : 0;
  const body = 2 + t.length + id + p.length;
  const len = remainingLength(body);
  const out = Buffer.allocUnsafe(1 + len.length + body);
  out[0] = messageId !== undefined ? 0x32 : 0x30;
  len.copy(out, 1);
  let at = 1 + len.length;
  out.writeUInt16BE(t.length, at);
  t.copy(out, at + 2);
  at += 2 + t.length;
  if (messageId !== undefined) out.writeUInt16BE(messageId, at);
  p.copy(out, at + id);
  return out;
}

function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId);
  const variable = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 60]);
  const body = variable.length + 2 + id.length;
  const idLen = Buffer.alloc(2);
  idLen.writeUInt16BE(id.length);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body), variable, idLen, id]);
}

async function open(port: number, clientId: string): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, noDelay: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('connect', () => socket.write(connectPacket(clientId)));
    socket.once('data', (d) => (d[0] === 0x20 && d[3] === 0 ? resolve() : reject(new Error(`CONNACK refused: ${d.toString('hex')}`))));
  });
  return socket;
}

/**
 * Prepared load: `devices` devices, `perDevice` readings each, split over `connections` connections
 * (a device always on the same one, so its readings arrive in order). `run()` sends it all and resolves
 * when every byte is written and the connections closed.
 */
export function prepareLoad(port: number, devices: number, perDevice: number, connections: number, tag: string, qos: 0 | 1 = 0): { count: number; run: () => Promise<number> } {
  const pieces: Buffer[][] = Array.from({ length: connections }, () => []);
  for (let c = 0; c < connections; c++) {
    let pending: Buffer[] = [];
    let bytes = 0;
    for (let n = 0; n < perDevice; n++) {
      for (let d = c; d < devices; d += connections) {
        const r = esphomeReading(d, n);
        // At QoS 1 Mosquitto answers each PUBLISH at once and keeps no state for it: identifiers may cycle
        // without waiting for the PUBACKs, which are read and dropped.
        const packet = publishPacket(r.topic, r.payload, qos === 1 ? (((n * devices + d) % 65_535) + 1) : undefined);
        pending.push(packet);
        bytes += packet.length;
        if (bytes >= 256 * 1024) {
          pieces[c]!.push(Buffer.concat(pending));
          pending = [];
          bytes = 0;
        }
      }
    }
    if (pending.length > 0) pieces[c]!.push(Buffer.concat(pending));
  }
  const run = async (): Promise<number> => {
    const sockets = await Promise.all(pieces.map((_, c) => open(port, `bench-load-${tag}-${c}`)));
    const started = performance.now();
    await Promise.all(
      sockets.map(async (socket, c) => {
        for (const piece of pieces[c]!) if (!socket.write(piece)) await new Promise((r) => socket.once('drain', r));
        // DISCONNECT: Mosquitto forwards everything before it, then closes.
        await new Promise<void>((resolve) => socket.end(Buffer.from([0xe0, 0]), () => resolve()));
      }),
    );
    return started;
  };
  return { count: devices * perDevice, run };
}
