import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { newer, type Change } from '../../src/broker/metadata-replica.js';

const ORIGINS = ['east', 'north', 'west'];

function change(origin: string, seq: number, vc: Record<string, number>, wall: number, store: string): Change {
  return { table: 'names', key: 'fire/temps', origin, seq, vc, hlc: [wall, 0], location: { store, size: 1, at: [wall, 0] } };
}

/** The record a replica ends with after applying changes in the given order. */
function replay(changes: readonly Change[]): Change | undefined {
  let held: Change | undefined;
  for (const c of changes) if (held === undefined || newer(c, held)) held = c;
  return held;
}

describe('metadata merge rule', () => {
  it('a causally later change wins even with an older HLC time (a broker whose clock lags)', () => {
    const first = change('west', 1, { west: 1 }, 2_000, 'ds-1');
    const later = change('east', 1, { west: 1, east: 1 }, 1_000, 'ds-2');
    expect(newer(later, first)).toBe(true);
    expect(newer(first, later)).toBe(false);
  });

  it('concurrent changes go to the later HLC time, then to the higher origin id', () => {
    const a = change('west', 1, { west: 1 }, 1_000, 'ds-1');
    const b = change('east', 1, { east: 1 }, 1_001, 'ds-2');
    expect(newer(b, a)).toBe(true);
    const c = change('north', 1, { north: 1 }, 1_001, 'ds-3');
    expect(newer(c, b)).toBe(true);
    expect(newer(b, c)).toBe(false);
    expect(newer(a, a)).toBe(false);
  });

  it('every order of the same changes ends with the same record', () => {
    // Random histories: each change is made by an origin that has seen some of the earlier ones.
    const historyArb = fc
      .array(fc.record({ origin: fc.constantFrom(...ORIGINS), sees: fc.array(fc.nat(), { maxLength: 3 }), wall: fc.integer({ min: 0, max: 50 }) }), { minLength: 1, maxLength: 12 })
      .map((steps) => {
        const seqs: Record<string, number> = {};
        const made: Change[] = [];
        for (const step of steps) {
          seqs[step.origin] = (seqs[step.origin] ?? 0) + 1;
          const vc: Record<string, number> = {};
          // As an HLC does: never behind anything the origin has seen.
          let wall = step.wall;
          for (const seen of [...step.sees.map((i) => made[i % Math.max(1, made.length)]), ...made.filter((m) => m.origin === step.origin)]) {
            if (seen === undefined) continue;
            for (const [k, v] of Object.entries(seen.vc)) vc[k] = Math.max(vc[k] ?? 0, v);
            wall = Math.max(wall, seen.hlc[0] + 1);
          }
          vc[step.origin] = Math.max(vc[step.origin] ?? 0, seqs[step.origin]!);
          made.push(change(step.origin, seqs[step.origin]!, vc, wall, `ds-${made.length}`));
        }
        return made;
      });
    fc.assert(
      fc.property(historyArb, fc.infiniteStream(fc.nat()), (changes, randoms) => {
        const shuffled = [...changes];
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = randoms.next().value % (i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        expect(replay(shuffled)).toEqual(replay(changes));
      }),
      { numRuns: 1_000 },
    );
  });
});
