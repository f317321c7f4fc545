import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { EmbeddedHub } from '../../src/hub/index.js';
import { createLogger } from '../../src/log/index.js';
import { DEFAULT_LIMITS, encode, encodeBundle, PROTOCOL_VERSION, type Envelope, type Role } from '../../src/protocol/index.js';
import { NodeStore } from '../../src/store/index.js';
import { NodeLink, TransportError, type LinkTiming } from '../../src/transport/index.js';
import { freePort, Proc, removeDir, ROOT, startHubProcess, tempDir } from '../helpers/processes.js';
import { TcpLink } from '../helpers/tcp-link.js';

const logger = createLogger({ level: 'silent', format: 'json' });
const TIMING: LinkTiming = {
  keepaliveS: 5,
  connectTimeoutMs: 2_000,
  reconnectMinMs: 50,
  reconnectMaxMs: 500,
  requestTimeoutMs: 1_000,
  dedupWindow: 1_000,
  dedupTtlS: 3_600,
  retryInitialMs: 40,
  retryMaxMs: 200,
  heartbeatIntervalMs: 200,
  deadAfterMs: 1_000,
};

async function until(what: string, ok: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The link's delivery and robustness guarantees, with nodes in this process over a real embedded hub and
 * real LMDB: handlers that fail or are slow, forged acknowledgements, poisoned clocks, a vanishing hub.
 */
describe('node link guarantees', () => {
  let dir: string;
  let hub: EmbeddedHub;
  const links: NodeLink[] = [];
  const stores: NodeStore[] = [];

  afterEach(async () => {
    for (const l of links.splice(0)) await l.stop();
    for (const s of stores.splice(0)) await s.close();
    await hub?.stop().catch(() => undefined);
    removeDir(dir);
  });

  async function setup(): Promise<void> {
    dir = tempDir();
    hub = await EmbeddedHub.start({ host: '127.0.0.1', port: 0, logger });
  }

  function openStore(id: string): NodeStore {
    const store = NodeStore.open({ dir: join(dir, id), nodeId: id });
    stores.push(store);
    return store;
  }

  function create(id: string, role: Role = 'executor', store: NodeStore | undefined = openStore(id), hubUrl = hub.url, timing = TIMING): NodeLink {
    const link = NodeLink.create({
      nodeId: id,
      role,
      cluster: 'lt',
      hubUrl,
      logger,
      limits: DEFAULT_LIMITS,
      timing,
      maxClockOffsetMs: 86_400_000,
      announce: true,
      watchPresence: true,
      ...(store !== undefined ? { store } : {}),
    });
    links.push(link);
    return link;
  }

  it('a copy of a durable message that arrives while the first is being handled is not acknowledged early', async () => {
    await setup();
    const receiver = create('recv');
    let attempts = 0;
    let handled = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    receiver.on('notice', async () => {
      attempts++;
      if (attempts === 1) {
        await gate;
        throw new Error('disk full');
      }
      handled++;
    });
    await receiver.connect();
    const sender = create('send');
    await sender.connect();

    const id = await sender.sendDurable('recv', 'notice', { severity: 'info', text: 'hold on' });
    let delivered = false;
    void sender.delivered(id).then(() => (delivered = true));
    // Retries every ~40 ms reach the receiver while the first copy is stuck in its handler.
    await until('retries to arrive', () => receiver.counters.get('rx_duplicates') >= 3);
    expect(delivered).toBe(false);
    expect(sender.outboxPending).toBe(1);

    release();
    await until('delivery after the failed first attempt', () => delivered);
    expect(attempts).toBe(2);
    expect(handled).toBe(1);
    expect(sender.outboxPending).toBe(0);
  });

  it('a handler that recognises redeliveries itself costs no dedup record on disk; any other handler does', async () => {
    await setup();
    const plainStore = openStore('plain');
    const selfStore = openStore('self');
    const plain = create('plain', 'executor', plainStore);
    const self = create('self', 'executor', selfStore);
    const seen = { plain: 0, self: 0 };
    plain.on('notice', () => void seen.plain++);
    self.on('notice', () => void seen.self++, { recognisesRedelivery: true });
    await plain.connect();
    await self.connect();
    const sender = create('send');
    await sender.connect();
    const toPlain = await sender.sendDurable('plain', 'notice', { severity: 'info', text: 'a' });
    const toSelf = await sender.sendDurable('self', 'notice', { severity: 'info', text: 'b' });
    await Promise.all([sender.delivered(toPlain), sender.delivered(toSelf)]);
    expect(seen).toEqual({ plain: 1, self: 1 });
    await plainStore.durable();
    await selfStore.durable();
    expect(plainStore.table<number>('transport_seen').get(`send\u0000${toPlain}`)).toBeTypeOf('number');
    expect([...selfStore.table<number>('transport_seen').getKeys()]).toEqual([]);
  });

  it('a handler that remembers a message as it writes shares its commit with the link\'s record, which a failure removes again', async () => {
    await setup();
    const store = openStore('atonce');
    const receiver = create('atonce', 'executor', store);
    const table = store.table<number>('writes');
    let calls = 0;
    receiver.on('notice', async (msg, delivery) => {
      calls++;
      const written = table.put(msg.id, calls);
      delivery.remember();
      await written;
      // The first attempt fails after its write: the message must be handled again when resent.
      if (calls === 1) throw new Error('disk full');
    });
    await receiver.connect();
    const sender = create('send');
    await sender.connect();
    const id = await sender.sendDurable('atonce', 'notice', { severity: 'info', text: 'twice' });
    await sender.delivered(id);
    expect(calls).toBe(2);
    await store.durable();
    expect(store.table<number>('transport_seen').get(`send\u0000${id}`)).toBeTypeOf('number');
    expect(table.get(id)).toBe(2);
  });

  it('a durable answer the handler marks as the acknowledgement replaces the link\'s own; without the mark an ack still follows', async () => {
    await setup();
    // No retry within the test: a copy resent while the first is being handled is not acknowledged, one
    // resent after it is, so with retries the count of acks the receiver sends would depend on the load.
    const timing = { ...TIMING, retryInitialMs: 30_000, retryMaxMs: 30_000 };
    const receiverStore = openStore('answering');
    const receiver = create('answering', 'executor', receiverStore, hub.url, timing);
    const sender = create('asking', 'executor', openStore('asking'), hub.url, timing);
    for (const mark of [true, false]) {
      receiver.on('notice', async (msg, delivery) => {
        const answer = receiver.sendDurableNow(msg.from, 'notice', { severity: 'info', text: `re ${msg.id}` });
        delivery.remember();
        if (mark) delivery.answered();
        await answer.stored;
      });
      const answersSeen: string[] = [];
      sender.on('notice', (msg) => {
        const of = msg.body.text.slice(3);
        answersSeen.push(of);
        expect(sender.acknowledgedBy(of, msg.from)).toBe(true);
        // Someone other than the receiver cannot acknowledge it.
        expect(sender.acknowledgedBy(of, 'someone-else')).toBe(false);
      });
      if (mark) {
        // The sender resends whatever it owes a peer the moment it sees the peer come up: connected and
        // seen before the first message, so that no copy is resent.
        let receiverUp = false;
        sender.onPresence((event) => void (receiverUp ||= event.type === 'up' && event.peer.id === 'answering'));
        await receiver.connect();
        await sender.connect();
        await until('the sender to see the receiver', () => receiverUp);
      }
      const unmatched = sender.counters.get('acks_unmatched');
      const duplicates = receiver.counters.get('rx_duplicates');
      const id = await sender.sendDurable('answering', 'notice', { severity: 'info', text: String(mark) });
      await sender.delivered(id);
      expect(answersSeen).toEqual([id]);
      // The answer acknowledged the message before the receiver settled it: the receiver sends its own ack,
      // if any, only once its record of the message commits, which under load can take longer than the wait.
      await until('the receiver to record the message', () => receiverStore.table<number>('transport_seen').get(`asking\u0000${id}`) !== undefined);
      if (!mark) await until('the receiver\'s own ack', () => sender.counters.get('acks_unmatched') > unmatched);
      // That ack finds the message already acknowledged.
      await new Promise((r) => setTimeout(r, 300));
      expect(receiver.counters.get('rx_duplicates') - duplicates).toBe(0);
      expect(sender.counters.get('acks_unmatched') - unmatched).toBe(mark ? 0 : 1);
      expect(sender.outboxPending).toBe(0);
    }
  });

  it('a durable message of a kind nobody handles yet is kept and delivered once a handler exists', async () => {
    await setup();
    const receiver = create('recv');
    await receiver.connect();
    const sender = create('send');
    await sender.connect();
    const id = await sender.sendDurable('recv', 'notice', { severity: 'warning', text: 'later' });
    await until('a refused attempt', () => receiver.counters.get('rx_unhandled_kind') >= 1);
    await new Promise((r) => setTimeout(r, 150));
    expect(sender.outboxPending).toBe(1);

    const got: string[] = [];
    receiver.on('notice', (msg) => void got.push(msg.body.text));
    await sender.delivered(id);
    expect(got).toEqual(['later']);
  });

  it('a message owed to a node seen down waits for it instead of being resent, and goes the moment it is back', async () => {
    await setup();
    const receiverStore = openStore('gone');
    let receiver = create('gone', 'datastore', receiverStore);
    await receiver.connect();
    const sender = create('owes');
    await sender.connect();
    await until('the sender to see the receiver', () => sender.peers.get('gone')?.alive === true);
    await receiver.stop();
    links.splice(links.indexOf(receiver), 1);
    await until('the sender to see the receiver leave', () => sender.peers.get('gone')?.alive === false);
    const id = await sender.sendDurable('gone', 'notice', { severity: 'info', text: 'for later' });
    const sent = sender.counters.get('outbox_sends');
    // Ten first backoffs, in which the old tick resent it five times.
    await new Promise((r) => setTimeout(r, TIMING.retryInitialMs * 10));
    expect(sender.counters.get('outbox_sends') - sent).toBe(0);
    expect(sender.outboxPending).toBe(1);

    receiver = create('gone', 'datastore', receiverStore);
    const got: string[] = [];
    receiver.on('notice', (msg) => void got.push(msg.body.text));
    await receiver.connect();
    // Only the receiver's birth can send it now: no retry is armed for a node seen down.
    await sender.delivered(id);
    expect(got).toEqual(['for later']);
  });

  it('a request to a node that goes down fails at once with peer_down, not at the end of its timeout', async () => {
    await setup();
    const store = create('silent-store', 'datastore');
    const asked: string[] = [];
    // Takes the request in and never answers it, as a datastore that is about to vanish would.
    store.on('data_get', (msg) => void asked.push(msg.body.name));
    await store.connect();
    const asker = create('asker', 'broker');
    await asker.connect();
    await until('the asker to see the store', () => asker.peers.get('silent-store')?.alive === true);
    const started = performance.now();
    const answer = asker.request('silent-store', 'data_get', { name: 'field/tanks/t1/level', prefix: false, limit: 1 }, 20_000).then(
      () => 'answered',
      (err: TransportError) => err,
    );
    await until('the store to take the request', () => asked.length === 1);
    await store.stop();
    links.splice(links.indexOf(store), 1);
    const err = await answer;
    expect(err).toBeInstanceOf(TransportError);
    expect((err as TransportError).code).toBe('peer_down');
    expect((err as TransportError).message).toBe('silent-store went down (graceful) before it answered data_get');
    // Well before the 20 s it was given.
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(asker.counters.get('requests_failed_peer_down')).toBe(1);
  });

  it('a node cut off from the hub holds nobody\'s silence against them; a peer silent once it hears again is declared dead', async () => {
    await setup();
    const hubPort = Number(new URL(hub.url).port);
    const watcherRadio = new TcpLink();
    const quietRadio = new TcpLink();
    try {
      const watcher = create('watcher', 'broker', openStore('watcher'), `mqtt://127.0.0.1:${await watcherRadio.start(hubPort)}`);
      const talker = create('talker', 'datastore');
      const quiet = create('quiet', 'executor', openStore('quiet'), `mqtt://127.0.0.1:${await quietRadio.start(hubPort)}`);
      for (const l of [watcher, talker, quiet]) await l.connect();
      await until('the watcher to see both', () => watcher.peers.get('talker')?.alive === true && watcher.peers.get('quiet')?.alive === true);
      const downs: Array<{ peer: string; reason: string; at: number }> = [];
      watcher.onPresence((e) => {
        if (e.type === 'down') downs.push({ peer: e.peer.id, reason: e.reason, at: performance.now() });
      });

      // The watcher loses the hub for 2.5 dead_after_ms; meanwhile one peer goes silent for good.
      watcherRadio.partition();
      quietRadio.freeze();
      await until('the watcher to notice', () => !watcher.connected);
      await new Promise((r) => setTimeout(r, TIMING.deadAfterMs * 2.5));
      expect(downs).toEqual([]);

      watcherRadio.heal();
      await until('the watcher to hear the hub again', () => watcher.connected);
      const heardAt = performance.now();
      await until('the silent peer to be declared dead', () => downs.length > 0, TIMING.deadAfterMs * 4);
      await new Promise((r) => setTimeout(r, TIMING.deadAfterMs));
      // Only the peer that stayed silent for a whole dead_after_ms the watcher could hear (less a little for
      // timer granularity); the one that talked on was never taken for dead.
      expect(downs.map(({ peer, reason }) => ({ peer, reason }))).toEqual([{ peer: 'quiet', reason: 'heartbeat_timeout' }]);
      expect(downs[0]!.at - heardAt).toBeGreaterThanOrEqual(TIMING.deadAfterMs - 50);
      expect(watcher.peers.get('talker')?.alive).toBe(true);
    } finally {
      await watcherRadio.stop();
      await quietRadio.stop();
    }
  });

  it('after a hub restart, a request sent before its receiver was back is sent again when it is, not left to time out', async () => {
    await setup();
    const port = await freePort();
    let hubProc = await startHubProcess(port);
    const url = `mqtt://127.0.0.1:${port}`;
    try {
      // The asker finds the hub again at once, the receiver about 1.5 s later.
      const asker = create('asker', 'broker', openStore('asker'), url, { ...TIMING, reconnectMinMs: 50, reconnectMaxMs: 100, deadAfterMs: 10_000 });
      const receiver = create('late', 'datastore', openStore('late'), url, { ...TIMING, reconnectMinMs: 1_500, reconnectMaxMs: 1_500 });
      await asker.connect();
      await receiver.connect();
      await until('the asker to see the receiver', () => asker.peers.get('late')?.alive === true);
      hubProc.kill('SIGKILL');
      await hubProc.exited;
      await until('both to notice', () => !asker.connected && !receiver.connected);
      hubProc = await startHubProcess(port);
      await until('the asker to be back', () => asker.connected, 10_000);
      expect(receiver.connected).toBe(false);

      const started = performance.now();
      const reply = await asker.request('late', 'ping', { data: new Uint8Array([7]) }, 20_000);
      expect(reply.kind).toBe('pong');
      // Answered once the receiver was back, well before the 20 s the request was given.
      expect(performance.now() - started).toBeLessThan(8_000);
      expect(asker.counters.get('requests_resent')).toBeGreaterThanOrEqual(1);
      // One copy handled; the other, if it arrived, dropped as a duplicate and never answered twice.
      await new Promise((r) => setTimeout(r, 300));
      expect(asker.counters.get('rx_unmatched_replies')).toBe(0);
    } finally {
      await hubProc.stop();
    }
  });

  it('a request made while the hub is away goes out once the link is back, not at the end of its timeout', async () => {
    await setup();
    const port = await freePort();
    let hubProc = await startHubProcess(port);
    const url = `mqtt://127.0.0.1:${port}`;
    try {
      const asker = create('asker', 'broker', openStore('asker'), url, { ...TIMING, deadAfterMs: 10_000 });
      const receiver = create('answers', 'datastore', openStore('answers'), url);
      await asker.connect();
      await receiver.connect();
      await until('the asker to see the receiver', () => asker.peers.get('answers')?.alive === true);
      hubProc.kill('SIGKILL');
      await hubProc.exited;
      await until('the asker to notice', () => !asker.connected);
      const reply = asker.request('answers', 'ping', {}, 20_000);
      expect(asker.counters.get('tx_dropped_offline')).toBeGreaterThanOrEqual(1);
      const started = performance.now();
      hubProc = await startHubProcess(port);
      expect((await reply).kind).toBe('pong');
      expect(performance.now() - started).toBeLessThan(8_000);
    } finally {
      await hubProc.stop();
    }
  });

  it('a reply that went out while its requester was away from the hub reaches it when the request comes again', async () => {
    await setup();
    const radio = new TcpLink();
    try {
      const asker = create('asker', 'broker', openStore('asker'), `mqtt://127.0.0.1:${await radio.start(Number(new URL(hub.url).port))}`);
      const receiver = create('slow-store', 'datastore');
      let handled = 0;
      receiver.on('data_get', async (msg) => {
        handled++;
        await new Promise((r) => setTimeout(r, 300));
        receiver.reply(msg, 'data_items', { items: [] });
      });
      await asker.connect();
      await receiver.connect();
      await until('the asker to see the receiver', () => asker.peers.get('slow-store')?.alive === true);

      const started = performance.now();
      const reply = asker.request('slow-store', 'data_get', { name: 'field/tanks/t1/level', prefix: false, limit: 1 }, 20_000);
      await until('the receiver to take the request', () => handled === 1);
      // The asker loses the hub while the answer is on its way, and is back after it went out.
      radio.partition();
      await new Promise((r) => setTimeout(r, 600));
      radio.heal();
      expect((await reply).kind).toBe('data_items');
      expect(performance.now() - started).toBeLessThan(8_000);
      // Answered again from what was sent, not handled twice.
      expect(handled).toBe(1);
      expect(receiver.counters.get('replies_resent')).toBe(1);
    } finally {
      await radio.stop();
    }
  });

  it('a broker, watching every heartbeat, hears the live birth of a node that connects after it', async () => {
    await setup();
    const broker = create('watcher', 'broker');
    await broker.connect();
    for (const id of ['late-1', 'late-2', 'late-3']) await create(id, 'datastore').connect();
    // A heartbeat proves a node alive too; only its birth carries what it announced.
    await until('the broker to see the three nodes', () => ['late-1', 'late-2', 'late-3'].every((id) => broker.peers.get(id)?.alive === true));
    await until('their births to reach the broker', () => ['late-1', 'late-2', 'late-3'].every((id) => broker.peers.get(id)?.birth !== undefined), 2_000);
    expect(broker.peers.get('late-2')?.birth?.heartbeat_interval_ms).toBe(TIMING.heartbeatIntervalMs);
  });

  it('an acknowledgement from anyone but the receiver is ignored', async () => {
    await setup();
    const sender = create('send');
    await sender.connect();
    const forger = create('forger', 'client', undefined);
    await forger.connect();
    // The receiver does not exist, so only the forged ack could ever clear the message.
    const id = await sender.sendDurable('absent', 'notice', { severity: 'info', text: 'x' });
    forger.send('send', 'ack', { of: id });
    await until('the forged ack to arrive', () => sender.counters.get('acks_unmatched') === 1);
    expect(sender.outboxPending).toBe(1);
  });

  it('one poisoned message cannot push a broker\'s clocks past what its peers accept', async () => {
    await setup();
    const broker = create('b1', 'broker');
    await broker.connect();
    const peer = create('peer');
    await peer.connect();
    const forged: Envelope<'ping'> = {
      v: PROTOCOL_VERSION,
      kind: 'ping',
      id: 'x.1',
      from: 'mallory',
      role: 'client',
      inc: 1,
      vc: { b1: 2 ** 48, other: 7 },
      hlc: { wall: Date.now() + 60_000, logical: 2 ** 32 },
      body: {},
    };
    const mallory = create('mallory', 'client', undefined);
    await mallory.connect();
    // Published raw, the way a hostile device would, bypassing mallory's own clock stamping.
    await (mallory as unknown as { hub: { client: { publishAsync(t: string, p: Buffer, o: object): Promise<unknown> } } }).hub.client.publishAsync(
      broker.topics.inbox('b1', 'client', 'mallory'),
      encode(forged),
      { qos: 1 },
    );
    await until('the forged ping to be answered', () => broker.counters.get('tx_messages') > 0 && broker.counters.get('vc_refused') === 1);
    // Both clocks are refused, each counted: the vector clock claims the broker's own future, the HLC
    // carries an absurd logical counter.
    expect(broker.counters.get('hlc_refused')).toBe(1);
    expect(broker.clock().b1 ?? 0).toBeLessThan(2 ** 48);
    expect(broker.now().logical).toBeLessThan(2 ** 24);
    // The broker still speaks in a way its peers accept.
    const reply = await peer.request('b1', 'ping', {});
    expect(reply.kind).toBe('pong');
    expect(peer.counters.get('rx_dropped_bad_envelope')).toBe(0);
  });

  it('what one turn sends to one node travels as one bundle, and each envelope in it is still checked', async () => {
    await setup();
    const broker = create('b1', 'broker');
    const client = create('c1', 'client');
    await broker.connect();
    await client.connect();
    await until('each to see the other', () => broker.peers.get('c1')?.alive === true && client.peers.get('b1')?.alive === true);
    const sentBefore = client.counters.get('tx_messages');
    const receivedBefore = broker.counters.get('rx_messages');
    // 200 requests in one turn: one publish from the client, and the replies, sent in one turn too, one back.
    const replies = await Promise.all(Array.from({ length: 200 }, () => client.request('b1', 'ping', {})));
    expect(replies.every((r) => r.kind === 'pong')).toBe(true);
    expect(client.counters.get('tx_messages') - sentBefore).toBe(1);
    expect(broker.counters.get('rx_messages') - receivedBefore).toBe(1);
    expect(broker.counters.get('rx_bundled')).toBe(200);
    expect(client.counters.get('rx_bundled')).toBe(200);

    // A hostile publisher's bundle: its own ping is answered; an envelope posing as someone else and one
    // that is not an envelope are dropped and counted, each on its own.
    const mallory = create('mallory', 'client', undefined);
    await mallory.connect();
    const raw = (mallory as unknown as { hub: { client: { publishAsync(t: string, p: Buffer, o: object): Promise<unknown> } } }).hub.client;
    const stamp: Omit<Envelope<'ping'>, 'kind' | 'id' | 'from'> = { v: PROTOCOL_VERSION, role: 'client', inc: 1, vc: {}, hlc: { wall: Date.now(), logical: 0 }, body: {} };
    const own: Envelope<'ping'> = { ...stamp, kind: 'ping', id: 'm.1', from: 'mallory' };
    const posing: Envelope<'ping'> = { ...stamp, kind: 'ping', id: 'm.2', from: 'c1' };
    const broken = encode({ ...stamp, kind: 'notice', id: 'm.3', from: 'mallory', body: { severity: 'loud', text: 'x' } } as unknown as Envelope<'notice'>);
    const answered = mallory.counters.get('rx_messages');
    await raw.publishAsync(broker.topics.inbox('b1', 'client', 'mallory'), encodeBundle([encode(own), encode(posing), broken]), { qos: 1 });
    await until('the bundle to be handled', () => broker.counters.get('rx_dropped_wrong_sender') === 1);
    await until('mallory\'s own ping to be answered', () => mallory.counters.get('rx_messages') > answered);
    expect(broker.counters.get('rx_dropped_bad_body')).toBe(1);
    // Bundles belong in inboxes only: one on a heartbeat topic is dropped as a whole.
    await raw.publishAsync(broker.topics.heartbeat('client', 'mallory'), encodeBundle([encode(own)]), { qos: 1 });
    await until('the heartbeat bundle to be dropped', () => broker.counters.get('rx_dropped_wrong_topic') === 1);
    expect((await client.request('b1', 'ping', {})).kind).toBe('pong');
  });

  it('a broker\'s own clock counter never goes backwards across a restart', async () => {
    await setup();
    const store = NodeStore.open({ dir: join(dir, 'b1'), nodeId: 'b1' });
    const first = create('b1', 'broker', store);
    await first.connect();
    const before = first.clock().b1 ?? 0;
    expect(before).toBeGreaterThan(0);
    await first.stop();
    links.splice(links.indexOf(first), 1);
    await store.close();

    const again = create('b1', 'broker', openStore('b1'));
    await again.connect();
    expect(again.clock().b1 ?? 0).toBeGreaterThan(before);
  });

  it('a link stopped before it ever connected rejects connect() and pending deliveries instead of hanging', async () => {
    await setup();
    const port = await freePort();
    const node = create('lonely', 'client', openStore('lonely'), `mqtt://127.0.0.1:${port}`);
    const connecting = node.connect();
    const id = await node.sendDurable('someone', 'notice', { severity: 'info', text: 'kept for later' });
    const delivery = node.delivered(id);
    await node.stop();
    links.splice(links.indexOf(node), 1);
    await expect(connecting).rejects.toThrow(/stopped before it connected/);
    await expect(delivery).rejects.toThrow(/stays in the outbox/);
    expect(node.outboxPending).toBe(1);
  });

  it('a node can send requests and durable messages to itself', async () => {
    await setup();
    const node = create('solo');
    const got: string[] = [];
    node.on('notice', (msg) => void got.push(msg.body.text));
    await node.connect();
    expect((await node.request('solo', 'ping', {})).kind).toBe('pong');
    await node.delivered(await node.sendDurable('solo', 'notice', { severity: 'info', text: 'note to self' }));
    expect(got).toEqual(['note to self']);
  });

  it('a message never leaves a node before the writes made ahead of it are committed, even with the turn\'s commit still to come', async () => {
    await setup();
    const reader = create('reader', 'client');
    let writer: Proc | undefined;
    const heard: string[] = [];
    reader.on('notice', (msg) => {
      heard.push(msg.body.text);
      // Killed the moment its word arrives: what it said must be on its disk by then.
      if (msg.body.text === 'fact stored') writer?.kill('SIGKILL');
    });
    await reader.connect();
    const dist = (path: string) => JSON.stringify(pathToFileURL(join(ROOT, 'dist', 'src', path)).href);
    // One turn: a first message queues the turn's publish; then a slow step is queued; then a write, and a
    // message that depends on it, which leaves with the first. The turn's own commit would come only after
    // the slow step: the publish must commit first.
    const script = `
      import { NodeStore } from ${dist('store/index.js')};
      import { NodeLink } from ${dist('transport/index.js')};
      import { createLogger } from ${dist('log/index.js')};
      import { DEFAULT_LIMITS } from ${dist('protocol/index.js')};
      const store = NodeStore.open({ dir: ${JSON.stringify(join(dir, 'writer'))}, nodeId: 'writer' });
      const link = NodeLink.create({ nodeId: 'writer', role: 'executor', cluster: 'lt', hubUrl: ${JSON.stringify(hub.url)}, logger: createLogger({ level: 'silent', format: 'json' }), limits: DEFAULT_LIMITS, timing: ${JSON.stringify(TIMING)}, maxClockOffsetMs: 86400000, announce: true, watchPresence: true, store });
      await link.connect();
      const facts = store.table('facts');
      link.send('reader', 'notice', { severity: 'info', text: 'first' });
      setImmediate(() => { const until = Date.now() + 5000; while (Date.now() < until); });
      void facts.put('fact', 42);
      link.send('reader', 'notice', { severity: 'info', text: 'fact stored' });
      setInterval(() => {}, 60000);
    `;
    writer = new Proc(process.execPath, ['--input-type=module', '-e', script]);
    const exit = await writer.exited;
    expect(exit.signal).toBe('SIGKILL');
    expect(heard).toEqual(['first', 'fact stored']);
    const store = openStore('writer');
    expect(store.table<number>('facts').get('fact')).toBe(42);
  });

  it('stops promptly after the hub vanished with publishes in flight, and reconnects when it returns', async () => {
    await setup();
    const port = await freePort();
    let hubProc = await startHubProcess(port);
    const node = create('n1', 'executor', openStore('n1'), `mqtt://127.0.0.1:${port}`);
    await node.connect();
    // A frozen hub accepts bytes but acknowledges nothing: these QoS 1 publishes stay in flight.
    hubProc.kill('SIGSTOP');
    for (let i = 0; i < 20; i++) node.send('nobody', 'ping', {});
    hubProc.kill('SIGKILL');
    await hubProc.exited;
    await until('the link to notice', () => !node.connected);
    node.send('nobody', 'ping', {});
    expect(node.counters.get('tx_dropped_offline')).toBeGreaterThanOrEqual(1);

    hubProc = await startHubProcess(port);
    try {
      await until('the link to reconnect', () => node.connected, 10_000);
      const started = Date.now();
      await node.stop();
      links.splice(links.indexOf(node), 1);
      // Well under the 2 s shutdown deadline: nothing waits for acknowledgements that can never come.
      expect(Date.now() - started).toBeLessThan(1_500);
    } finally {
      await hubProc.stop();
    }
  });
});
