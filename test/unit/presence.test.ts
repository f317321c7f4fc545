import { beforeEach, describe, expect, it } from 'vitest';

import type { BodyOf } from '../../src/protocol/index.js';
import { PeerTable, type PresenceEvent } from '../../src/transport/index.js';

const DEAD_AFTER_MS = 3_000;

const birth = (pid = 100): BodyOf<'birth'> => ({ software: 'ucp-edge/0.1.0', host: 'edge', pid, heartbeat_interval_ms: 1_000 });
const heartbeat = (seq: number): BodyOf<'heartbeat'> => ({ seq, uptime_ms: seq * 1_000, rss_bytes: 1, load: 0.1, outbox_pending: 0 });

/** The parts of an event a listener acts on, without the live peer object. */
function summary(events: PresenceEvent[]): unknown[] {
  return events.map((e) =>
    e.type === 'up'
      ? { type: 'up', id: e.peer.id, inc: e.peer.incarnation, rejoined: e.rejoined, ...(e.restartedFrom !== undefined ? { restartedFrom: e.restartedFrom } : {}) }
      : { type: 'down', id: e.peer.id, inc: e.incarnation, reason: e.reason },
  );
}

describe('PeerTable', () => {
  let t: number;
  let table: PeerTable;

  beforeEach(() => {
    // Start well away from 0 so a forgotten clock injection (performance.now) could not pass by accident.
    t = 50_000;
    table = new PeerTable(DEAD_AFTER_MS, () => t);
  });

  it('a first birth brings the peer up', () => {
    expect(summary(table.onBirth('b1', 'broker', 1, birth()))).toEqual([{ type: 'up', id: 'b1', inc: 1, rejoined: false }]);
    const peer = table.get('b1');
    expect(peer).toMatchObject({ id: 'b1', role: 'broker', incarnation: 1, alive: true, lastSeen: 50_000, birth: birth() });
    expect(table.peers().filter((p) => p.alive).map((p) => p.id)).toEqual(['b1']);
  });

  it('a repeated birth of the same incarnation raises no event but refreshes it', () => {
    table.onBirth('b1', 'broker', 1, birth(100));
    t += 2_000;
    expect(table.onBirth('b1', 'broker', 1, birth(200))).toEqual([]);
    expect(table.get('b1')).toMatchObject({ alive: true, lastSeen: 52_000, birth: { pid: 200 } });
  });

  it.each([
    [false, 'will'],
    [true, 'graceful'],
  ] as const)('a death (graceful: %s) of the current incarnation brings it down as %s', (graceful, reason) => {
    table.onBirth('e1', 'executor', 4, birth());
    expect(summary(table.onDeath('e1', 'executor', 4, graceful))).toEqual([{ type: 'down', id: 'e1', inc: 4, reason }]);
    expect(table.get('e1')).toMatchObject({ alive: false, downReason: reason, incarnation: 4 });
    expect(table.peers().filter((p) => p.alive)).toEqual([]);
    // A second copy of the same death (QoS 1 redelivery) is not a second transition.
    expect(table.onDeath('e1', 'executor', 4, graceful)).toEqual([]);
    expect(table.staleIgnored).toBe(0);
  });

  it('ignores the late last will of an older incarnation after a fast restart', () => {
    table.onBirth('e1', 'executor', 1, birth());
    const restart = table.onBirth('e1', 'executor', 2, birth());
    expect(summary(restart)).toEqual([
      { type: 'down', id: 'e1', inc: 1, reason: 'restarted' },
      { type: 'up', id: 'e1', inc: 2, rejoined: false, restartedFrom: 1 },
    ]);
    expect(table.onDeath('e1', 'executor', 1, false)).toEqual([]);
    expect(table.staleIgnored).toBe(1);
    expect(table.get('e1')).toMatchObject({ alive: true, incarnation: 2 });
    expect(table.get('e1')?.downReason).toBeUndefined();
  });

  it('a birth with a higher incarnation while alive reports the old one down, then the new one up', () => {
    table.onBirth('d1', 'datastore', 7, birth(1));
    table.onHeartbeat('d1', 'datastore', 7, heartbeat(3));
    t += 500;
    const events = table.onBirth('d1', 'datastore', 9, birth(2));
    expect(summary(events)).toEqual([
      { type: 'down', id: 'd1', inc: 7, reason: 'restarted' },
      { type: 'up', id: 'd1', inc: 9, rejoined: false, restartedFrom: 7 },
    ]);
    // The down event carries a snapshot of the old incarnation, not the object that now describes the new one.
    const [down, up] = events;
    expect(down?.peer).toMatchObject({ incarnation: 7, alive: true });
    expect(down?.peer).not.toBe(up?.peer);
    // What was learnt about the old incarnation must not leak into the new one.
    expect(up?.peer).toMatchObject({ incarnation: 9, alive: true, lastSeen: 50_500, birth: { pid: 2 } });
    expect(up?.peer.heartbeat).toBeUndefined();
  });

  it('a higher incarnation of a dead peer comes up without a restarted down event', () => {
    table.onBirth('d1', 'datastore', 1, birth());
    table.onDeath('d1', 'datastore', 1, true);
    expect(summary(table.onHeartbeat('d1', 'datastore', 2, heartbeat(0)))).toEqual([
      { type: 'up', id: 'd1', inc: 2, rejoined: false, restartedFrom: 1 },
    ]);
  });

  it('expires a silent peer as heartbeat_timeout only once the silence exceeds the limit', () => {
    table.onBirth('b1', 'broker', 1, birth());
    t += DEAD_AFTER_MS - 1;
    expect(table.expire()).toEqual([]);
    t += 1;
    // Silent for exactly the limit: still alive.
    expect(table.expire()).toEqual([]);
    expect(table.get('b1')?.alive).toBe(true);
    t += 0.5;
    expect(summary(table.expire())).toEqual([{ type: 'down', id: 'b1', inc: 1, reason: 'heartbeat_timeout' }]);
    expect(table.get('b1')).toMatchObject({ alive: false, downReason: 'heartbeat_timeout' });
    // Already down: a later sweep does not report it again.
    t += 10_000;
    expect(table.expire()).toEqual([]);
  });

  it('heartbeats push the deadline back, and expire() only takes the silent peers', () => {
    table.onBirth('b1', 'broker', 1, birth());
    table.onBirth('b2', 'broker', 1, birth());
    t += 2_000;
    table.onHeartbeat('b1', 'broker', 1, heartbeat(1));
    t += 1_500;
    expect(summary(table.expire())).toEqual([{ type: 'down', id: 'b2', inc: 1, reason: 'heartbeat_timeout' }]);
    expect(table.get('b1')).toMatchObject({ alive: true, lastSeen: 52_000, heartbeat: heartbeat(1) });
  });

  it('after this node hears again, every live peer gets the full limit from then, and the dead stay dead', () => {
    table.onBirth('b1', 'broker', 1, birth());
    table.onBirth('b2', 'broker', 1, birth());
    table.onBirth('gone', 'executor', 1, birth());
    table.onDeath('gone', 'executor', 1, false);
    // Deaf for 2.5 s (our own connection was down), then subscribed again.
    t += 2_500;
    table.heardAgain();
    t += DEAD_AFTER_MS;
    expect(table.expire()).toEqual([]);
    expect(table.msUntilExpiry()).toBe(0);
    expect(table.get('gone')?.alive).toBe(false);
    t += 1;
    // Silent for the whole limit after we could hear again: now that counts.
    expect(summary(table.expire())).toEqual([
      { type: 'down', id: 'b1', inc: 1, reason: 'heartbeat_timeout' },
      { type: 'down', id: 'b2', inc: 1, reason: 'heartbeat_timeout' },
    ]);
  });

  it('a heartbeat of the same incarnation after a timeout is a rejoin, not a restart', () => {
    table.onBirth('b1', 'broker', 3, birth());
    t += DEAD_AFTER_MS + 1;
    table.expire();
    t += 60_000;
    const events = table.onHeartbeat('b1', 'broker', 3, heartbeat(99));
    expect(summary(events)).toEqual([{ type: 'up', id: 'b1', inc: 3, rejoined: true }]);
    expect(events[0]).not.toHaveProperty('restartedFrom');
    expect(table.get('b1')).toMatchObject({ alive: true, lastSeen: 113_001, heartbeat: heartbeat(99) });
    expect(table.get('b1')?.downReason).toBeUndefined();
  });

  it('ignores a heartbeat from an older incarnation', () => {
    table.onBirth('b1', 'broker', 5, birth());
    t += 2_500;
    expect(table.onHeartbeat('b1', 'broker', 4, heartbeat(7))).toEqual([]);
    expect(table.staleIgnored).toBe(1);
    const peer = table.get('b1');
    expect(peer).toMatchObject({ incarnation: 5, lastSeen: 50_000 });
    expect(peer?.heartbeat).toBeUndefined();
    // It did not count as proof of life either.
    t += 501;
    expect(summary(table.expire())).toEqual([{ type: 'down', id: 'b1', inc: 5, reason: 'heartbeat_timeout' }]);
  });

  it('a retained death of an unknown node keeps an older birth from resurrecting it', () => {
    // Subscribing replays retained presence: the death (inc 6) can be seen before any birth.
    expect(table.onDeath('x1', 'client', 6, false)).toEqual([]);
    expect(table.get('x1')).toMatchObject({ alive: false, incarnation: 6, downReason: 'will' });
    expect(table.onBirth('x1', 'client', 5, birth())).toEqual([]);
    expect(table.onHeartbeat('x1', 'client', 5, heartbeat(1))).toEqual([]);
    expect(table.staleIgnored).toBe(2);
    expect(table.peers().filter((p) => p.alive)).toEqual([]);
    // A genuinely newer incarnation still comes up.
    expect(summary(table.onBirth('x1', 'client', 7, birth()))).toEqual([{ type: 'up', id: 'x1', inc: 7, rejoined: false, restartedFrom: 6 }]);
  });

  it('touch() refreshes only a live peer at the incarnation it knows', () => {
    table.onBirth('b1', 'broker', 2, birth());
    t += 2_000;
    table.touch('b1', 1); // older incarnation: no refresh
    table.touch('b1', 3); // unknown newer incarnation: needs a birth or heartbeat, not a refresh
    expect(table.get('b1')?.lastSeen).toBe(50_000);
    table.touch('b1', 2);
    expect(table.get('b1')?.lastSeen).toBe(52_000);
    expect(table.get('b1')?.incarnation).toBe(2);
    // The touch kept it alive past the original deadline.
    t = 50_000 + DEAD_AFTER_MS + 1;
    expect(table.expire()).toEqual([]);
    t = 52_000 + DEAD_AFTER_MS + 1;
    expect(table.expire()).toHaveLength(1);
  });

  it('touch() neither revives a dead peer nor creates an unknown one', () => {
    table.onBirth('b1', 'broker', 1, birth());
    table.onDeath('b1', 'broker', 1, true);
    t += 1_000;
    table.touch('b1', 1);
    expect(table.get('b1')).toMatchObject({ alive: false, lastSeen: 50_000 });
    table.touch('ghost', 1);
    expect(table.get('ghost')).toBeUndefined();
    expect(table.peers().map((p) => p.id)).toEqual(['b1']);
  });

  it('forget() drops a peer so it is new again', () => {
    table.onBirth('b1', 'broker', 9, birth());
    expect(table.forget('b1')).toBe(true);
    expect(table.forget('b1')).toBe(false);
    expect(summary(table.onBirth('b1', 'broker', 1, birth()))).toEqual([{ type: 'up', id: 'b1', inc: 1, rejoined: false }]);
  });
});

describe('PeerTable: when to look for silent peers', () => {
  it('names the time until the first live peer would expire, and nothing while none is alive', () => {
    let now = 1_000;
    const peers = new PeerTable(4_000, () => now);
    expect(peers.msUntilExpiry()).toBeUndefined();
    peers.onBirth('b1', 'broker', 1, { software: 's', host: 'h', pid: 1, heartbeat_interval_ms: 1_000 });
    now = 2_000;
    peers.onBirth('e1', 'executor', 1, { software: 's', host: 'h', pid: 2, heartbeat_interval_ms: 1_000 });
    expect(peers.msUntilExpiry()).toBe(3_000);
    // Only the roles whose heartbeats are watched count, and expire the same way.
    expect(peers.msUntilExpiry((role) => role === 'executor')).toBe(4_000);
    now = 5_001;
    expect(peers.expire((role) => role === 'executor').map((e) => e.peer.id)).toEqual([]);
    expect(peers.expire().map((e) => e.peer.id)).toEqual(['b1']);
    expect(peers.msUntilExpiry()).toBe(999);
    now = 6_001;
    expect(peers.expire().map((e) => e.peer.id)).toEqual(['e1']);
    expect(peers.msUntilExpiry()).toBeUndefined();
  });
});
