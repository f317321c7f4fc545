import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { HybridLogicalClock, compareEvents, compareHlc, type HlcTimestamp } from '../../src/clock/index.js';

/** Physical clock under test control; starts at `start` ms. */
function fakeClock(start: number): { now: () => number; set: (t: number) => void } {
  let t = start;
  return {
    now: () => t,
    set: (v) => {
      t = v;
    },
  };
}

const ts = (wall: number, logical: number): HlcTimestamp => ({ wall, logical });

// Small ranges so readings stall, repeat and jump backwards often.
const physArb = fc.integer({ min: 1_000, max: 1_020 });
const remoteArb = fc.record({ wall: fc.integer({ min: 990, max: 1_030 }), logical: fc.integer({ min: 0, max: 5 }) });

type Op = { kind: 'now'; phys: number } | { kind: 'receive'; phys: number; remote: HlcTimestamp };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('now' as const), phys: physArb }),
  fc.record({ kind: fc.constant('receive' as const), phys: physArb, remote: remoteArb }),
);

describe('HybridLogicalClock (properties)', () => {
  it('now() strictly increases even when the physical clock stalls or goes backwards', () => {
    fc.assert(
      fc.property(fc.array(physArb, { minLength: 1, maxLength: 60 }), (readings) => {
        const phys = fakeClock(0);
        const hlc = new HybridLogicalClock(phys.now);
        let prev: HlcTimestamp | undefined;
        for (const r of readings) {
          phys.set(r);
          const t = hlc.now();
          if (prev) expect(compareHlc(t, prev)).toBe(1);
          expect(t.wall).toBeGreaterThanOrEqual(r);
          prev = t;
        }
      }),
    );
  });

  it('now() strictly increases with a monotonically non-increasing physical clock', () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 3 }), { minLength: 1, maxLength: 40 }), (steps) => {
        let reading = 5_000;
        const hlc = new HybridLogicalClock(() => reading);
        let prev = hlc.now();
        for (const s of steps) {
          reading -= s;
          const t = hlc.now();
          expect(compareHlc(t, prev)).toBe(1);
          // A clock that only goes back must never pull the wall time back with it.
          expect(t.wall).toBe(5_000);
          prev = t;
        }
      }),
    );
  });

  it('every timestamp exceeds the previous one and receive() exceeds the remote', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => {
        const phys = fakeClock(0);
        const hlc = new HybridLogicalClock(phys.now);
        let prev = hlc.last();
        let maxSeenWall = 0;
        let expectedDrift = 0;
        for (const op of ops) {
          phys.set(op.phys);
          maxSeenWall = Math.max(maxSeenWall, op.phys);
          let t: HlcTimestamp;
          if (op.kind === 'now') {
            t = hlc.now();
          } else {
            t = hlc.receive(op.remote);
            expect(compareHlc(t, op.remote)).toBe(1);
            maxSeenWall = Math.max(maxSeenWall, op.remote.wall);
            expectedDrift = Math.max(expectedDrift, op.remote.wall - op.phys);
          }
          expect(compareHlc(t, prev)).toBe(1);
          expect(t.wall).toBeGreaterThanOrEqual(op.phys);
          // HLC's bounded-divergence guarantee: wall never exceeds the largest clock reading seen.
          expect(t.wall).toBeLessThanOrEqual(maxSeenWall);
          expect(hlc.last()).toEqual(t);
          expect(hlc.maxObservedDriftMs).toBe(expectedDrift);
          prev = t;
        }
      }),
    );
  });

  it('a receiver orders the receive after the send across two nodes', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(physArb, physArb, fc.boolean()), { minLength: 1, maxLength: 40 }), (steps) => {
        const pa = fakeClock(0);
        const pb = fakeClock(0);
        const a = new HybridLogicalClock(pa.now);
        const b = new HybridLogicalClock(pb.now);
        for (const [ra, rb, aToB] of steps) {
          pa.set(ra);
          pb.set(rb);
          const [sender, receiver] = aToB ? [a, b] : [b, a];
          const sent = sender.now();
          const received = receiver.receive(sent);
          expect(compareHlc(sent, received)).toBe(-1);
        }
      }),
    );
  });
});

describe('HybridLogicalClock (examples)', () => {
  it('starts at zero before any event', () => {
    expect(new HybridLogicalClock(() => 1_000).last()).toEqual(ts(0, 0));
    expect(new HybridLogicalClock(() => 1_000).maxObservedDriftMs).toBe(0);
  });

  it('follows the physical clock and counts within a millisecond', () => {
    const phys = fakeClock(1_000);
    const hlc = new HybridLogicalClock(phys.now);
    expect(hlc.now()).toEqual(ts(1_000, 0));
    expect(hlc.now()).toEqual(ts(1_000, 1));
    expect(hlc.now()).toEqual(ts(1_000, 2));
    phys.set(1_005);
    expect(hlc.now()).toEqual(ts(1_005, 0));
    expect(hlc.last()).toEqual(ts(1_005, 0));
  });

  it('holds its wall time when the physical clock is set back', () => {
    const phys = fakeClock(1_000_000);
    const hlc = new HybridLogicalClock(phys.now);
    expect(hlc.now()).toEqual(ts(1_000_000, 0));
    // e.g. NTP correcting a Pi that booted with a clock in the future
    phys.set(10);
    expect(hlc.now()).toEqual(ts(1_000_000, 1));
    expect(hlc.now()).toEqual(ts(1_000_000, 2));
    phys.set(1_000_001);
    expect(hlc.now()).toEqual(ts(1_000_001, 0));
  });

  it('jumps to a remote wall time that is ahead and records the drift', () => {
    const phys = fakeClock(1_000);
    const hlc = new HybridLogicalClock(phys.now);
    hlc.now();
    expect(hlc.receive(ts(2_000, 5))).toEqual(ts(2_000, 6));
    expect(hlc.maxObservedDriftMs).toBe(1_000);
    // Still ahead of physical time, so further local events count on the logical part.
    expect(hlc.now()).toEqual(ts(2_000, 7));
  });

  it('keeps the maximum drift, not the latest', () => {
    const phys = fakeClock(1_000);
    const hlc = new HybridLogicalClock(phys.now);
    hlc.receive(ts(1_300, 0));
    hlc.receive(ts(1_100, 0));
    hlc.receive(ts(500, 0));
    expect(hlc.maxObservedDriftMs).toBe(300);
  });

  it('resets the logical counter when physical time is ahead of both', () => {
    const phys = fakeClock(1_000);
    const hlc = new HybridLogicalClock(phys.now);
    hlc.now();
    hlc.now();
    phys.set(1_500);
    expect(hlc.receive(ts(1_200, 9))).toEqual(ts(1_500, 0));
    expect(hlc.maxObservedDriftMs).toBe(0);
  });

  it('takes the larger logical counter when local and remote wall times tie', () => {
    const phys = fakeClock(1_000);
    const hlc = new HybridLogicalClock(phys.now);
    hlc.now();
    hlc.now(); // (1000, 1)
    expect(hlc.receive(ts(1_000, 7))).toEqual(ts(1_000, 8));
    expect(hlc.receive(ts(1_000, 2))).toEqual(ts(1_000, 9));
  });

  it('increments its own counter when the local wall time is the largest', () => {
    const phys = fakeClock(1_000);
    const hlc = new HybridLogicalClock(phys.now);
    hlc.receive(ts(3_000, 4)); // (3000, 5)
    expect(hlc.receive(ts(2_000, 50))).toEqual(ts(3_000, 6));
  });

  it('survives a physical clock that returns garbage', () => {
    let reading = 1_000;
    const hlc = new HybridLogicalClock(() => reading);
    expect(hlc.now()).toEqual(ts(1_000, 0));
    reading = Number.NaN;
    expect(hlc.now()).toEqual(ts(1_000, 1));
    expect(hlc.receive(ts(900, 0))).toEqual(ts(1_000, 2));
    reading = 1_000.7;
    expect(hlc.now()).toEqual(ts(1_000, 3));
    reading = 1_001.2;
    expect(hlc.now()).toEqual(ts(1_001, 0));
  });

  it('defaults to Date.now', () => {
    const lo = Date.now();
    const t = new HybridLogicalClock().now();
    const hi = Date.now();
    expect(t.wall).toBeGreaterThanOrEqual(lo);
    expect(t.wall).toBeLessThanOrEqual(hi);
    expect(t.logical).toBe(0);
  });

  it('returns snapshots that later events do not change', () => {
    const phys = fakeClock(1_000);
    const hlc = new HybridLogicalClock(phys.now);
    const first = hlc.now();
    hlc.now();
    expect(first).toEqual(ts(1_000, 0));
  });
});

describe('compareHlc', () => {
  it('orders by wall time, then logical counter', () => {
    expect(compareHlc(ts(1, 9), ts(2, 0))).toBe(-1);
    expect(compareHlc(ts(2, 0), ts(1, 9))).toBe(1);
    expect(compareHlc(ts(2, 1), ts(2, 3))).toBe(-1);
    expect(compareHlc(ts(2, 3), ts(2, 1))).toBe(1);
    expect(compareHlc(ts(2, 3), ts(2, 3))).toBe(0);
  });

  it('agrees with lexicographic (wall, logical) order', () => {
    const small = fc.record({ wall: fc.nat({ max: 3 }), logical: fc.nat({ max: 3 }) });
    fc.assert(
      fc.property(small, small, (a, b) => {
        const expected = a.wall !== b.wall ? Math.sign(a.wall - b.wall) : Math.sign(a.logical - b.logical);
        expect(compareHlc(a, b)).toBe(expected === 0 ? 0 : expected);
      }),
    );
  });
});

describe('compareEvents', () => {
  // Includes ids whose UTF-16 order differs from locale and code-point order.
  const NODES = ['', 'a', 'B', 'b', 'ab', '\uFFFF', '\u{1F600}'] as const;
  const eventArb = fc.record({
    hlc: fc.record({ wall: fc.nat({ max: 2 }), logical: fc.nat({ max: 2 }) }),
    node: fc.constantFrom(...NODES),
  });
  type Ev = { hlc: HlcTimestamp; node: string };
  const identical = (a: Ev, b: Ev): boolean =>
    a.hlc.wall === b.hlc.wall && a.hlc.logical === b.hlc.logical && a.node === b.node;

  it('is reflexive and returns 0 only for identical events', () => {
    fc.assert(
      fc.property(eventArb, eventArb, (a, b) => {
        expect(compareEvents(a, a)).toBe(0);
        expect(compareEvents(a, b) === 0).toBe(identical(a, b));
      }),
    );
  });

  it('is antisymmetric', () => {
    fc.assert(
      fc.property(eventArb, eventArb, (a, b) => {
        expect(compareEvents(a, b) + compareEvents(b, a)).toBe(0);
      }),
    );
  });

  it('is transitive', () => {
    fc.assert(
      fc.property(eventArb, eventArb, eventArb, (a, b, c) => {
        const ab = compareEvents(a, b);
        const bc = compareEvents(b, c);
        if (ab <= 0 && bc <= 0) expect(compareEvents(a, c)).toBeLessThanOrEqual(0);
        if ((ab < 0 && bc <= 0) || (ab <= 0 && bc < 0)) expect(compareEvents(a, c)).toBe(-1);
      }),
    );
  });

  it('sorts any permutation of the same events into the same order', () => {
    fc.assert(
      fc.property(
        fc.array(eventArb, { maxLength: 30 }).chain((evs) =>
          fc.tuple(fc.constant(evs), fc.shuffledSubarray(evs, { minLength: evs.length, maxLength: evs.length })),
        ),
        ([evs, shuffled]) => {
          expect([...shuffled].sort(compareEvents)).toEqual([...evs].sort(compareEvents));
        },
      ),
    );
  });

  it('uses HLC time before node id', () => {
    expect(compareEvents({ hlc: ts(1, 0), node: 'z' }, { hlc: ts(2, 0), node: 'a' })).toBe(-1);
    expect(compareEvents({ hlc: ts(2, 0), node: 'z' }, { hlc: ts(2, 1), node: 'a' })).toBe(-1);
    expect(compareEvents({ hlc: ts(2, 1), node: 'a' }, { hlc: ts(2, 0), node: 'z' })).toBe(1);
  });

  it('breaks time ties by UTF-16 code units, lower node id first', () => {
    const at = (node: string): Ev => ({ hlc: ts(5, 5), node });
    expect(compareEvents(at('a'), at('b'))).toBe(-1);
    expect(compareEvents(at('b'), at('a'))).toBe(1);
    expect(compareEvents(at('a'), at('ab'))).toBe(-1);
    // Uppercase sorts before lowercase in code-unit order, unlike most locales.
    expect(compareEvents(at('B'), at('a'))).toBe(-1);
    // U+1F600 is a surrogate pair starting 0xD83D, which is below 0xFFFF as a code unit
    // even though the code point is larger.
    expect(compareEvents(at('\u{1F600}'), at('\uFFFF'))).toBe(-1);
  });
});
