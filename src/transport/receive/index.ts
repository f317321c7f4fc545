import { decode, decodeBundle, type AnyEnvelope, type DecodeResult, type CodecLimits, type Role, type TopicAddress, type Topics } from '../../protocol/index.js';
import { permissionProblem } from './permission.js';
import { senderProblem } from './sender.js';

export type { Drop } from './sender.js';
export { senderProblem } from './sender.js';
export { permissionProblem } from './permission.js';

/** What the receive path made of one MQTT message. */
export type Admission =
  | { readonly ok: true; readonly msg: AnyEnvelope; readonly where: TopicAddress }
  /** An empty retained presence payload: MQTT's way of clearing the topic, i.e. forgetting a node. */
  | { readonly ok: 'cleared'; readonly node: string }
  /** Dropped: count `counter`, log `reason` once per source. */
  | { readonly ok: false; readonly counter: string; readonly source: string; readonly reason: string };

export interface Receiver {
  readonly id: string;
  readonly role: Role;
  readonly topics: Topics;
  readonly limits: CodecLimits;
}

/**
 * The stateless stages of receiving, in order (PROTOCOL.md, "Validation and limits"): locate the topic,
 * decode and validate the envelope, authenticate the sender against the topic, authorize the kind for
 * the sender's role. What survives goes on to the stateful stages in the link: observe clocks,
 * deduplicate, dispatch.
 */
export function admit(self: Receiver, topic: string, payload: Buffer, retained: boolean): Admission {
  const where = self.topics.parse(topic);
  if (where === undefined) return { ok: false, counter: 'rx_dropped_wrong_topic', source: topic, reason: `unexpected topic ${topic}` };
  if (payload.byteLength === 0 && where.cls === 'presence') return { ok: 'cleared', node: where.from };
  return checked(self, topic, where, decode(payload, self.limits), retained);
}

/**
 * The same stages for a bundle (PROTOCOL.md, "Bundles"): one admission per envelope, each checked on its
 * own. Only an inbox takes bundles; presence and heartbeats are retained or fanned out one at a time.
 */
export function admitBundle(self: Receiver, topic: string, payload: Buffer, retained: boolean): Admission[] {
  const where = self.topics.parse(topic);
  if (where === undefined) return [{ ok: false, counter: 'rx_dropped_wrong_topic', source: topic, reason: `unexpected topic ${topic}` }];
  if (where.cls !== 'inbox') return [{ ok: false, counter: 'rx_dropped_wrong_topic', source: where.from, reason: `a bundle on a ${where.cls} topic` }];
  return decodeBundle(payload, self.limits).map((decoded) => checked(self, topic, where, decoded, retained));
}

function checked(self: Receiver, topic: string, where: TopicAddress, decoded: DecodeResult, retained: boolean): Admission {
  if (!decoded.ok) return { ok: false, counter: `rx_dropped_${decoded.error.code}`, source: topic, reason: decoded.error.reason };
  const msg = decoded.msg;
  const drop = senderProblem(where, msg, self.id, retained) ?? (where.cls === 'inbox' ? permissionProblem(self.role, msg) : undefined);
  if (drop !== undefined) return { ok: false, counter: `rx_dropped_${drop.code}`, source: where.from, reason: drop.reason };
  return { ok: true, msg, where };
}
