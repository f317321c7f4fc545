import type { UcpConfig } from '../config/index.js';
import type { Logger } from '../log/index.js';
import type { NodeLink, PeerState } from '../transport/index.js';
import { summarize } from './latency.js';
import { withTool } from './settings.js';

export interface Output {
  json: boolean;
  print(line: string): void;
}

export const stdout: Output = { json: false, print: (line) => process.stdout.write(`${line}\n`) };

/** Formats rows as aligned columns, the way `docker ps` or `nomad node status` do. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

function describePeer(p: Readonly<PeerState>) {
  return {
    id: p.id,
    role: p.role,
    state: p.alive ? 'alive' : 'dead',
    incarnation: p.incarnation,
    ...(p.downReason !== undefined ? { reason: p.downReason } : {}),
    ...(p.birth !== undefined ? { host: p.birth.host, software: p.birth.software } : {}),
    ...(p.heartbeat !== undefined
      ? { uptimeMs: p.heartbeat.uptime_ms, load: p.heartbeat.load, rssBytes: p.heartbeat.rss_bytes, outboxPending: p.heartbeat.outbox_pending }
      : {}),
  };
}

/**
 * `ucp nodes`: every node that has a retained birth or death on the hub, plus what the heartbeats heard
 * during the wait say about load. Clients come and go with every command: one that has left is listed
 * only with `all`, while a unit that is down stays listed, as that is news.
 */
export function listNodes(config: UcpConfig, logger: Logger, out: Output, waitMs: number, all = false): Promise<void> {
  return withTool(config, logger, async (link) => {
    await new Promise((resolve) => setTimeout(resolve, waitMs));
    const peers = link.peers
      .peers()
      .filter((p) => all || p.alive || (p.role !== 'client' && p.role !== 'operator'))
      .map(describePeer)
      .sort((a, b) => a.id.localeCompare(b.id));
    if (out.json) {
      out.print(JSON.stringify(peers));
      return;
    }
    if (peers.length === 0) {
      out.print(`no nodes in cluster "${config.node.cluster}" at ${config.hub.url}`);
      return;
    }
    out.print(
      table(
        ['NODE', 'ROLE', 'STATE', 'INC', 'HOST', 'UPTIME', 'LOAD'],
        peers.map((p) => [
          p.id,
          p.role,
          p.state === 'dead' && p.reason !== undefined ? `dead (${p.reason})` : p.state,
          String(p.incarnation),
          p.host ?? '-',
          p.uptimeMs !== undefined ? `${Math.round(p.uptimeMs / 1000)}s` : '-',
          p.load !== undefined ? p.load.toFixed(2) : '-',
        ]),
      ),
    );
  });
}

/** `ucp ping NODE`: application-level round trips through the hub. */
export function ping(config: UcpConfig, logger: Logger, out: Output, node: string, count: number): Promise<void> {
  return withTool(config, logger, async (link) => {
    const rtts: number[] = [];
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      const reply = await link.request(node, 'ping', {});
      const rtt = performance.now() - t0;
      rtts.push(rtt);
      if (!out.json) out.print(`reply from ${node} (${reply.role}, incarnation ${reply.inc}): ${rtt.toFixed(2)} ms`);
    }
    const { p50Ms, p99Ms, maxMs } = summarize(rtts);
    const summary = { node, count, p50Ms, p99Ms, maxMs };
    if (out.json) out.print(JSON.stringify(summary));
    else out.print(`${count} replies: p50 ${summary.p50Ms.toFixed(2)} ms, p99 ${summary.p99Ms.toFixed(2)} ms, max ${summary.maxMs.toFixed(2)} ms`);
  });
}

/** `ucp status NODE`: the node's own view: uptime, outbox, peers, counters and timings. */
export function status(config: UcpConfig, logger: Logger, out: Output, node: string): Promise<void> {
  return withTool(config, logger, async (link) => {
    const reply = await link.request(node, 'status_request', {});
    if (reply.kind !== 'status') throw new Error(`${node} answered with ${reply.kind} instead of status`);
    const s = reply.body;
    if (out.json) {
      out.print(JSON.stringify({ node, role: reply.role, incarnation: reply.inc, ...s }));
      return;
    }
    out.print(`${node}: ${reply.role}, incarnation ${reply.inc}, ${s.software}, up ${Math.round(s.uptime_ms / 1000)}s, outbox ${s.outbox_pending} pending`);
    const alive = s.peers.filter((p) => p.alive).length;
    out.print(`peers: ${alive} alive, ${s.peers.length - alive} dead`);
    const counters = Object.entries(s.counters).sort(([a], [b]) => a.localeCompare(b));
    if (counters.length > 0) out.print(table(['COUNTER', 'VALUE'], counters.map(([k, v]) => [k, String(v)])));
    const timings = Object.entries(s.timings ?? {}).sort(([a], [b]) => a.localeCompare(b));
    if (timings.length > 0) out.print(table(['TIMING', 'COUNT', 'P50 MS', 'P99 MS', 'MAX MS'], timings.map(([k, t]) => [k, String(t.count), String(t.p50_ms), String(t.p99_ms), String(t.max_ms)])));
  });
}

/** Waits until every listed node is alive in the link's presence view, or fails after `timeoutMs`. */
export async function waitForNodes(link: NodeLink, ids: readonly string[], timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const missing = ids.filter((id) => link.peers.get(id)?.alive !== true);
    if (missing.length === 0) return;
    if (performance.now() > deadline) throw new Error(`nodes not alive after ${timeoutMs} ms: ${missing.join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
