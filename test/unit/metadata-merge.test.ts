import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { newer, resolve, type Change } from '../../src/broker/metadata-replica.js';
import type { JobSpec, JobView } from '../../src/protocol/index.js';

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

  describe('two acceptances of one job (a partition)', () => {
    const SPEC: JobSpec = { job_id: 'j', wasm_module: 'm.wasm', capabilities: {}, argv: [], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 30, max_memory_mb: 16 };
    const base = { job_id: 'j', priority: 'normal' as const, owner: 'client', created_at: 1, updated_at: 2, spec: SPEC, digest: 'd', after: [] };
    function accepted(broker: string, seq: number, vc: Record<string, number>, wall: number, attempt: number, executor: string): Change {
      const attempts: JobView['attempts'] = [{ attempt, executor, outcome: 'accepted', assigned_at: 1 }];
      const result = { attempt, executor, outcome: 'exited' as const, exit_code: 0, message: '', duration_ms: 1, archive: 'j/result.zip', archive_bytes: 22, files: [], missing: [], named_results: [], decided_by: broker, decided_at: [wall, 0] as [number, number], decided_vc: vc };
      return { table: 'jobs', key: 'j', origin: broker, seq, vc, hlc: [wall + 1, 0], job: { ...base, state: 'succeeded', broker, attempts, result } };
    }
    const pending = (broker: string, seq: number, vc: Record<string, number>, wall: number): Change => ({ table: 'jobs', key: 'j', origin: broker, seq, vc, hlc: [wall, 0], job: { ...base, state: 'running', broker, attempts: [{ attempt: 1, executor: 'e1', outcome: 'running', assigned_at: 1 }] } });

    it('the earlier of two concurrent acceptances wins everywhere, and the other is listed as superseded', () => {
      const west = accepted('west', 5, { west: 5 }, 2_000, 1, 'e1');
      const east = accepted('east', 3, { east: 3 }, 1_500, 2, 'e2');
      const atWest = resolve(east, west);
      const atEast = resolve(west, east);
      expect(atWest?.job?.result).toMatchObject({ attempt: 2, decided_by: 'east' });
      expect(atWest?.job?.superseded).toEqual([{ attempt: 1, executor: 'e1', decided_by: 'west', decided_at: [2_000, 0] }]);
      expect(atEast).toEqual(atWest);
    });

    it('a causally earlier acceptance wins even with a later HLC time', () => {
      const first = accepted('west', 5, { west: 5 }, 9_000, 1, 'e1');
      const later = accepted('east', 3, { west: 5, east: 3 }, 1_000, 2, 'e2');
      const atWest = resolve(later, first);
      expect(atWest?.job?.result).toMatchObject({ decided_by: 'west', attempt: 1 });
      expect(atWest?.job?.superseded).toEqual([{ attempt: 2, executor: 'e2', decided_by: 'east', decided_at: [1_000, 0] }]);
      expect(resolve(first, later)).toEqual(atWest);
    });

    it('a record with an accepted result is never replaced by one without', () => {
      const done = accepted('west', 5, { west: 5 }, 1_000, 1, 'e1');
      const adoptedLater = pending('east', 9, { east: 9 }, 5_000);
      expect(resolve(adoptedLater, done)).toBeUndefined();
      expect(resolve(done, adoptedLater)).toBe(done);
    });

    it('every order of the same records converges to one record', () => {
      const changes = [
        pending('west', 1, { west: 1 }, 100),
        accepted('west', 2, { west: 2 }, 2_000, 1, 'e1'),
        pending('east', 1, { west: 1, east: 1 }, 150),
        accepted('east', 2, { west: 1, east: 2 }, 1_900, 2, 'e2'),
        accepted('north', 4, { north: 4 }, 1_900, 3, 'e3'),
      ];
      const replay = (order: Change[]) => order.reduce<Change | undefined>((held, c) => (held === undefined ? c : (resolve(c, held) ?? held)), undefined);
      const reference = replay(changes);
      expect(reference?.job?.result).toMatchObject({ decided_by: 'east', attempt: 2 });
      expect(reference?.job?.superseded?.map((s) => s.decided_by).sort()).toEqual(['north', 'west']);
      fc.assert(
        fc.property(fc.shuffledSubarray(changes, { minLength: changes.length, maxLength: changes.length }), (order) => {
          expect(replay(order)).toEqual(reference);
        }),
        { numRuns: 300 },
      );
    });
  });
});
