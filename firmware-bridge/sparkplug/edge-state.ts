import type { Metric, Payload } from './payload.js';

export const SPARKPLUG_NAMESPACE = 'spBv1.0';
export const REBIRTH_METRIC = 'Node Control/Rebirth';
const MESSAGE_TYPES = ['NBIRTH', 'NDEATH', 'NDATA', 'NCMD', 'DBIRTH', 'DDEATH', 'DDATA', 'DCMD', 'STATE'] as const;
export type MessageType = (typeof MESSAGE_TYPES)[number];

export interface SparkplugTopic {
  readonly group: string;
  readonly type: MessageType;
  readonly node: string;
  readonly device?: string;
}

/** `spBv1.0/<group>/<type>/<node>[/<device>]`, or undefined for anything else. */
export function parseSparkplugTopic(topic: string): SparkplugTopic | undefined {
  const parts = topic.split('/');
  if (parts[0] !== SPARKPLUG_NAMESPACE || parts.length < 4 || parts.length > 5) return undefined;
  const [, group, type, node, device] = parts as [string, string, string, string, string | undefined];
  if (!(MESSAGE_TYPES as readonly string[]).includes(type) || group === '' || node === '') return undefined;
  if (type.startsWith('D') !== (device !== undefined && device !== '')) return undefined;
  return { group, type: type as MessageType, node, ...(device !== undefined ? { device } : {}) };
}

/** What the bridge knows of one edge node, from its births and the data since. */
export interface EdgeNode {
  readonly group: string;
  readonly node: string;
  state: 'online' | 'offline';
  bdSeq?: number;
  /** The last sequence number seen, 0..255. */
  seq?: number;
  /** Alias -> metric name and, for device metrics, the device. Aliases are unique per edge node. */
  aliases: Map<number, { name: string; device?: string }>;
  /** Known metric names per device ('' for the node's own). */
  metrics: Map<string, Set<string>>;
  /** Devices that are offline (DDEATH) since their last birth. */
  offlineDevices: Set<string>;
  seqGaps: number;
  staleDeathsIgnored: number;
  rebirthsRequested: number;
  lastRebirthAt: number;
}

export interface DecodedMetric {
  /** '' for the node's own metrics. */
  readonly device: string;
  readonly name: string;
  readonly value: unknown;
  readonly timestamp?: number;
}

/** What one Sparkplug message means, decided without I/O. */
export interface Outcome {
  readonly metrics: DecodedMetric[];
  /** Metrics that became stale (a death that matched the current birth): per device, their names. */
  readonly stale: Array<{ device: string; names: string[] }>;
  readonly rebirth: boolean;
  /** Why (part of) the message was refused, for the bad-payload counters. */
  readonly bad?: { reason: 'unknown_alias' | 'no_birth' | 'unparsable'; detail: string };
  /** Counted events: seq_gap, stale_death_ignored, birth, death. */
  readonly events: string[];
}

function newEdge(group: string, node: string): EdgeNode {
  return { group, node, state: 'offline', aliases: new Map(), metrics: new Map(), offlineDevices: new Set(), seqGaps: 0, staleDeathsIgnored: 0, rebirthsRequested: 0, lastRebirthAt: -Infinity };
}

/** The bdSeq metric of a birth or death, by name. */
function bdSeqOf(payload: Payload): number | undefined {
  const m = payload.metrics.find((x) => x.name === 'bdSeq');
  return typeof m?.value === 'number' ? m.value : undefined;
}

/**
 * Sparkplug B host semantics for the edge nodes the bridge hears:
 * - NBIRTH resets the node: its bdSeq, seq 0, and the metric names and aliases of its births.
 * - Every NBIRTH/NDATA/DBIRTH/DDATA/DDEATH carries seq, one more than the last (mod 256); a gap is
 *   counted and a rebirth requested. So is data that uses an alias no birth defined, or comes from a
 *   node whose birth was never seen.
 * - An NDEATH whose bdSeq matches the current birth's takes the node offline and makes its metrics
 *   (and its devices') stale; one that does not match is a late will of an earlier session and ignored.
 */
export class SparkplugHost {
  private readonly edges = new Map<string, EdgeNode>();

  constructor(
    /** The earliest a node is asked to rebirth again. */
    private readonly rebirthIntervalMs: number,
  ) {}

  nodes(): EdgeNode[] {
    return [...this.edges.values()];
  }

  edge(group: string, node: string): EdgeNode | undefined {
    return this.edges.get(`${group}/${node}`);
  }

  handle(topic: SparkplugTopic, payload: Payload, now: number): Outcome {
    const key = `${topic.group}/${topic.node}`;
    let edge = this.edges.get(key);
    const events: string[] = [];
    const metrics: DecodedMetric[] = [];
    const stale: Outcome['stale'] = [];
    let rebirth = false;
    let bad: Outcome['bad'];
    const askRebirth = () => {
      if (edge !== undefined && now - edge.lastRebirthAt >= this.rebirthIntervalMs) {
        edge.lastRebirthAt = now;
        edge.rebirthsRequested++;
        rebirth = true;
      }
    };
    if (topic.type === 'NBIRTH') {
      if (edge === undefined) this.edges.set(key, (edge = newEdge(topic.group, topic.node)));
      edge.state = 'online';
      const bd = bdSeqOf(payload);
      if (bd !== undefined) edge.bdSeq = bd;
      else delete edge.bdSeq;
      edge.seq = payload.seq ?? 0;
      edge.aliases = new Map();
      edge.metrics = new Map();
      edge.offlineDevices.clear();
      events.push('birth');
      this.learn(edge, '', payload.metrics, metrics);
      return { metrics, stale, rebirth, events };
    }
    if (edge === undefined) {
      if (topic.type === 'STATE' || topic.type === 'NCMD' || topic.type === 'DCMD') return { metrics, stale, rebirth, events };
      this.edges.set(key, (edge = newEdge(topic.group, topic.node)));
      if (topic.type !== 'NDEATH') {
        askRebirth();
        return { metrics, stale, rebirth, bad: { reason: 'no_birth', detail: `${topic.type} from ${key}, whose NBIRTH was not seen` }, events };
      }
    }
    switch (topic.type) {
      case 'NDEATH': {
        const bd = bdSeqOf(payload);
        if (edge.state === 'online' && bd !== undefined && bd === edge.bdSeq) {
          edge.state = 'offline';
          events.push('death');
          for (const [device, names] of edge.metrics) stale.push({ device, names: [...names] });
        } else {
          edge.staleDeathsIgnored++;
          events.push('stale_death_ignored');
        }
        return { metrics, stale, rebirth, events };
      }
      case 'NCMD':
      case 'DCMD':
      case 'STATE':
        return { metrics, stale, rebirth, events };
      default:
        break;
    }
    // NDATA, DBIRTH, DDATA, DDEATH carry a sequence number.
    if (edge.state !== 'online') {
      askRebirth();
      return { metrics, stale, rebirth, bad: { reason: 'no_birth', detail: `${topic.type} from ${key}, which is offline` }, events };
    }
    if (payload.seq !== undefined && edge.seq !== undefined && payload.seq !== (edge.seq + 1) % 256) {
      edge.seqGaps++;
      events.push('seq_gap');
      askRebirth();
    }
    if (payload.seq !== undefined) edge.seq = payload.seq;
    const device = topic.device ?? '';
    if (topic.type === 'DBIRTH') {
      edge.offlineDevices.delete(device);
      edge.metrics.set(device, new Set());
      this.learn(edge, device, payload.metrics, metrics);
    } else if (topic.type === 'DDEATH') {
      edge.offlineDevices.add(device);
      events.push('device_death');
      stale.push({ device, names: [...(edge.metrics.get(device) ?? [])] });
    } else {
      const unknown: number[] = [];
      for (const m of payload.metrics) {
        const name = m.name ?? (m.alias !== undefined ? edge.aliases.get(m.alias)?.name : undefined);
        if (name === undefined) {
          if (m.alias !== undefined) unknown.push(m.alias);
          continue;
        }
        if (m.isNull) continue;
        metrics.push({ device, name, value: m.value, ...(m.timestamp !== undefined ? { timestamp: m.timestamp } : {}) });
      }
      if (unknown.length > 0) {
        askRebirth();
        bad = { reason: 'unknown_alias', detail: `alias ${unknown.slice(0, 5).join(', ')} from ${key} was defined by no birth` };
      }
    }
    return { metrics, stale, rebirth, ...(bad !== undefined ? { bad } : {}), events };
  }

  /** Records a birth's metric names and aliases, and takes its values as readings. */
  private learn(edge: EdgeNode, device: string, list: readonly Metric[], out: DecodedMetric[]): void {
    const names = edge.metrics.get(device) ?? new Set<string>();
    edge.metrics.set(device, names);
    for (const m of list) {
      if (m.name === undefined || m.name === 'bdSeq' || m.name.startsWith('Node Control/') || m.name.startsWith('Device Control/')) continue;
      if (m.alias !== undefined) edge.aliases.set(m.alias, { name: m.name, ...(device !== '' ? { device } : {}) });
      names.add(m.name);
      if (!m.isNull) out.push({ device, name: m.name, value: m.value, ...(m.timestamp !== undefined ? { timestamp: m.timestamp } : {}) });
    }
  }
}
