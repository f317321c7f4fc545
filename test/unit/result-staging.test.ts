import { describe, expect, it } from 'vitest';
import { chooseStaged, type RunReport } from '../../src/executor/result-staging.js';

const report = (archive: number, ...named: number[]): RunReport => ({
  outcome: 'exited',
  exit_code: 0,
  message: '',
  duration_ms: 1,
  archive: new Uint8Array(archive),
  files: [],
  missing: [],
  named: named.map((size, i) => ({ path: `f${i}`, name: `j/n${i}`, bytes: new Uint8Array(size) })),
});

describe('which result objects leave the job_result message', () => {
  it('stages nothing when the whole result fits in one message', () => {
    expect(chooseStaged(report(600, 300), 1_000)).toEqual([]);
    expect(chooseStaged(report(700, 300), 1_000)).toEqual([]);
  });

  it('stages the largest objects first, only as many as needed for the rest to fit', () => {
    const chosen = chooseStaged(report(200, 5_000, 100, 600), 1_000);
    expect(chosen.map((c) => [c.ref, c.bytes.byteLength])).toEqual([[0, 5_000]]);
    const more = chooseStaged(report(20_000, 5_000, 900, 900), 1_000);
    expect(more.map((c) => c.ref)).toEqual([undefined, 0, 1]);
  });

  it('stages the archive itself when it alone is too large', () => {
    expect(chooseStaged(report(2_000), 1_000).map((c) => c.ref)).toEqual([undefined]);
  });
});
