import { createHash } from 'node:crypto';
import type { NodeStore, Table } from '../src/store/index.js';

/** What the bridge keeps per MQTT packet identifier: the digest of the message, and when it came. */
interface Delivery {
  /** sha1 of topic and payload. */
  readonly d: string;
  /** The bridge's count of QoS 1 messages from the field broker at this one. */
  readonly r: number;
}

/**
 * How far back (in QoS 1 messages received) a record can belong to a message the field broker may still
 * redeliver. The broker never has more than its in-flight window unacknowledged (Mosquitto's
 * max_inflight_messages, 20 by default; with MQTT 5 the bridge's Receive Maximum), and acknowledgements
 * go out only after the commit, so every message more than that window behind the newest committed one
 * was acknowledged and received. A broker that numbers its packets in turn (Mosquitto does) uses an
 * identifier again only 65,535 messages later, well outside this window: an old record is never taken for
 * a new message that happens to have the same identifier and the same content.
 */
export const REDELIVERY_WINDOW = 32_768;

/**
 * Which QoS 1 messages from the field broker are redeliveries of ones already committed. The broker
 * resends a message it has no PUBACK for after a reconnect, with the DUP flag and the same packet
 * identifier ([MQTT-3.3.1-1], [MQTT-4.4.0-1]); the bridge acknowledges only after the commit, so a
 * connection lost (or a bridge killed) between the commit and the PUBACK brings back a message it has.
 * A record per packet identifier, written in the same LMDB batch as what the message changed and after
 * it, tells them apart: a message with DUP set whose identifier, topic and payload match a recent record
 * is one the bridge already holds.
 */
export class FieldDeliveries {
  private readonly table: Table<Delivery, number>;
  /** Every record, read once at start (at most 65,535): reads see this process's writes at once. */
  private readonly records = new Map<number, Delivery>();
  private serial = 0;

  constructor(store: NodeStore) {
    this.table = store.table<Delivery, number>('bridge_field_deliveries');
    for (const { key, value } of this.table.getRange()) {
      this.records.set(key, value);
      if (value.r > this.serial) this.serial = value.r;
    }
  }

  /** true if this message is a redelivery of one whose outcome is committed. */
  redelivered(messageId: number, dup: boolean, digest: string): boolean {
    if (!dup) return false;
    const record = this.records.get(messageId);
    return record !== undefined && record.d === digest && record.r > this.serial - REDELIVERY_WINDOW;
  }

  /**
   * Records the message as handled. Call it after what handling it wrote: LMDB commits writes in the
   * order they were made, so a committed record means a committed outcome.
   */
  record(messageId: number, digest: string): void {
    const value = { d: digest, r: ++this.serial };
    this.records.set(messageId, value);
    void this.table.put(messageId, value);
  }
}

export function deliveryDigest(topic: string, payload: Uint8Array): string {
  return createHash('sha1').update(topic).update('\0').update(payload).digest('base64');
}
