import { isClusterName, isNodeId, isRole, type Role } from './names.js';

/**
 * The topic scheme. Everything lives under ucp/<cluster>/ so several clusters can share one hub, and every
 * topic names its sender and the sender's role, so the hub can prove both with plain topic ACLs on the
 * authenticated user (PROTOCOL.md, "Topics" and "Identity"):
 *
 *   ucp/<cluster>/inbox/<to>/<role>/<from>   directed messages from <from> (a <role>) to <to> (QoS 1)
 *   ucp/<cluster>/presence/<role>/<node>     retained birth, replaced by the matching death (the MQTT last will)
 *   ucp/<cluster>/heartbeat/<role>/<node>    periodic proof of life with capabilities and load
 */
export type TopicClass = 'inbox' | 'presence' | 'heartbeat';

/** Where a message was published: its class, its sender and the sender's role, and for an inbox its receiver. */
export interface TopicAddress {
  readonly cls: TopicClass;
  /** The sender the topic names: on a hub with ACLs, the authenticated user that published it. */
  readonly from: string;
  readonly role: Role;
  /** Inbox topics: the node the message is for. */
  readonly to?: string;
}

export class Topics {
  readonly root: string;

  constructor(readonly cluster: string) {
    if (!isClusterName(cluster)) throw new Error(`invalid cluster name "${cluster}": use 1-64 of [A-Za-z0-9_-]`);
    this.root = `ucp/${cluster}`;
  }

  /** A message from `from` (a `role`) to `to`'s inbox. */
  inbox(to: string, role: Role, from: string): string {
    return `${this.root}/inbox/${checkNode(to)}/${checkRole(role)}/${checkNode(from)}`;
  }

  presence(role: Role, node: string): string {
    return `${this.root}/presence/${checkRole(role)}/${checkNode(node)}`;
  }

  heartbeat(role: Role, node: string): string {
    return `${this.root}/heartbeat/${checkRole(role)}/${checkNode(node)}`;
  }

  /** Subscription filter for everything sent to one node's inbox. */
  inboxOf(node: string): string {
    return `${this.root}/inbox/${checkNode(node)}/+/+`;
  }

  /** Subscription filter for the heartbeats of every node of one role. */
  heartbeatsOf(role: Role): string {
    return `${this.root}/heartbeat/${checkRole(role)}/+`;
  }

  /** Subscription filter for every node's presence or heartbeat topic. */
  all(cls: 'presence' | 'heartbeat'): string {
    return `${this.root}/${cls}/+/+`;
  }

  /** Splits a topic of this cluster into its address, or undefined for anything else. */
  parse(topic: string): TopicAddress | undefined {
    if (!topic.startsWith(this.root) || topic.charCodeAt(this.root.length) !== 47 /* '/' */) return undefined;
    return parseLevels(topic, this.root.length + 1);
  }
}

/**
 * Splits any ucp topic, whatever its cluster: what a hub checks a publish against. Undefined for topics
 * outside the scheme.
 */
export function parseTopic(topic: string): (TopicAddress & { readonly cluster: string }) | undefined {
  if (!topic.startsWith('ucp/')) return undefined;
  const slash = topic.indexOf('/', 4);
  if (slash < 0) return undefined;
  const cluster = topic.slice(4, slash);
  if (!isClusterName(cluster)) return undefined;
  const address = parseLevels(topic, slash + 1);
  return address === undefined ? undefined : { cluster, ...address };
}

// Runs for every message received: slice by index rather than split into an array.
function parseLevels(topic: string, start: number): TopicAddress | undefined {
  const a = topic.indexOf('/', start);
  if (a < 0) return undefined;
  const cls = topic.slice(start, a);
  const b = topic.indexOf('/', a + 1);
  if (b < 0) return undefined;
  if (cls === 'inbox') {
    const c = topic.indexOf('/', b + 1);
    if (c < 0) return undefined;
    const to = topic.slice(a + 1, b);
    const role = topic.slice(b + 1, c);
    const from = topic.slice(c + 1);
    if (!isNodeId(to) || !isRole(role) || !isNodeId(from)) return undefined;
    return { cls, to, role, from };
  }
  if (cls !== 'presence' && cls !== 'heartbeat') return undefined;
  const role = topic.slice(a + 1, b);
  const from = topic.slice(b + 1);
  if (!isRole(role) || !isNodeId(from)) return undefined;
  return { cls, role, from };
}

function checkNode(node: string): string {
  if (!isNodeId(node)) throw new Error(`invalid node id "${node}": use 1-64 of [A-Za-z0-9._-]`);
  return node;
}

function checkRole(role: string): string {
  if (!isRole(role)) throw new Error(`invalid role "${role}"`);
  return role;
}
