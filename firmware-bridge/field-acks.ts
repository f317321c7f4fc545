import type { Writable } from 'node:stream';

interface Held {
  readonly stream: Writable;
  readonly messageId: number;
}

/**
 * PUBACKs for QoS 1 messages from the field broker, sent only once what the messages changed is committed
 * to LMDB. A bridge killed before the commit has acknowledged nothing, so the broker sends the message
 * again. Messages taken in during one turn of the event loop share one commit, then their PUBACKs leave
 * in one write, in the order the messages came ([MQTT-4.6.0-2]).
 *
 * mqtt.js's own hooks (customHandleAcks, handleMessage) hand over the next message only once the last one
 * is acknowledged, which would make one commit per message. So the bridge tells mqtt.js not to
 * acknowledge (its handleMessage callback gets an error) and writes the PUBACKs itself on the socket the
 * messages came on. A PUBACK whose socket has closed by the commit is not sent: the broker sends its
 * message again on the next connection, and the record of deliveries recognises it.
 */
export class FieldAcks {
  private held: Held[] = [];
  private scheduled = false;
  sent = 0;
  dropped = 0;

  constructor(
    /** Resolves once every write made so far is committed. */
    private readonly durable: () => Promise<void>,
    /** The socket of the current connection (mqtt.js replaces it at each reconnect). */
    private readonly current: () => Writable | undefined,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Acknowledges `messageId` after the next commit. Call it after the writes that handled the message. */
  hold(stream: Writable, messageId: number): void {
    this.held.push({ stream, messageId });
    if (this.scheduled) return;
    this.scheduled = true;
    // After the messages already read from the socket are handled (each in its own tick), so they share the commit.
    setImmediate(() => {
      this.scheduled = false;
      const batch = this.held;
      this.held = [];
      this.durable().then(
        () => this.send(batch),
        (err: Error) => {
          // Not acknowledged: the broker sends them again after the next reconnect.
          this.dropped += batch.length;
          this.onError(err);
        },
      );
    });
  }

  private send(batch: readonly Held[]): void {
    const current = this.current();
    let start = 0;
    while (start < batch.length) {
      const stream = batch[start]!.stream;
      let end = start;
      while (end < batch.length && batch[end]!.stream === stream) end++;
      if (stream === current && stream.writable && !stream.destroyed) {
        const bytes = Buffer.allocUnsafe((end - start) * 4);
        for (let i = start; i < end; i++) writePuback(bytes, (i - start) * 4, batch[i]!.messageId);
        stream.write(bytes);
        this.sent += end - start;
      } else {
        this.dropped += end - start;
      }
      start = end;
    }
  }
}

/**
 * A PUBACK with no reason code: four bytes in MQTT 3.1.1, and in MQTT 5 too, where reason code 0 (success)
 * with no properties may be left out (MQTT 5.0 section 3.4.2.1).
 */
function writePuback(into: Buffer, at: number, messageId: number): void {
  into[at] = 0x40;
  into[at + 1] = 0x02;
  into.writeUInt16BE(messageId, at + 2);
}
