import { parseTopic, type Role } from '../protocol/index.js';

/** Who a connection is, as the hub established it at CONNECT. */
export interface Identity {
  readonly node: string;
  readonly role: Role;
}

export interface PublishLimits {
  /** Largest payload of any message. */
  readonly maxMessageBytes: number;
  /** Largest retained payload (births and deaths are a few hundred bytes). */
  readonly maxRetainedBytes: number;
}

/** Why the hub refused something: counted at the hub as `<counter>`, logged once per client. */
export interface HubRefusal {
  readonly counter: string;
  readonly reason: string;
}

/**
 * The hub's topic policy (PROTOCOL.md, "Identity"), as pure decisions. With credentials, a node publishes
 * only on topics that name itself and its credential's role as the sender, and reads only its own inbox
 * plus everyone's presence and heartbeats. Without credentials (the loopback quick start) nobody is
 * proven and only the limits below apply.
 *
 * Retained messages replay to every new subscriber and live as long as the hub: they are allowed only on
 * presence topics and only small, so nobody can grow the hub's memory or replay commands at every start.
 */
export function publishRefusal(who: Identity | { readonly node: string; readonly role?: undefined }, topic: string, retain: boolean, bytes: number, limits: PublishLimits): HubRefusal | undefined {
  if (bytes > limits.maxMessageBytes) return { counter: 'publish_refused_too_large', reason: `${bytes} bytes on ${topic}, over the ${limits.maxMessageBytes}-byte limit` };
  const address = parseTopic(topic);
  if (address === undefined) {
    if (who.role !== undefined) return { counter: 'publish_refused_topic', reason: `${topic} is outside the ucp topic scheme` };
    if (retain) return { counter: 'publish_refused_retain', reason: `retained message on ${topic}: only presence topics keep retained messages` };
    return undefined;
  }
  // Without credentials nobody is proven, so there is no one to hold to the topic's sender.
  if (who.role !== undefined && address.from !== who.node) return { counter: 'publish_refused_topic', reason: `${who.node} may not publish as ${address.from} (${topic})` };
  if (who.role !== undefined && address.role !== who.role) return { counter: 'publish_refused_topic', reason: `${who.node} is a ${who.role}, not a ${address.role} (${topic})` };
  if (retain) {
    if (address.cls !== 'presence') return { counter: 'publish_refused_retain', reason: `retained message on ${topic}: only presence topics keep retained messages` };
    if (bytes > limits.maxRetainedBytes) return { counter: 'publish_refused_retain', reason: `${bytes}-byte retained message on ${topic}, over the ${limits.maxRetainedBytes}-byte limit` };
  }
  return undefined;
}

const CLUSTER_LEVEL = /^(?:\+|[A-Za-z0-9_-]{1,64})$/;

/**
 * What a proven node may subscribe to: its own inbox (ucp/<cluster or +>/inbox/<node>/...) and the
 * presence and heartbeat topics. Everything else, other inboxes and catch-all filters included, is refused.
 */
export function subscribeRefusal(who: Identity | undefined, filter: string): HubRefusal | undefined {
  if (who === undefined) return undefined;
  const levels = filter.split('/');
  if (levels[0] === 'ucp' && levels.length >= 4 && CLUSTER_LEVEL.test(levels[1]!)) {
    const cls = levels[2];
    if (cls === 'presence' || cls === 'heartbeat') return undefined;
    if (cls === 'inbox' && levels[3] === who.node) return undefined;
  }
  return { counter: 'subscribe_refused', reason: `${who.node} may not subscribe to ${filter}: only its own inbox, presence and heartbeats` };
}
