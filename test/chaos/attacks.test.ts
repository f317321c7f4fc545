import { readFileSync, readdirSync, writeFileSync, copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import type mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import { encode, PROTOCOL_VERSION, type AnyEnvelope, type BodyOf, type Hlc, type JobSpec, type JobView, type Kind, type Role } from '../../src/protocol/index.js';
import { RemoteError, type NodeLink, type NodeRuntime } from '../../src/transport/index.js';
import { SKIP_WITHOUT_MOSQUITTO } from '../helpers/mosquitto.js';
import { ROOT, type Proc } from '../helpers/processes.js';
import { SecureCluster, type HubKind } from '../helpers/secure-cluster.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'wasm');
const wasm = (name: string) => readFileSync(join(FIXTURES, `${name}.wasm`));
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CLUSTER = 'atk';
const HOUR = 3_600_000;
/** How many unfinished jobs one client may have (budgets.max_jobs_per_client, lowered for the flood). */
const JOB_BUDGET = 25;
/** Bytes of named data one client may own (budgets.max_bytes_per_client, lowered for the attack). */
const BYTES_BUDGET = 1_048_576;

let forgedSeq = 0;
/** An envelope as a hostile device would build it: every field its own choice. */
function forged<K extends Kind>(kind: K, body: BodyOf<K>, from: string, role: Role, extra: { hlc?: Hlc; vc?: Record<string, number>; re?: string; ack?: boolean; inc?: number } = {}): Buffer {
  return encode({ v: PROTOCOL_VERSION, kind, id: `f.${forgedSeq++}`, from, role, inc: extra.inc ?? 1, vc: extra.vc ?? {}, hlc: extra.hlc ?? { wall: Date.now(), logical: 0 }, body, ...(extra.re !== undefined ? { re: extra.re } : {}), ...(extra.ack === true ? { ack: true } : {}) } as AnyEnvelope);
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const HUBS: HubKind[] = SKIP_WITHOUT_MOSQUITTO ? ['embedded'] : ['embedded', 'mosquitto'];

/**
 * Every attack the identity issue lists, run with real processes against a cluster where each node has its
 * own credential: on the embedded hub and on Mosquitto holding the policy `ucp auth export-mosquitto` wrote.
 * The attackers hold credentials of their own (mallory and eve are clients, ex-rogue is a registered
 * executor, br-2 a registered broker), never a victim's. Each attack must be refused and counted, and the
 * counts must be visible in `ucp status`.
 */
describe.each(HUBS)('attacks on a cluster with per-node credentials (%s hub)', (kind) => {
  let c: SecureCluster;
  let br: Proc;
  let ex1: Proc;
  let victim: NodeRuntime;
  let jobs: JobClient;
  let data: DataClient;
  let mallory: NodeLink;
  const embedded = kind === 'embedded';

  /** eve, a registered client, on a raw MQTT connection: whatever it publishes is its own choice. */
  const eve = () => c.mqtt({ clientId: 'eve', username: 'eve', password: c.passwords.get('eve')! });
  /**
   * Publishes, waiting for the acknowledgement, the connection's close (a hub that refuses may drop it
   * instead) or 2 s, whichever comes first. What it waited with is removed again: one close listener left
   * per call on a client that stays connected piles up.
   */
  async function publishAs(client: mqtt.MqttClient, topic: string, payload: Buffer, retain = false): Promise<void> {
    let onClose!: () => void;
    let timer: NodeJS.Timeout | undefined;
    const closed = new Promise<void>((r) => client.once('close', (onClose = r)));
    const late = new Promise<void>((r) => (timer = setTimeout(r, 2_000)));
    try {
      await Promise.race([client.publishAsync(topic, payload, { qos: 1, retain }).catch(() => undefined), closed, late]);
    } finally {
      client.removeListener('close', onClose);
      clearTimeout(timer);
    }
  }
  async function status(node: string): Promise<BodyOf<'status'>> {
    const reply = await victim.link.request(node, 'status_request', {});
    if (reply.kind !== 'status') throw new Error(`${node} answered ${reply.kind}`);
    return reply.body;
  }
  const counter = async (node: string, name: string) => (await status(node)).counters[name] ?? 0;
  /** The hub refused a publish: counted by the embedded hub, logged by Mosquitto. */
  async function hubRefusedPublish(from: string, counterName: string, before: number): Promise<void> {
    if (embedded) await until(`the hub to count ${counterName}`, async () => (await counter(c.hubNode, counterName)) > before);
    else await until('Mosquitto to deny the publish', () => c.hubLog(new RegExp(`Denied PUBLISH from ${from}`)).length > 0);
  }
  const hubCount = async (name: string) => (embedded ? counter(c.hubNode, name) : 0);

  function spec(jobId: string, extra: Partial<JobSpec> = {}): JobSpec {
    return { job_id: jobId, wasm_module: 'victim/bin/echo.wasm', capabilities: { tags: ['genuine'] }, argv: ['echo', jobId], env: {}, dirs: [], data: {}, results: ['out.txt'], named_results: {}, priority: 'normal', timeout_s: 60, max_memory_mb: 32, ...extra };
  }

  beforeAll(async () => {
    c = await SecureCluster.start({
      kind,
      cluster: CLUSTER,
      nodes: { br: 'broker', 'br-2': 'broker', ds: 'datastore', 'ex-1': 'executor', 'ex-rogue': 'executor', victim: 'client', planner: 'client', mallory: 'client', eve: 'client' },
      settings: { 'liveness.heartbeat_interval_ms': '250', 'liveness.dead_after_ms': '1500', 'metadata_sync.interval_s': '1', 'budgets.max_jobs_per_client': String(JOB_BUDGET), 'budgets.max_bytes_per_client': String(BYTES_BUDGET) },
    });
    br = c.spawn('broker', 'br', ['--set', 'log.format=json']);
    c.spawn('datastore', 'ds');
    ex1 = c.spawn('executor', 'ex-1', ['--set', 'log.format=json'], { UCP_EXECUTOR_TAGS: 'genuine' });
    for (const peer of ['ds', 'ex-1']) await br.waitForLog({ msg: 'peer up', peer }, 30_000);
    victim = await c.runtime('victim');
    data = new DataClient(victim.link, 30_000);
    jobs = new JobClient(victim.link, victim.store, data);
    await victim.connect();
    await data.put('victim/bin/echo.wasm', wasm('echo'));
    await data.put('victim/bin/spin-for.wasm', wasm('spin-for'));
    mallory = c.link('mallory', 'client', { announce: true });
    await mallory.connect();
  }, 120_000);

  afterAll(async () => {
    await c?.stop();
  }, 90_000);

  it('posing as a broker: an executor refuses assignments and cancels from anyone but a broker, and the hub refuses a client posing on a broker\'s topic', async () => {
    const asked: string[] = [];
    mallory.on('data_get', (msg) => void asked.push(msg.body.name));
    const started = await counter('ex-1', 'jobs_started');
    const notPermitted = await counter('ex-1', 'rx_dropped_not_permitted');
    const wrongSender = await counter('ex-1', 'rx_dropped_wrong_sender');
    const running = spec('victim-spin', { wasm_module: 'victim/bin/spin-for.wasm', argv: ['spin-for', '1500'], results: ['result.txt'] });
    await jobs.submit(running);
    await until('the victim\'s job to run', async () => (await jobs.query('victim-spin')).state === 'running');

    const evil = spec('evil-1', { wasm_module: 'mallory/evil.wasm' });
    mallory.send('ex-1', 'job_assign', { attempt: 1, spec: evil, versions: {} });
    mallory.send('ex-1', 'job_cancel', { job_id: 'victim-spin', attempt: 1, reason: 'forged' });
    const e = await eve();
    // Its own topic, but an envelope claiming to be the broker.
    await publishAs(e, `ucp/${CLUSTER}/inbox/ex-1/client/eve`, forged('job_assign', { attempt: 1, spec: evil, versions: {} }, 'eve', 'broker'));
    await publishAs(e, `ucp/${CLUSTER}/inbox/ex-1/client/eve`, forged('job_cancel', { job_id: 'victim-spin', attempt: 1, reason: 'forged' }, 'br', 'broker'));
    // The broker's own topic: only the broker may publish there.
    const refusedBefore = await hubCount('publish_refused_topic');
    await publishAs(await eve(), `ucp/${CLUSTER}/inbox/ex-1/broker/br`, forged('job_cancel', { job_id: 'victim-spin', attempt: 1, reason: 'forged' }, 'br', 'broker'));
    await hubRefusedPublish('eve', 'publish_refused_topic', refusedBefore);

    await until('the executor to drop what mallory sent', async () => (await counter('ex-1', 'rx_dropped_not_permitted')) >= notPermitted + 2);
    expect(await counter('ex-1', 'rx_dropped_wrong_sender')).toBeGreaterThanOrEqual(wrongSender + 2);
    const done = (await jobs.wait(['victim-spin'], { timeoutMs: 30_000 })).get('victim-spin')!.job;
    expect(done).toMatchObject({ state: 'succeeded', result: { executor: 'ex-1', attempt: 1 } });
    expect(await counter('ex-1', 'jobs_started')).toBe(started + 1);
    expect(await counter('ex-1', 'jobs_cancelled')).toBe(0);
    expect(asked).toEqual([]);
  }, 90_000);

  it('forging results: a client may not report at all, an executor only on what it was assigned, and a different result for a reported attempt is a flagged conflict', async () => {
    // A registered executor that reports twice, differently, on the one attempt it is given.
    const rogue = await c.runtime('ex-rogue', 'executor');
    const caps = { cpu_cores: 1, free_cpu_capacity: 100, free_memory: 1 << 30, free_disk_space: 1 << 30, tags: ['rogue'], on_mains_power: true };
    rogue.link.setHeartbeatFields(() => ({ capabilities: caps, running_jobs: [], job_slots: 1 }));
    const verdicts: Array<BodyOf<'job_verdict'>> = [];
    rogue.link.on('job_verdict', (msg) => void verdicts.push(msg.body));
    const report = (jobId: string, attempt: number, message: string): BodyOf<'job_result'> => ({ job_id: jobId, attempt, outcome: 'exited', exit_code: 0, message, duration_ms: 1, archive: new Uint8Array(22), files: [], missing: [], named: [] });
    rogue.link.on('job_assign', async (msg) => {
      const first = await rogue.link.sendDurable('br', 'job_result', report(msg.body.spec.job_id, msg.body.attempt, 'the first report'));
      await rogue.link.delivered(first);
      await rogue.link.sendDurable('br', 'job_result', report(msg.body.spec.job_id, msg.body.attempt, 'a different report'));
    });
    await rogue.connect();
    await until('the broker to see ex-rogue', async () => (await status('br')).peers.some((p) => p.id === 'ex-rogue' && p.alive));

    // Not assigned the victim's job: unauthorized. A client may not report at all.
    await jobs.submit(spec('victim-result'));
    const done = (await jobs.wait(['victim-result'], { timeoutMs: 30_000 })).get('victim-result')!.job;
    const unauthorized = await counter('br', 'results_unauthorized');
    const id = await rogue.link.sendDurable('br', 'job_result', report('victim-result', 1, 'forged'));
    await rogue.link.delivered(id);
    const refusedBefore = await counter('br', 'rx_dropped_not_permitted');
    mallory.send('br', 'job_result', report('victim-result', 1, 'forged'));
    await until('the broker to refuse mallory\'s report', async () => (await counter('br', 'rx_dropped_not_permitted')) > refusedBefore);
    expect(await counter('br', 'results_unauthorized')).toBe(unauthorized + 1);
    expect(await jobs.query('victim-result')).toEqual(done);

    // The same attempt reported twice with different content: the first stands, the second is flagged.
    await jobs.submit(spec('twice', { capabilities: { tags: ['rogue'] }, wasm_module: 'victim/bin/echo.wasm' }));
    await until('the conflict to be flagged', async () => ((await jobs.query('twice')).conflicts?.length ?? 0) > 0);
    const twice = await jobs.query('twice');
    expect(twice).toMatchObject({ state: 'succeeded', result: { attempt: 1, executor: 'ex-rogue', message: 'the first report' } });
    expect(twice.conflicts).toEqual([expect.objectContaining({ attempt: 1, executor: 'ex-rogue' })]);
    expect(await counter('br', 'results_conflicting')).toBe(1);
    await until('ex-rogue to hear of the conflict', () => verdicts.some((v) => v.job_id === 'twice' && /conflict/.test(v.reason)));
    const shown = await c.run(['job', 'twice']);
    expect(shown.stdout).toMatch(/conflict: attempt 1 on ex-rogue reported a different result/);
    await rogue.stop();
  }, 90_000);

  it('hijacking replies: nobody reads another node\'s inbox or answers what it was not asked; 5 of 5 jobs run the genuine module', async () => {
    const spy = await eve();
    const overheard: string[] = [];
    spy.on('message', (topic) => overheard.push(topic));
    const refusedBefore = await hubCount('subscribe_refused');
    for (const filter of ['#', `ucp/${CLUSTER}/inbox/#`, `ucp/${CLUSTER}/inbox/+/+/+`, `ucp/${CLUSTER}/inbox/ex-1/+/+`]) {
      // The embedded hub refuses the subscription (SUBACK 0x80); Mosquitto grants it but delivers nothing it may not read.
      const granted = await spy.subscribeAsync(filter, { qos: 1 }).then(
        () => true,
        () => false,
      );
      if (embedded) expect(granted, filter).toBe(false);
    }
    if (embedded) expect(await counter(c.hubNode, 'subscribe_refused')).toBeGreaterThanOrEqual(refusedBefore + 4);
    // Blind answers to whatever the executor might be asking.
    const unmatched = await counter('ex-1', 'rx_unmatched_replies');
    for (let i = 0; i < 40; i++) mallory.send('ex-1', 'data_items', { items: [{ name: 'victim/bin/echo.wasm', bytes: wasm('exit-code'), at: [Date.now(), 0], writer: 'victim' }] });
    const ids = ['h-1', 'h-2', 'h-3', 'h-4', 'h-5'];
    for (const id of ids) await jobs.submit(spec(id));
    for (let i = 0; i < 5; i++) {
      for (const re of ['1.0', '1.1', '2.1', '2.a', `${i}.${i}`]) {
        await publishAs(spy, `ucp/${CLUSTER}/inbox/ex-1/client/eve`, forged('data_items', { items: [{ name: 'victim/bin/echo.wasm', bytes: wasm('exit-code'), at: [Date.now(), 0], writer: 'victim' }] }, 'eve', 'client', { re }));
      }
    }
    const done = await jobs.wait(ids, { timeoutMs: 60_000 });
    for (const id of ids) {
      const finished = done.get(id)!;
      expect(finished.job.state, id).toBe('succeeded');
      const files = unzipSync(await jobs.resultArchive(finished));
      expect(text(files['out.txt']!), id).toBe('hello from echo\n');
    }
    expect(overheard.filter((t) => !t.startsWith(`ucp/${CLUSTER}/inbox/eve/`) && !/presence|heartbeat/.test(t))).toEqual([]);
    expect(await counter('ex-1', 'rx_unmatched_replies')).toBeGreaterThanOrEqual(unmatched + 1);
    expect(await counter('ex-1', 'rx_dropped_not_permitted')).toBeGreaterThanOrEqual(40);
  }, 90_000);

  it('killing nodes by name: no takeover of a live node\'s id, no forged death, no forged birth drawing jobs', async () => {
    const from = br.logs.length;
    const exFrom = ex1.logs.length;
    // Another node's client id with one's own credential, and with none.
    const idBefore = await hubCount('login_refused_client_id');
    const takeover = await c.mqtt({ clientId: 'ex-1', username: 'eve', password: c.passwords.get('eve')! }).then(
      (client) => client,
      () => undefined,
    );
    if (embedded) {
      expect(takeover).toBeUndefined();
      expect(await counter(c.hubNode, 'login_refused_client_id')).toBe(idBefore + 1);
    } else {
      // Mosquitto renames the connection to its user name: it became eve, not ex-1.
      expect(c.hubLog(/as ex-1 \(.*u'eve'\)/)).toEqual([]);
    }
    await expect(c.mqtt({ clientId: 'ex-1' })).rejects.toThrow(/Not authorized|Bad username or password/);
    // A retained death with a huge incarnation on the executor's presence topic.
    const retainedBefore = await hubCount('publish_refused_topic');
    await publishAs(await eve(), `ucp/${CLUSTER}/presence/executor/ex-1`, forged('death', { graceful: false }, 'ex-1', 'executor', { inc: 2 ** 40 }), true);
    await hubRefusedPublish('eve', 'publish_refused_topic', retainedBefore);
    // A fake executor: on its own presence topic as what it is (a client), claiming to be an executor.
    const wrongSender = await counter('br', 'rx_dropped_wrong_sender');
    const fake = await eve();
    await publishAs(fake, `ucp/${CLUSTER}/presence/client/eve`, forged('birth', { software: 'x', host: 'x', pid: 1, heartbeat_interval_ms: 250 }, 'eve', 'executor'), true);
    await publishAs(await eve(), `ucp/${CLUSTER}/presence/executor/eve`, forged('birth', { software: 'x', host: 'x', pid: 1, heartbeat_interval_ms: 250 }, 'eve', 'executor'), true);
    const caps = { cpu_cores: 64, free_cpu_capacity: 6_400, free_memory: 2 ** 40, free_disk_space: 2 ** 40, tags: ['genuine'], on_mains_power: true };
    const hb = await eve();
    for (let i = 0; i < 8; i++) await publishAs(hb, `ucp/${CLUSTER}/heartbeat/client/eve`, forged('heartbeat', { seq: i, uptime_ms: 1, rss_bytes: 1, load: 0, outbox_pending: 0, capabilities: caps, running_jobs: [], job_slots: 64 }, 'eve', 'executor'));
    await until('the broker to drop the fake executor\'s birth and heartbeats', async () => (await counter('br', 'rx_dropped_wrong_sender')) >= wrongSender + 9);
    const critical = ['crit-1', 'crit-2', 'crit-3'];
    for (const id of critical) await jobs.submit(spec(id, { priority: 'critical' }));
    const done = await jobs.wait(critical, { timeoutMs: 60_000 });
    for (const id of critical) expect(done.get(id)!.job.result?.executor, id).toBe('ex-1');

    expect(br.logs.slice(from).filter((l) => l.msg === 'peer down' && l.peer === 'ex-1')).toEqual([]);
    expect(ex1.logs.slice(exFrom).filter((l) => /lost the hub|dropped the connection/.test(l.msg))).toEqual([]);
    const nodes = await c.run(['nodes', '--json', '--wait', '800']);
    const list = JSON.parse(nodes.stdout) as Array<{ id: string; role: string; state: string }>;
    expect(list.find((n) => n.id === 'ex-1')).toMatchObject({ state: 'alive', role: 'executor' });
    expect(list.find((n) => n.id === 'eve')).toBeUndefined();
  }, 90_000);

  it('owning the metadata: sync and delegation only from brokers, a broker speaks only for itself, and not from the future', async () => {
    const fakeJob = { ...(await jobs.query('h-1')), job_id: 'fake-job', owner: 'victim', spec: spec('fake-job'), digest: 'x', after: [] };
    const change = (origin: string, hlc: [number, number], extra: object) => ({ origin, seq: 1, vc: { [origin]: 1 }, hlc, ...extra });
    const refused = await counter('br', 'rx_dropped_not_permitted');
    mallory.send('br', 'sync_delta', { changes: [{ table: 'jobs', key: 'fake-job', job: fakeJob, ...change('mallory', [Date.now(), 0], {}) }], versions: {}, complete: false });
    mallory.send('br', 'sync_delta', { changes: [{ table: 'names', key: 'victim/bin/echo.wasm', location: { store: 'mallory', size: 1, at: [Date.now(), 0] }, ...change('mallory', [Date.now(), 0], {}) }], versions: {}, complete: false });
    await expect(mallory.request('br', 'job_delegate', { job: fakeJob })).rejects.toThrow();
    await until('the broker to refuse all three', async () => (await counter('br', 'rx_dropped_not_permitted')) >= refused + 3);

    // A registered broker may push only its own changes, and none stamped far ahead of the receiver.
    const rogue = c.link('br-2', 'broker', { announce: true });
    await rogue.connect();
    await until('br to see br-2', async () => (await status('br')).peers.some((p) => p.id === 'br-2' && p.alive));
    const syncRefused = await counter('br', 'sync_changes_refused');
    const victimJob = await jobs.query('h-1');
    const stolen = { ...victimJob, state: 'succeeded' as const, broker: 'br-2', spec: spec('h-1'), digest: 'x', after: [] };
    rogue.send('br', 'sync_delta', { changes: [{ table: 'jobs', key: 'h-1', job: stolen, ...change('br', [Date.now() + 1_000, 0], {}), seq: 10_000_000 }], versions: {}, complete: false });
    rogue.send('br', 'sync_delta', { changes: [{ table: 'names', key: 'victim/bin/echo.wasm', location: { store: 'br-2', size: 1, at: [Date.now() + HOUR, 0] }, ...change('br-2', [Date.now() + HOUR, 0], {}) }], versions: {}, complete: false });
    await until('br to refuse both changes', async () => (await counter('br', 'sync_changes_refused')) >= syncRefused + 2);
    await rogue.stop();
    await expect(jobs.query('fake-job')).rejects.toThrow(RemoteError);
    expect(await jobs.query('h-1')).toMatchObject({ state: 'succeeded', broker: 'br', result: { executor: 'ex-1' } });
    const listed = await data.list('victim/bin');
    expect(listed.find((n) => n.name === 'victim/bin/echo.wasm')).toMatchObject({ store: 'ds' });
    // A client advertising room as if it were a datastore draws no data.
    const room = await eve();
    for (let i = 0; i < 6; i++) await publishAs(room, `ucp/${CLUSTER}/heartbeat/client/eve`, forged('heartbeat', { seq: i, uptime_ms: 1, rss_bytes: 1, load: 0, outbox_pending: 0, free_bytes: 2 ** 50 }, 'eve', 'client'));
    const put = await data.put('victim/new-data', new TextEncoder().encode('fresh'));
    expect(put.store).toBe('ds');
  }, 90_000);

  it('seeing others\' jobs: a client sees and lists only its own, an operator everyone\'s', async () => {
    const malloryJobs = new JobClient(mallory, undefined, new DataClient(mallory, 20_000));
    await expect(malloryJobs.query('h-1')).rejects.toThrow(/no job "h-1" is known/);
    expect((await malloryJobs.list()).items.map((j) => j.owner).filter((o) => o !== 'mallory')).toEqual([]);
    expect((await malloryJobs.list({ owner: 'victim' })).items.length).toBe(0);
    await expect(malloryJobs.remove({ jobId: 'h-1' })).rejects.toThrow(/submitted by victim/);
    await expect(malloryJobs.withdraw('h-1')).rejects.toThrow(/no job "h-1" is known/);
    const asOperator = await c.run(['jobs', '--owner', 'victim', '--json']);
    expect((JSON.parse(asOperator.stdout) as Array<{ id: string }>).map((j) => j.id)).toContain('h-1');
    expect(await counter('br', 'jobs_refused_hidden')).toBeGreaterThanOrEqual(1);
  }, 90_000);

  it('owning the data: the cluster versions every write, names have owners, and ucp run says so when its publishing did not take effect', async () => {
    const malloryData = new DataClient(mallory, 20_000);
    // Replacing the victim's module, deleting it.
    const notOwner = await counter('br', 'data_refused_not_owner');
    await expect(malloryData.put('victim/bin/echo.wasm', wasm('exit-code'))).rejects.toThrow(/owned by victim/);
    await expect(malloryData.delete({ name: 'victim/bin/echo.wasm' })).rejects.toThrow(/owned by victim/);
    await expect(malloryData.delete({ jobId: 'h-1' })).rejects.toThrow(/submitted by victim/);
    expect(await counter('br', 'data_refused_not_owner')).toBe(notOwner + 3);
    // A writer-chosen version (2^48), as puts carried it before: no such field any more, a bad message.
    const badBody = await counter('br', 'rx_dropped_bad_body');
    const raw = await eve();
    await publishAs(raw, `ucp/${CLUSTER}/inbox/br/client/eve`, forged('data_put', { name: 'victim/bin/echo.wasm', bytes: wasm('exit-code'), at: [2 ** 48, 0], writer: 'victim' } as unknown as BodyOf<'data_put'>, 'eve', 'client'));
    await until('the broker to drop the versioned put', async () => (await counter('br', 'rx_dropped_bad_body')) > badBody);
    // The stamp only a broker may add, stamped 2^48 in the victim's name with replace: refused with the reason.
    const stamp = { at: [2 ** 48, 0] as [number, number], writer: 'victim', owner: 'victim', replace: true };
    const writerVersion = await counter('br', 'data_refused_writer_version');
    await expect(mallory.request('br', 'data_put', { name: 'victim/bin/echo.wasm', bytes: wasm('exit-code'), stamp })).rejects.toThrow(/may not carry its own version/);
    await expect(mallory.request('br', 'data_delete', { name: 'victim/bin/echo.wasm', stamp })).rejects.toThrow(/may not carry its own version/);
    expect(await counter('br', 'data_refused_writer_version')).toBe(writerVersion + 2);
    // Straight to the datastore, which serves brokers only.
    const dsRefused = await counter('ds', 'rx_dropped_not_permitted');
    mallory.send('ds', 'data_delete', { name: 'victim/bin/echo.wasm', stamp });
    await until('the datastore to refuse mallory', async () => (await counter('ds', 'rx_dropped_not_permitted')) > dsRefused);
    // The owner's module is untouched and its own re-put is not "stale".
    expect(text((await data.get('victim/bin/echo.wasm')).bytes)).toBe(text(wasm('echo')));
    expect((await data.put('victim/bin/echo.wasm', wasm('echo'))).outcome).toMatch(/stored|unchanged/);
    await jobs.submit(spec('after-data'));
    const after = (await jobs.wait(['after-data'], { timeoutMs: 30_000 })).get('after-data')!;
    expect(text(unzipSync(await jobs.resultArchive(after))['out.txt']!)).toBe('hello from echo\n');

    // mallory claims the name a plan publishes its module under: `ucp run` (another user's) stops with that reason.
    await malloryData.put('shared/tool.wasm', wasm('exit-code'));
    const plan = join(c.dir, 'plan');
    mkdirSync(join(plan, 'wasm'), { recursive: true });
    copyFileSync(join(FIXTURES, 'echo.wasm'), join(plan, 'wasm', 'echo.wasm'));
    writeFileSync(join(plan, 'plan.toml'), ['[[jobs]]', '[jobs.metadata]', 'job_id = "planned"', 'wasm_module = "shared/tool.wasm"', 'results = ["out.txt"]', '[jobs.data]', '"shared/tool.wasm" = "wasm/echo.wasm"', ''].join('\n'));
    const run = await c.run(['run', join(plan, 'plan.toml'), '--results', join(c.dir, 'results')], 'planner');
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/shared\/tool\.wasm.*owned by mallory/);
    expect(readdirSync(c.dir)).not.toContain('results');
  }, 90_000);

  it('squatting a job tree: a job id whose tree holds another node\'s data is refused, so the job cannot take that data over', async () => {
    // The victim keeps data under a prefix that names no job; a job with that id would make the prefix
    // its submitter's tree, where the job's results go and its data is deleted with it.
    await data.put('squat/readings.csv', new TextEncoder().encode('t,v\n1,20\n'));
    const malloryData = new DataClient(mallory, 20_000);
    const malloryJobs = new JobClient(mallory, undefined, malloryData);
    const refused = await counter('br', 'jobs_refused_tree_taken');
    await expect(malloryJobs.submit(spec('squat', { results: [], named_results: { 'out.txt': 'squat/readings.csv' } }))).rejects.toThrow(/"squat\/readings.csv", which victim owns/);
    expect(await counter('br', 'jobs_refused_tree_taken')).toBe(refused + 1);
    await expect(malloryJobs.query('squat')).rejects.toThrow(/no job "squat" is known/);
    // The data is still the victim's: unchanged, and the victim still writes it; mallory still may not.
    expect(text((await data.get('squat/readings.csv')).bytes)).toBe('t,v\n1,20\n');
    await data.put('squat/readings.csv', new TextEncoder().encode('t,v\n2,21\n'));
    await expect(malloryData.put('squat/readings.csv', new TextEncoder().encode('x'))).rejects.toThrow(/owned by victim/);
    // A tree holding only the submitter's own data (inputs uploaded before the job) is the usual case.
    await malloryData.put('mal-own/input.txt', new TextEncoder().encode('mine'));
    const accepted = await malloryJobs.submit(spec('mal-own', { capabilities: { tags: ['nobody-offers-this'] } }));
    expect(accepted).toMatchObject({ created: true, job: { job_id: 'mal-own', owner: 'mallory' } });
    // Gone again, so the job flood below counts from zero.
    await malloryJobs.withdraw('mal-own');
    expect(await malloryJobs.remove({ jobId: 'mal-own' })).toBe(1);
    await malloryData.delete({ name: 'mal-own/input.txt' });
  }, 90_000);

  it('over-budget bytes: a client stores at most its budget, in one message or in chunks, and deleting frees it', async () => {
    const malloryData = new DataClient(mallory, 20_000);
    const used = (await data.list('mallory')).reduce((n, i) => n + i.size, 0);
    expect(used).toBe(0);
    const big = new Uint8Array(900_000).fill(7);
    expect((await malloryData.put('mallory/big', big)).outcome).toBe('stored');
    const refused = await counter('br', 'data_refused_budget');
    // Chunked: refused as the chunks arrive, long before the whole object was sent.
    await expect(malloryData.put('mallory/more', new Uint8Array(400_000).fill(8))).rejects.toThrow(/budget \(budgets\.max_bytes_per_client = 1048576\)/);
    await expect(malloryData.put('mallory/small', new Uint8Array(200_000).fill(9))).rejects.toThrow(/budget/);
    await expect(malloryData.put('mallory/small', new Uint8Array(200_000).fill(9))).rejects.toThrow(/budget/);
    expect(await counter('br', 'data_refused_budget')).toBe(refused + 3);
    expect((await data.list('mallory')).map((i) => i.name)).toEqual(['mallory/big']);
    // Replacing its own name with something no larger is fine; deleting gives the bytes back.
    expect((await malloryData.put('mallory/big', new Uint8Array(800_000).fill(1))).outcome).toBe('stored');
    await malloryData.delete({ name: 'mallory/big' });
    expect((await malloryData.put('mallory/more', new Uint8Array(400_000).fill(8))).outcome).toBe('stored');
    // Others are not held to mallory's budget.
    expect((await data.put('victim/fine', new Uint8Array(300_000).fill(3))).outcome).toBe('stored');
    await malloryData.delete({ name: 'mallory/more' });
    // Writes stop at the budget; a job's results are published whatever it (the job has run), so a client
    // whose results took it past its budget starts no more jobs.
    // What the brokers' index counts as mallory's, the same figure its budget is checked against.
    const mallorysBytes = async () => (await data.list()).filter((i) => i.owner === 'mallory').reduce((n, i) => n + i.size, 0);
    const owned = await mallorysBytes();
    expect((await malloryData.put('mallory/full', new Uint8Array(BYTES_BUDGET - owned).fill(4))).outcome).toBe('stored');
    const malloryJobs = new JobClient(mallory, undefined, malloryData);
    await malloryJobs.submit(spec('mal-at-budget'));
    expect((await malloryJobs.wait(['mal-at-budget'], { timeoutMs: 30_000 })).get('mal-at-budget')!.job.state).toBe('succeeded');
    const over = await mallorysBytes();
    expect(over).toBeGreaterThan(BYTES_BUDGET);
    const jobsRefused = await counter('br', 'jobs_refused_budget');
    await expect(malloryJobs.submit(spec('mal-over-bytes'))).rejects.toThrow(new RegExp(`owns ${over} bytes of named data, more than its budget`));
    expect(await counter('br', 'jobs_refused_budget')).toBe(jobsRefused + 1);
    // Gone again, so the job flood below counts from zero.
    await malloryData.delete({ name: 'mallory/full' });
    expect(await malloryJobs.remove({ jobId: 'mal-at-budget' })).toBe(1);
  }, 90_000);

  it('poisoning clocks: a far-ahead HLC is not adopted, made-up brokers stay out of every clock, and a job flood stops at the budget', async () => {
    const hlcRefused = await counter('br', 'hlc_refused');
    const raw = await eve();
    await publishAs(raw, `ucp/${CLUSTER}/inbox/br/client/eve`, forged('ping', {}, 'eve', 'client', { hlc: { wall: Date.now() + 23 * HOUR, logical: 0 } }));
    const ghosts: Record<string, number> = {};
    for (let i = 0; i < 1_023; i++) ghosts[`ghost-broker-${i}`] = 1 + i;
    await publishAs(raw, `ucp/${CLUSTER}/inbox/br/client/eve`, forged('ping', {}, 'eve', 'client', { vc: ghosts }));
    await until('br to refuse the HLC', async () => (await counter('br', 'hlc_refused')) > hlcRefused);
    await until('br to leave out the made-up brokers', async () => (await counter('br', 'vc_entries_ignored')) > 0);
    const pong = await victim.link.request('br', 'ping', {});
    expect(pong.hlc.wall - Date.now()).toBeLessThan(5 * 60_000);
    expect(Object.keys(pong.vc).every((id) => id === 'br' || id === 'br-2')).toBe(true);
    expect(Object.keys(victim.link.clock()).length).toBeLessThanOrEqual(2);

    // A flood of jobs from one client stops at its budget; the broker keeps answering.
    const malloryJobs = new JobClient(mallory, undefined, new DataClient(mallory, 20_000));
    let refusedAt: number | undefined;
    for (let i = 0; i < JOB_BUDGET + 10 && refusedAt === undefined; i++) {
      try {
        await malloryJobs.submit(spec(`flood-${i}`, { capabilities: { tags: ['nobody-offers-this'] } }));
      } catch (err) {
        expect((err as Error).message).toMatch(/budget/);
        refusedAt = i;
      }
    }
    expect(refusedAt).toBe(JOB_BUDGET);
    expect(await counter('br', 'jobs_refused_budget')).toBeGreaterThanOrEqual(1);
    const t0 = performance.now();
    await victim.link.request('br', 'ping', {});
    expect(performance.now() - t0).toBeLessThan(2_000);
    // The victim is not affected by mallory's budget, and the operator clears mallory's jobs.
    await jobs.submit(spec('not-flooded'));
    const cleared = await c.run(['jobs', '--owner', 'mallory', '--json']);
    expect((JSON.parse(cleared.stdout) as unknown[]).length).toBe(JOB_BUDGET);
    const removed = await c.run(['remove', '--owner', 'mallory']);
    expect(removed.code, removed.stderr).toBe(0);
    await until('mallory\'s jobs to be gone', async () => (await malloryJobs.list()).items.filter((j) => j.owner === 'mallory').length === 0);
    await malloryJobs.submit(spec('flood-after-cleanup', { capabilities: { tags: ['nobody-offers-this'] } }));
  }, 90_000);

  it('forged acks and retained floods: an ack counts only from the receiver; retained messages stay small and on presence', async () => {
    const id = await victim.link.sendDurable('ghost-unit', 'notice', { severity: 'info', text: 'for a unit that does not exist' });
    expect(victim.link.outboxPending).toBe(1);
    const raw = await eve();
    await publishAs(raw, `ucp/${CLUSTER}/inbox/victim/client/eve`, forged('ack', { of: id }, 'ghost-unit', 'client'));
    await publishAs(raw, `ucp/${CLUSTER}/inbox/victim/client/eve`, forged('ack', { of: id }, 'eve', 'client'));
    await until('the victim to drop both', () => victim.link.counters.get('rx_dropped_wrong_sender') >= 1 && victim.link.counters.get('acks_unmatched') >= 1);
    expect(victim.link.outboxPending).toBe(1);
    expect(victim.link.pendingMessages().map((m) => m.id)).toEqual([id]);

    const rssBefore = rss(c.hub.pid);
    const tooLarge = await hubCount('publish_refused_too_large');
    const retainRefused = await hubCount('publish_refused_retain');
    const big = Buffer.alloc(8 << 20, 0x41);
    for (let i = 0; i < 10; i++) await publishAs(await eve(), `ucp/${CLUSTER}/presence/client/eve`, big, true);
    await publishAs(await eve(), `ucp/${CLUSTER}/inbox/br/client/eve`, Buffer.alloc(2_000, 0x42), true);
    if (embedded) {
      await until('the hub to refuse the floods', async () => (await counter(c.hubNode, 'publish_refused_too_large')) >= tooLarge + 10 && (await counter(c.hubNode, 'publish_refused_retain')) > retainRefused);
    } else {
      await until('Mosquitto to refuse the oversized packets', () => c.hubLog(/oversize packet/).length >= 10);
    }
    expect(rss(c.hub.pid) - rssBefore).toBeLessThan(50 << 20);
  }, 90_000);

  it('guessing passwords: an unregistered node cannot log in, every guess is refused, and the embedded hub slows guessing to a trickle', async () => {
    await expect(c.mqtt({ clientId: 'ghost' })).rejects.toThrow(/Not authorized|Bad username or password/);
    await expect(c.mqtt({ clientId: 'ghost', username: 'ghost', password: 'x' })).rejects.toThrow(/Not authorized|Bad username or password/);
    // Guess as fast as the hub answers, until it has refused a few guesses unchecked (or 40 s passed).
    let checked = 0;
    let limited = 0;
    const started = Date.now();
    for (let i = 0; limited < 3 && Date.now() - started < 40_000; i++) {
      try {
        await c.mqtt({ clientId: 'br', username: 'br', password: `guess-${i}` });
        throw new Error('a guess got in');
      } catch (err) {
        if (/Bad username or password/i.test((err as Error).message)) checked++;
        else if (/Not authorized|not authorised/i.test((err as Error).message)) limited++;
        else throw err;
      }
    }
    const seconds = (Date.now() - started) / 1_000;
    if (embedded) {
      // Five free guesses, then one per wait, and the wait doubles from 1 s: within 40 s at most 5 + 6.
      expect(limited).toBe(3);
      expect(checked).toBeLessThanOrEqual(5 + Math.ceil(Math.log2(seconds + 1)));
      const hub = await c.counters(c.hubNode);
      expect(hub.login_refused_rate_limited).toBeGreaterThanOrEqual(3);
      expect(hub.login_refused_bad_password).toBeGreaterThanOrEqual(checked);
    } else {
      // Mosquitto checks every guess (it has no rate limit) and refuses each.
      expect(checked + limited).toBeGreaterThan(0);
      expect(c.hubLog(/not authorised/).length).toBeGreaterThan(0);
    }
    // The broker itself was never disturbed, and every refusal above is visible in `ucp status`.
    const brCounters = await c.counters('br');
    for (const name of ['rx_dropped_not_permitted', 'rx_dropped_wrong_sender', 'results_unauthorized', 'results_conflicting', 'sync_changes_refused', 'hlc_refused', 'vc_entries_ignored', 'jobs_refused_budget', 'jobs_refused_tree_taken', 'data_refused_not_owner', 'data_refused_writer_version', 'data_refused_budget', 'rx_dropped_bad_body']) {
      expect(brCounters[name], name).toBeGreaterThan(0);
    }
    const exCounters = await c.counters('ex-1');
    for (const name of ['rx_dropped_not_permitted', 'rx_dropped_wrong_sender', 'rx_unmatched_replies']) expect(exCounters[name], name).toBeGreaterThan(0);
    if (embedded) {
      const hub = await c.counters(c.hubNode);
      for (const name of ['login_refused_client_id', 'publish_refused_topic', 'publish_refused_retain', 'publish_refused_too_large', 'subscribe_refused']) expect(hub[name], name).toBeGreaterThan(0);
    }
  }, 90_000);
});

function rss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1_024;
}
