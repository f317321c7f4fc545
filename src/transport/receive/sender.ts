import type { AnyEnvelope, Kind, TopicAddress } from '../../protocol/index.js';

export interface Drop {
  /** Counted as `rx_dropped_<code>`. */
  readonly code: 'wrong_topic' | 'wrong_sender' | 'retained' | 'not_permitted';
  readonly reason: string;
}

const PRESENCE_KINDS: ReadonlySet<Kind> = new Set<Kind>(['birth', 'death']);

/**
 * Authenticates the sender of a decoded message (PROTOCOL.md, "Identity"): the topic names the sender
 * and its role, which the hub binds to the publisher's credential, so the envelope must say the same.
 * Presence kinds belong on presence topics, heartbeats on heartbeat topics, everything else in the
 * receiver's own inbox; only presence is ever retained. Pure: the receive path counts what it returns.
 */
export function senderProblem(where: TopicAddress, msg: AnyEnvelope, self: string, retained: boolean): Drop | undefined {
  if (where.cls === 'presence') {
    if (!PRESENCE_KINDS.has(msg.kind)) return { code: 'wrong_topic', reason: `${msg.kind} message on a presence topic` };
  } else if (where.cls === 'heartbeat') {
    if (msg.kind !== 'heartbeat') return { code: 'wrong_topic', reason: `${msg.kind} message on a heartbeat topic` };
  } else {
    if (where.to !== self) return { code: 'wrong_topic', reason: `message for ${where.to} delivered to ${self}` };
    if (PRESENCE_KINDS.has(msg.kind) || msg.kind === 'heartbeat') return { code: 'wrong_topic', reason: `${msg.kind} message in an inbox` };
  }
  if (msg.from !== where.from) return { code: 'wrong_sender', reason: `a message claiming to be from ${msg.from} was published as ${where.from}` };
  if (msg.role !== where.role) return { code: 'wrong_sender', reason: `${msg.from} claims the role ${msg.role} on a topic of its role ${where.role}` };
  // A retained message replays to every new subscriber: on an inbox it would be handled again and again.
  if (retained && where.cls !== 'presence') return { code: 'retained', reason: `retained ${msg.kind} on a ${where.cls} topic` };
  return undefined;
}
