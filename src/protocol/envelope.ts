import type { BodyOf, Kind } from './kinds.js';
import type { Role } from './names.js';

export const PROTOCOL_VERSION = 1;

/** A vector clock over brokers: node id -> counter; absent means 0. */
export type WireClock = Readonly<Record<string, number>>;

export interface Hlc {
  readonly wall: number;
  readonly logical: number;
}

/**
 * The one envelope every message travels in. `id` is unique per sender (`from`), so (from, id) identifies
 * a message cluster-wide; `inc` is the sender's incarnation, incremented at every start.
 */
export interface Envelope<K extends Kind = Kind> {
  readonly v: typeof PROTOCOL_VERSION;
  readonly kind: K;
  readonly id: string;
  readonly from: string;
  readonly role: Role;
  readonly inc: number;
  readonly vc: WireClock;
  readonly hlc: Hlc;
  readonly body: BodyOf<K>;
  /** The id of the request this message answers. */
  readonly re?: string;
  /** Set when the sender keeps the message in its durable outbox until an `ack` names it. */
  readonly ack?: boolean;
}

/** Any envelope, discriminated by kind, so `switch (msg.kind)` narrows the body. */
export type AnyEnvelope = { [K in Kind]: Envelope<K> }[Kind];
