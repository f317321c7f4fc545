import { createServer, connect, type Server, type Socket } from 'node:net';

/** One MQTT control packet as it crossed the proxy. */
export interface SeenPacket {
  /** Packet type (3 PUBLISH, 4 PUBACK, ...). */
  readonly type: number;
  /** The four flag bits of the fixed header (for PUBLISH: DUP 8, QoS 6, RETAIN 1). */
  readonly flags: number;
  /** The packet identifier of a PUBACK, or of a PUBLISH at QoS 1 or 2. */
  readonly messageId?: number;
  /** Which connection through the proxy it was on, counted from 1. */
  readonly connection: number;
}

/**
 * A TCP proxy between an MQTT client and its broker that reads the packets going either way, and can hold
 * back what the client sends from some packet on: a PUBACK that never reaches the broker, as when a
 * connection or a process is lost right after it was written.
 */
export class MqttProxy {
  readonly toBroker: SeenPacket[] = [];
  readonly toClient: SeenPacket[] = [];
  /** While set, the first client packet it matches and everything the client sends after are dropped. */
  holdFrom?: (packet: SeenPacket) => boolean;
  private held?: (packet: SeenPacket) => void;
  private connections = 0;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(brokerPort: number): Promise<MqttProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy has no port');
    const proxy = new MqttProxy(server, address.port);
    server.on('connection', (client) => proxy.pipe(client, brokerPort));
    return proxy;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Resolves with the first client packet `match` holds back. */
  hold(match: (packet: SeenPacket) => boolean): Promise<SeenPacket> {
    this.holdFrom = match;
    return new Promise((resolve) => (this.held = resolve));
  }

  private pipe(client: Socket, brokerPort: number): void {
    const connection = ++this.connections;
    const broker = connect({ host: '127.0.0.1', port: brokerPort });
    client.setNoDelay(true);
    broker.setNoDelay(true);
    this.sockets.add(client).add(broker);
    let holding = false;
    frames(client, (frame, packet) => {
      const seen = { ...packet, connection };
      if (!holding && this.holdFrom?.(seen) === true) {
        holding = true;
        this.holdFrom = undefined;
        this.held?.(seen);
      }
      if (holding) return;
      this.toBroker.push(seen);
      broker.write(frame);
    });
    frames(broker, (frame, packet) => {
      this.toClient.push({ ...packet, connection });
      client.write(frame);
    });
    const close = () => {
      client.destroy();
      broker.destroy();
      this.sockets.delete(client);
      this.sockets.delete(broker);
    };
    client.on('close', close).on('error', close);
    broker.on('close', close).on('error', close);
  }

  /** Drops every connection through the proxy, as a lost link would; new ones are let through. */
  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Splits a byte stream into MQTT packets (fixed header, variable-length remaining length, body). */
function frames(socket: Socket, onFrame: (frame: Buffer, packet: { type: number; flags: number; messageId?: number }) => void): void {
  let pending: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    for (;;) {
      if (pending.length < 2) return;
      let length = 0;
      let multiplier = 1;
      let i = 1;
      for (; ; i++) {
        if (i >= pending.length) return;
        const byte = pending[i]!;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        if ((byte & 0x80) === 0) break;
      }
      const total = i + 1 + length;
      if (pending.length < total) return;
      const frame = pending.subarray(0, total);
      pending = pending.subarray(total);
      const type = frame[0]! >> 4;
      const flags = frame[0]! & 0x0f;
      const body = frame.subarray(i + 1);
      let messageId: number | undefined;
      if (type === 4 && body.length >= 2) messageId = body.readUInt16BE(0);
      if (type === 3 && (flags & 0x06) !== 0) {
        const topicLength = body.readUInt16BE(0);
        messageId = body.readUInt16BE(2 + topicLength);
      }
      onFrame(Buffer.from(frame), { type, flags, ...(messageId !== undefined ? { messageId } : {}) });
    }
  });
}
