import { describe, expect, it } from 'vitest';
import { ClockKeeper } from '../../src/transport/clock-keeper.js';

const DAY = 86_400_000;
const NOW_2026 = Date.UTC(2026, 10, 22);

describe('ClockKeeper: what a node adopts from the clocks it receives', () => {
  it('adopts a peer HLC within the offset bound and refuses one beyond it, counting each clock apart', () => {
    const keeper = new ClockKeeper(undefined, DAY, undefined, () => NOW_2026);
    expect(keeper.observe({}, { wall: NOW_2026 + 1_000, logical: 3 })).toEqual({ hlc: true, vc: true, ignored: 0 });
    expect(keeper.hlc.now().wall).toBe(NOW_2026 + 1_000);
    expect(keeper.observe({}, { wall: NOW_2026 + 2 * DAY, logical: 0 })).toEqual({ hlc: false, vc: true, ignored: 0 });
    expect(keeper.hlc.now().wall).toBe(NOW_2026 + 1_000);
  });

  it('a unit whose clock was never set adopts the cluster time however far ahead it is', () => {
    const bootedIn1970 = 30_000;
    const keeper = new ClockKeeper(undefined, DAY, undefined, () => bootedIn1970);
    expect(keeper.observe({}, { wall: NOW_2026, logical: 0 })).toEqual({ hlc: true, vc: true, ignored: 0 });
    expect(keeper.hlc.now().wall).toBe(NOW_2026);
  });

  it('refuses an absurd logical counter, and a broker refuses claims on its own future events', () => {
    const broker = new ClockKeeper('b1', 0, undefined, () => NOW_2026);
    broker.stamp();
    expect(broker.observe({ b1: 1, b2: 4 }, { wall: NOW_2026, logical: 2 ** 30 })).toEqual({ hlc: false, vc: true, ignored: 0 });
    expect(broker.clock()).toEqual({ b1: 1, b2: 4 });
    expect(broker.observe({ b1: 99 }, { wall: NOW_2026, logical: 0 })).toEqual({ hlc: true, vc: false, ignored: 0 });
    expect(broker.clock().b1).toBe(1);
    expect(broker.stamp().vc.b1).toBe(2);
  });

  it('merges vector-clock entries only for brokers it knows, so a message cannot grow its clock with made-up ones', () => {
    const keeper = new ClockKeeper(undefined, DAY, undefined, () => NOW_2026);
    const known = new Set(['b1', 'b2']);
    const forged: Record<string, number> = { b1: 3 };
    for (let i = 0; i < 1_000; i++) forged[`ghost-${i}`] = 1;
    forged.b2 = 5;
    expect(keeper.observe(forged, { wall: NOW_2026, logical: 0 }, (id) => known.has(id))).toEqual({ hlc: true, vc: true, ignored: 1_000 });
    expect(keeper.clock()).toEqual({ b1: 3, b2: 5 });
    // A clock naming only known brokers is merged as it is.
    expect(keeper.observe({ b2: 6 }, { wall: NOW_2026, logical: 0 }, (id) => known.has(id))).toEqual({ hlc: true, vc: true, ignored: 0 });
    expect(keeper.clock()).toEqual({ b1: 3, b2: 6 });
  });
});
