/**
 * Transport benchmark: request/reply latency and pipelined throughput through the embedded hub, for the
 * project's NodeLink and for a bare mqtt.js client pair, measured in one run on the same hub.
 *
 * Three processes share the machine's two cores: the hub (`ucp hub`), the responder (a `ucp executor` node,
 * or the bare echo client) and this requester.
 */
import mqtt from 'mqtt';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { NodeLink, linkOptionsFromConfig } from '../../src/transport/index.js';
import { NodeStore } from '../../src/store/index.js';
import { hashPassword, writeCredentialsFile, type Credential } from '../../src/hub/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { Proc, ROOT, cleanEnv, freePort, removeDir, tempDir, ucp } from '../helpers/processes.js';
import { round, summarize, type LatencySummary } from './stats.js';
import type { BenchResult } from './run.js';

const WARMUP = 1_000;
const LATENCY_SAMPLES = 5_000;
const PIPELINE_REQUESTS = 30_000;
const PIPELINE_WINDOW = 64;
const PAYLOAD_BYTES = 64;

interface Requester {
  request(): Promise<void>;
  close(): Promise<void>;
}

const ROUNDS = 10;

/**
 * Latency of both requesters, measured in alternating rounds so that whatever else the machine is doing
 * (these are shared two-core machines) weighs on both sides alike.
 */
async function measureLatency(bare: Requester, project: Requester): Promise<{ bare: LatencySummary; project: LatencySummary }> {
  for (const r of [bare, project]) for (let i = 0; i < WARMUP; i++) await r.request();
  const samples = { bare: [] as number[], project: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of ['bare', 'project'] as const) {
      const r = side === 'bare' ? bare : project;
      for (let i = 0; i < LATENCY_SAMPLES / ROUNDS; i++) {
        const t0 = performance.now();
        await r.request();
        samples[side].push(performance.now() - t0);
      }
    }
  }
  return { bare: summarize(samples.bare), project: summarize(samples.project) };
}

/** Requests per second with PIPELINE_WINDOW requests outstanding at all times, alternating sides per round. */
async function measureThroughput(bare: Requester, project: Requester): Promise<{ bare: number; project: number }> {
  const totals = { bare: { n: 0, ms: 0 }, project: { n: 0, ms: 0 } };
  const perRound = PIPELINE_REQUESTS / 3;
  for (let round = 0; round < 3; round++) {
    for (const side of ['bare', 'project'] as const) {
      const r = side === 'bare' ? bare : project;
      let issued = 0;
      const worker = async () => {
        while (issued < perRound) {
          issued++;
          await r.request();
        }
      };
      const t0 = performance.now();
      await Promise.all(Array.from({ length: PIPELINE_WINDOW }, worker));
      totals[side].ms += performance.now() - t0;
      totals[side].n += perRound;
    }
  }
  return { bare: totals.bare.n / (totals.bare.ms / 1_000), project: totals.project.n / (totals.project.ms / 1_000) };
}

async function bareRequester(url: string, password?: string): Promise<Requester> {
  const client = await mqtt.connectAsync(url, { clientId: 'bare-req', clean: true, protocolVersion: 4, ...(password !== undefined ? { username: 'bare-req', password } : {}) });
  (client.stream as unknown as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  const pending = new Map<number, () => void>();
  client.on('message', (_topic, payload) => {
    const seq = payload.readUInt32BE(0);
    pending.get(seq)?.();
    pending.delete(seq);
  });
  await client.subscribeAsync(`ucp/${CLUSTER}/inbox/bare-req/+/+`, { qos: 1 });
  let seq = 0;
  const filler = randomBytes(PAYLOAD_BYTES);
  return {
    request() {
      const id = seq++ >>> 0;
      const payload = Buffer.concat([Buffer.alloc(4), filler]);
      payload.writeUInt32BE(id, 0);
      return new Promise<void>((resolve) => {
        pending.set(id, resolve);
        client.publish(`ucp/${CLUSTER}/inbox/bare-echo/client/bare-req`, payload, { qos: 0 });
      });
    },
    close: () => client.endAsync(),
  };
}

const CLUSTER = 'bench';

function benchConfig(password?: string) {
  return loadConfig({ env: {}, overrides: { 'log.level': 'warn', 'node.cluster': CLUSTER, ...(password !== undefined ? { 'hub.password': password } : {}) } });
}

async function projectRequester(url: string, target: string, dataDir?: string, password?: string): Promise<{ requester: Requester; link: NodeLink; store?: NodeStore }> {
  const config = benchConfig(password);
  const store = dataDir !== undefined ? NodeStore.open({ dir: dataDir, nodeId: 'bench-requester', sync: config.store.sync }) : undefined;
  const link = await NodeLink.start({
    ...linkOptionsFromConfig(config, createLogger({ level: 'warn', format: 'json', destination: process.stderr })),
    hubUrl: url,
    nodeId: 'bench-requester',
    role: 'client',
    announce: store !== undefined,
    watchPresence: store !== undefined,
    ...(store !== undefined ? { store } : {}),
  });
  const data = new Uint8Array(randomBytes(PAYLOAD_BYTES));
  return {
    link,
    ...(store !== undefined ? { store } : {}),
    requester: {
      request: async () => {
        await link.request(target, 'ping', { data });
      },
      close: async () => {
        await link.stop();
        await store?.close();
      },
    },
  };
}

interface Measured {
  bareLatency: LatencySummary;
  projectLatency: LatencySummary;
  bareThroughput: number;
  projectThroughput: number;
  durableLatency?: LatencySummary;
}

/**
 * One configuration of the hub: open (anyone may connect, as on the loopback quick start) or secured (per-
 * node credentials, every publish and subscription checked against the topic policy).
 */
async function measure(secure: boolean, withDurable: boolean): Promise<Measured> {
  const dir = tempDir('ucp-bench-');
  const port = await freePort();
  const url = `mqtt://127.0.0.1:${port}`;
  const procs: Proc[] = [];
  try {
    const passwords = new Map<string, string>();
    const hubArgs: string[] = [];
    if (secure) {
      const creds = new Map<string, Credential>();
      for (const [node, role] of [['bench-requester', 'client'], ['bench-responder', 'executor'], ['bare-req', 'client'], ['bare-echo', 'executor']] as const) {
        const password = randomBytes(12).toString('hex');
        passwords.set(node, password);
        creds.set(node, { node, role, certificate: false, ...(await hashPassword(password)) });
      }
      writeCredentialsFile(join(dir, 'credentials.toml'), creds);
      hubArgs.push('--set', `hub.credentials_file=${join(dir, 'credentials.toml')}`);
    }
    const hub = ucp(['hub', '--port', String(port), '--log-level', 'warn', ...hubArgs]);
    procs.push(hub);
    await hub.waitForLine(/hub listening on/);

    // Both responders run side by side: the bare echo client, and a real executor node answering pings.
    const echo = new Proc(process.execPath, ['--import', 'tsx', join(ROOT, 'test', 'bench', 'bare-echo.ts'), url, CLUSTER, ...(secure ? [passwords.get('bare-echo')!] : [])], cleanEnv());
    procs.push(echo);
    const responder = ucp(['executor', '--node-id', 'bench-responder', '--data-dir', join(dir, 'responder'), '--hub', url, '--cluster', CLUSTER, '--log-level', 'info'], secure ? { UCP_HUB_PASSWORD: passwords.get('bench-responder')! } : {});
    procs.push(responder);
    await echo.waitForLine(/ready/);
    await responder.waitForLog({ msg: 'connected' });
    const bare = await bareRequester(url, passwords.get('bare-req'));
    const project = await projectRequester(url, 'bench-responder', undefined, passwords.get('bench-requester'));
    const latency = await measureLatency(bare, project.requester);
    const throughput = await measureThroughput(bare, project.requester);
    await bare.close();
    await project.requester.close();
    const result: Measured = { bareLatency: latency.bare, projectLatency: latency.project, bareThroughput: throughput.bare, projectThroughput: throughput.project };
    if (withDurable) {
      // Durable outbox: store in LMDB, deliver, handle, persist the dedup id, acknowledge.
      const durable = await projectRequester(url, 'bench-responder', join(dir, 'requester'), passwords.get('bench-requester'));
      const durableSamples: number[] = [];
      for (let i = 0; i < 2_200; i++) {
        const t0 = performance.now();
        const id = await durable.link.sendDurable('bench-responder', 'notice', { severity: 'info', text: `bench ${i}` });
        await durable.link.delivered(id);
        if (i >= 200) durableSamples.push(performance.now() - t0);
      }
      result.durableLatency = summarize(durableSamples);
      await durable.requester.close();
    }
    return result;
  } finally {
    for (const p of procs.reverse()) await p.stop();
    removeDir(dir);
  }
}

export async function transportBench(): Promise<BenchResult> {
  const open = await measure(false, true);
  const secured = await measure(true, false);
  const rows: BenchResult['rows'] = [];
  for (const [label, m] of [['', open], ['secured hub: ', secured]] as const) {
    const latencyRatio = m.projectLatency.p50Ms / m.bareLatency.p50Ms;
    const throughputRatio = m.projectThroughput / m.bareThroughput;
    rows.push(
      { metric: `${label}request/reply p50 (ms)`, bare: round(m.bareLatency.p50Ms), project: round(m.projectLatency.p50Ms), ratio: round(latencyRatio, 2), target: '<= 1.5x bare', pass: latencyRatio <= 1.5 },
      { metric: `${label}request/reply p99 (ms)`, bare: round(m.bareLatency.p99Ms), project: round(m.projectLatency.p99Ms), ratio: round(m.projectLatency.p99Ms / m.bareLatency.p99Ms, 2), target: '-', pass: null },
      { metric: `${label}pipelined throughput (req/s, ${PIPELINE_WINDOW} in flight)`, bare: Math.round(m.bareThroughput), project: Math.round(m.projectThroughput), ratio: round(throughputRatio, 2), target: '>= 0.7x bare', pass: throughputRatio >= 0.7 },
    );
  }
  rows.push(
    { metric: 'durable outbox send->ack p50 (ms)', bare: null, project: round(open.durableLatency!.p50Ms), ratio: null, target: '-', pass: null },
    { metric: 'durable outbox send->ack p99 (ms)', bare: null, project: round(open.durableLatency!.p99Ms), ratio: null, target: '-', pass: null },
  );
  return {
    suite: 'transport',
    rows,
    details: { open, secured, warmup: WARMUP, rounds: ROUNDS, payloadBytes: PAYLOAD_BYTES, pipelineRequests: PIPELINE_REQUESTS },
  };
}
