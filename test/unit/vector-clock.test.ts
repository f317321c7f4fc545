import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import {
  EMPTY_CLOCK,
  canonical,
  compare,
  dominates,
  merge,
  prune,
  size,
  tick,
  type Ordering,
  type VectorClock,
} from '../../src/clock/index.js';

// Few ids so random clocks share keys and ordered pairs actually occur. The
// prototype names and index-like ids ("9", "10") are there because node ids
// come off the wire and JS objects treat those names specially.
const NODE_IDS: readonly string[] = ['a', 'b', 'c', '9', '10', '__proto__', 'constructor', 'toString'];
const nodeIdArb = fc.constantFrom(...NODE_IDS);

const entriesArb = fc.uniqueArray(fc.tuple(nodeIdArb, fc.integer({ min: 1, max: 4 })), {
  selector: ([k]) => k,
  maxLength: NODE_IDS.length,
});

// Frozen so that any accidental in-place mutation by the code under test throws.
const fromEntries = (entries: ReadonlyArray<readonly [string, number]>): VectorClock =>
  Object.freeze(Object.fromEntries(entries));

const clockArb = entriesArb.map(fromEntries);

/** Independent model: only own, positive entries count. */
function model(vc: VectorClock): Map<string, number> {
  const m = new Map<string, number>();
  for (const k of Object.keys(vc)) {
    const v = Object.getOwnPropertyDescriptor(vc, k)?.value as number;
    if (v > 0) m.set(k, v);
  }
  return m;
}

function at(m: Map<string, number>, k: string): number {
  return m.get(k) ?? 0;
}

function sortedEntries(vc: VectorClock): Array<[string, number]> {
  return [...model(vc)].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
}

function sameEntries(a: VectorClock, b: VectorClock): boolean {
  return JSON.stringify(sortedEntries(a)) === JSON.stringify(sortedEntries(b));
}

function modelDominates(a: VectorClock, b: VectorClock): boolean {
  const ma = model(a);
  return [...model(b)].every(([k, v]) => at(ma, k) >= v);
}

function modelCompare(a: VectorClock, b: VectorClock): Ordering {
  const ab = modelDominates(a, b);
  const ba = modelDominates(b, a);
  if (ab && ba) return 'equal';
  if (ab) return 'after';
  if (ba) return 'before';
  return 'concurrent';
}

/** b = a plus non-negative increments, so b dominates a (and is often strictly after it). */
const dominatedPairArb = fc
  .tuple(clockArb, fc.uniqueArray(fc.tuple(nodeIdArb, fc.integer({ min: 0, max: 3 })), { selector: ([k]) => k }))
  .map(([a, deltas]): [VectorClock, VectorClock] => {
    const m = model(a);
    for (const [k, d] of deltas) {
      const v = at(m, k) + d;
      if (v > 0) m.set(k, v);
    }
    return [a, fromEntries([...m])];
  });

const equalPairArb = entriesArb.map((e): [VectorClock, VectorClock] => [fromEntries(e), fromEntries([...e].reverse())]);

const pairArb = fc.oneof(
  fc.tuple(clockArb, clockArb),
  dominatedPairArb,
  dominatedPairArb.map(([a, b]): [VectorClock, VectorClock] => [b, a]),
  equalPairArb,
);

describe('vector clock generators', () => {
  it('produce every ordering, so the compare properties are not vacuous', () => {
    const seen = new Set(fc.sample(pairArb, { numRuns: 500, seed: 42 }).map(([a, b]) => modelCompare(a, b)));
    expect([...seen].sort()).toEqual(['after', 'before', 'concurrent', 'equal']);
  });
});

describe('merge', () => {
  it('is the pointwise maximum', () => {
    fc.assert(
      fc.property(clockArb, clockArb, (a, b) => {
        const ma = model(a);
        const mb = model(b);
        const m = model(merge(a, b));
        for (const k of new Set([...ma.keys(), ...mb.keys()])) {
          expect(at(m, k)).toBe(Math.max(at(ma, k), at(mb, k)));
        }
        expect(m.size).toBe(new Set([...ma.keys(), ...mb.keys()]).size);
      }),
    );
  });

  it('is commutative', () => {
    fc.assert(
      fc.property(clockArb, clockArb, (a, b) => {
        expect(sortedEntries(merge(a, b))).toEqual(sortedEntries(merge(b, a)));
      }),
    );
  });

  it('is associative', () => {
    fc.assert(
      fc.property(clockArb, clockArb, clockArb, (a, b, c) => {
        expect(sortedEntries(merge(merge(a, b), c))).toEqual(sortedEntries(merge(a, merge(b, c))));
      }),
    );
  });

  it('is idempotent and returns the first argument itself', () => {
    fc.assert(
      fc.property(clockArb, (a) => {
        expect(merge(a, a)).toBe(a);
      }),
    );
  });

  it('returns the first argument itself when the second adds nothing', () => {
    fc.assert(
      fc.property(dominatedPairArb, ([lower, upper]) => {
        expect(merge(upper, lower)).toBe(upper);
      }),
    );
  });

  it('result dominates both inputs', () => {
    fc.assert(
      fc.property(clockArb, clockArb, (a, b) => {
        const m = merge(a, b);
        expect(dominates(m, a)).toBe(true);
        expect(dominates(m, b)).toBe(true);
        expect(modelDominates(m, a) && modelDominates(m, b)).toBe(true);
      }),
    );
  });

  it('produces plain objects', () => {
    fc.assert(
      fc.property(clockArb, clockArb, (a, b) => {
        expect(Object.getPrototypeOf(merge(a, b))).toBe(Object.prototype);
      }),
    );
  });
});

describe('compare', () => {
  it('matches the pointwise model', () => {
    fc.assert(
      fc.property(pairArb, ([a, b]) => {
        expect(compare(a, b)).toBe(modelCompare(a, b));
      }),
    );
  });

  it("is 'before' iff merge(a, b) equals b and a differs from b", () => {
    fc.assert(
      fc.property(pairArb, ([a, b]) => {
        expect(compare(a, b) === 'before').toBe(sameEntries(merge(a, b), b) && !sameEntries(a, b));
      }),
    );
  });

  it("is 'after' iff merge(a, b) equals a and a differs from b", () => {
    fc.assert(
      fc.property(pairArb, ([a, b]) => {
        expect(compare(a, b) === 'after').toBe(sameEntries(merge(a, b), a) && !sameEntries(a, b));
      }),
    );
  });

  it("is 'equal' iff both clocks have the same entries", () => {
    fc.assert(
      fc.property(pairArb, ([a, b]) => {
        expect(compare(a, b) === 'equal').toBe(sameEntries(a, b));
      }),
    );
  });

  it("is 'concurrent' iff neither clock dominates the other", () => {
    fc.assert(
      fc.property(pairArb, ([a, b]) => {
        expect(compare(a, b) === 'concurrent').toBe(!dominates(a, b) && !dominates(b, a));
        expect(compare(a, b) === 'concurrent').toBe(!modelDominates(a, b) && !modelDominates(b, a));
      }),
    );
  });

  it('is the mirror of compare(b, a)', () => {
    const mirror: Record<Ordering, Ordering> = {
      before: 'after',
      after: 'before',
      equal: 'equal',
      concurrent: 'concurrent',
    };
    fc.assert(
      fc.property(pairArb, ([a, b]) => {
        expect(compare(b, a)).toBe(mirror[compare(a, b)]);
      }),
    );
  });

  it('treats stray zero entries as absent', () => {
    expect(compare({ a: 0 }, EMPTY_CLOCK)).toBe('equal');
    expect(compare(EMPTY_CLOCK, { a: 0 })).toBe('equal');
    expect(compare({ a: 0, b: 1 }, { b: 1, c: 0 })).toBe('equal');
    expect(compare({ a: 0 }, { b: 1 })).toBe('before');
    expect(dominates(EMPTY_CLOCK, { a: 0 })).toBe(true);
  });

  it('example orderings', () => {
    expect(compare({ a: 1 }, { a: 2 })).toBe('before');
    expect(compare({ a: 2, b: 1 }, { a: 2 })).toBe('after');
    expect(compare({ a: 2 }, { b: 1 })).toBe('concurrent');
    expect(compare({ a: 1, b: 3 }, { b: 3, a: 1 })).toBe('equal');
  });
});

describe('dominates', () => {
  it('matches the pointwise model', () => {
    fc.assert(
      fc.property(pairArb, ([a, b]) => {
        expect(dominates(a, b)).toBe(modelDominates(a, b));
      }),
    );
  });
});

describe('tick', () => {
  it("produces a clock strictly 'after' its input", () => {
    fc.assert(
      fc.property(clockArb, nodeIdArb, (vc, node) => {
        const t = tick(vc, node);
        expect(compare(t, vc)).toBe('after');
        expect(compare(vc, t)).toBe('before');
      }),
    );
  });

  it("increments only the ticking node's entry", () => {
    fc.assert(
      fc.property(clockArb, nodeIdArb, (vc, node) => {
        const before = model(vc);
        const after = model(tick(vc, node));
        expect(at(after, node)).toBe(at(before, node) + 1);
        for (const k of NODE_IDS) {
          if (k !== node) expect(at(after, k)).toBe(at(before, k));
        }
        expect(after.size).toBe(before.size + (before.has(node) ? 0 : 1));
      }),
    );
  });

  it('does not alter its input and returns a plain object', () => {
    fc.assert(
      fc.property(clockArb, nodeIdArb, (vc, node) => {
        const snapshot = JSON.stringify(sortedEntries(vc));
        const t = tick(vc, node);
        expect(t).not.toBe(vc);
        expect(JSON.stringify(sortedEntries(vc))).toBe(snapshot);
        expect(Object.getPrototypeOf(t)).toBe(Object.prototype);
      }),
    );
  });

  it('refuses to overflow the safe-integer range', () => {
    expect(() => tick({ a: Number.MAX_SAFE_INTEGER }, 'a')).toThrow(RangeError);
    expect(tick({ a: Number.MAX_SAFE_INTEGER - 1 }, 'a')).toEqual({ a: Number.MAX_SAFE_INTEGER });
  });
});

describe('prune', () => {
  it('removes exactly the retired entries', () => {
    fc.assert(
      fc.property(clockArb, fc.uniqueArray(nodeIdArb), (vc, retired) => {
        const gone = new Set(retired);
        const before = model(vc);
        const after = model(prune(vc, retired));
        for (const k of NODE_IDS) {
          expect(at(after, k)).toBe(gone.has(k) ? 0 : at(before, k));
        }
        expect(Object.keys(prune(vc, retired)).some((k) => gone.has(k))).toBe(false);
      }),
    );
  });

  it('returns the input itself when nothing in it is retired', () => {
    const vc = { a: 1, b: 2 };
    expect(prune(vc, [])).toBe(vc);
    expect(prune(vc, ['c'])).toBe(vc);
    expect(prune(vc, ['a'])).toEqual({ b: 2 });
  });

  it('accepts any iterable, including a one-shot generator', () => {
    function* retired(): Generator<string> {
      yield 'a';
      yield 'c';
    }
    expect(prune({ a: 1, b: 2, c: 3 }, retired())).toEqual({ b: 2 });
    expect(prune({ a: 1, b: 2, c: 3 }, new Set(['b']))).toEqual({ a: 1, c: 3 });
  });
});

describe('canonical', () => {
  // Same entries inserted in a shuffled order, optionally padded with zero entries.
  const reorderedArb = entriesArb.chain((entries) => {
    const unused = NODE_IDS.filter((id) => !entries.some(([k]) => k === id));
    return fc.tuple(
      fc.constant(entries),
      fc.shuffledSubarray(entries, { minLength: entries.length, maxLength: entries.length }),
      fc.subarray(unused),
    );
  });

  it('gives identical JSON for equal clocks built in different key orders', () => {
    fc.assert(
      fc.property(reorderedArb, ([entries, shuffled, zeroIds]) => {
        const a = fromEntries(entries);
        const b = fromEntries([...shuffled, ...zeroIds.map((k): [string, number] => [k, 0])]);
        expect(JSON.stringify(canonical(a))).toBe(JSON.stringify(canonical(b)));
        expect(sameEntries(canonical(b), a)).toBe(true);
      }),
    );
  });

  it('drops zero entries and sorts keys', () => {
    expect(JSON.stringify(canonical({ c: 3, a: 0, b: 1, __proto__x: 2 }))).toBe('{"__proto__x":2,"b":1,"c":3}');
    expect(JSON.stringify(canonical({ z: 1, y: 2, x: 3 }))).toBe('{"x":3,"y":2,"z":1}');
  });

  it('keeps a __proto__ node id as an own entry', () => {
    const wire = JSON.parse('{"b":1,"__proto__":2}') as VectorClock;
    const c = canonical(wire);
    expect(Object.hasOwn(c, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(c)).toBe(Object.prototype);
    expect(JSON.stringify(c)).toBe('{"__proto__":2,"b":1}');
  });
});

describe('size', () => {
  it('counts non-zero entries', () => {
    fc.assert(
      fc.property(clockArb, (vc) => {
        expect(size(vc)).toBe(model(vc).size);
      }),
    );
    expect(size({ a: 0, b: 2 })).toBe(1);
    expect(size(EMPTY_CLOCK)).toBe(0);
  });
});

describe('empty clock', () => {
  it('is frozen and empty', () => {
    expect(Object.isFrozen(EMPTY_CLOCK)).toBe(true);
    expect(Object.keys(EMPTY_CLOCK)).toEqual([]);
  });

  it('works with every operation without throwing', () => {
    expect(compare(EMPTY_CLOCK, EMPTY_CLOCK)).toBe('equal');
    expect(compare(EMPTY_CLOCK, { a: 1 })).toBe('before');
    expect(dominates(EMPTY_CLOCK, EMPTY_CLOCK)).toBe(true);
    expect(merge(EMPTY_CLOCK, EMPTY_CLOCK)).toBe(EMPTY_CLOCK);
    expect(merge(EMPTY_CLOCK, { a: 1 })).toEqual({ a: 1 });
    expect(prune(EMPTY_CLOCK, ['a'])).toBe(EMPTY_CLOCK);
    expect(canonical(EMPTY_CLOCK)).toEqual({});
    expect(tick(EMPTY_CLOCK, 'a')).toEqual({ a: 1 });
    expect(Object.keys(EMPTY_CLOCK)).toEqual([]);
  });
});

describe('node ids that collide with Object.prototype', () => {
  it('tick stores __proto__ as an own entry without touching the prototype', () => {
    const t = tick(EMPTY_CLOCK, '__proto__');
    expect(Object.hasOwn(t, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(t)).toBe(Object.prototype);
    expect(JSON.stringify(t)).toBe('{"__proto__":1}');
    expect(JSON.stringify(tick(t, '__proto__'))).toBe('{"__proto__":2}');
  });

  it('merge carries a __proto__ entry from a decoded wire map', () => {
    const wire = JSON.parse('{"__proto__":3}') as VectorClock;
    const m = merge({ a: 1 }, wire);
    expect(Object.hasOwn(m, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(m)).toBe(Object.prototype);
    expect(sortedEntries(m)).toEqual([
      ['__proto__', 3],
      ['a', 1],
    ]);
  });

  it('never reads inherited members as counters', () => {
    expect(compare(tick(EMPTY_CLOCK, 'constructor'), EMPTY_CLOCK)).toBe('after');
    expect(compare(EMPTY_CLOCK, tick(EMPTY_CLOCK, 'toString'))).toBe('before');
    expect(dominates(EMPTY_CLOCK, tick(EMPTY_CLOCK, 'hasOwnProperty'))).toBe(false);
    expect(sortedEntries(merge(EMPTY_CLOCK, tick(EMPTY_CLOCK, 'toString')))).toEqual([['toString', 1]]);
    expect(tick(EMPTY_CLOCK, 'valueOf')).toEqual({ valueOf: 1 });
  });
});
