import { isClusterName, isNodeId } from './names.js';

/**
 * The topic scheme. Everything lives under ucp/<cluster>/ so several clusters can share one hub.
 *
 *   ucp/<cluster>/inbox/<node>       directed messages to one node (QoS 1)
 *   ucp/<cluster>/presence/<node>    retained birth, replaced by the matching death (the MQTT last will)
 *   ucp/<cluster>/heartbeat/<node>   periodic proof of life with capabilities and load
 *   ucp/<cluster>/sync/<broker>      broker metadata sync, one topic per origin broker
 */
export type TopicClass = 'inbox' | 'presence' | 'heartbeat' | 'sync';

export class Topics {
  readonly root: string;

  constructor(readonly cluster: string) {
    if (!isClusterName(cluster)) throw new Error(`invalid cluster name "${cluster}": use 1-64 of [A-Za-z0-9_-]`);
    this.root = `ucp/${cluster}`;
  }

  inbox(node: string): string {
    return `${this.root}/inbox/${checkNode(node)}`;
  }

  presence(node: string): string {
    return `${this.root}/presence/${checkNode(node)}`;
  }

  heartbeat(node: string): string {
    return `${this.root}/heartbeat/${checkNode(node)}`;
  }

  sync(broker: string): string {
    return `${this.root}/sync/${checkNode(broker)}`;
  }

  /** Subscription filter for every node's topic of one class. */
  all(cls: TopicClass): string {
    return `${this.root}/${cls}/+`;
  }

  /** Splits a topic of this cluster into its class and node, or undefined for anything else. */
  parse(topic: string): { cls: TopicClass; node: string } | undefined {
    if (!topic.startsWith(this.root) || topic.charCodeAt(this.root.length) !== 47 /* '/' */) return undefined;
    // Runs for every message received: slice by index rather than split into an array.
    const start = this.root.length + 1;
    const slash = topic.indexOf('/', start);
    if (slash < 0) return undefined;
    const cls = topic.slice(start, slash);
    const node = topic.slice(slash + 1);
    if (cls !== 'inbox' && cls !== 'presence' && cls !== 'heartbeat' && cls !== 'sync') return undefined;
    if (!isNodeId(node)) return undefined;
    return { cls, node };
  }
}

function checkNode(node: string): string {
  if (!isNodeId(node)) throw new Error(`invalid node id "${node}": use 1-64 of [A-Za-z0-9._-]`);
  return node;
}
