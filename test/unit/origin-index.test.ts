import { describe, expect, it } from 'vitest';
import { OriginIndex } from '../../src/broker/origin-index.js';

const list = (index: OriginIndex, origin: string, since = 0) => [...index.after(origin, since)];

describe('the index of changes by origin', () => {
  it('lists an origin\'s changes after a number, in order, without those replaced', () => {
    const index = new OriginIndex();
    for (let seq = 1; seq <= 5; seq++) index.set('b-1', seq, 'jobs', `job-${seq}`);
    index.set('b-2', 1, 'names', 'x');
    index.delete('b-1', 2);
    expect(list(index, 'b-1')).toEqual([[1, 'jobs', 'job-1'], [3, 'jobs', 'job-3'], [4, 'jobs', 'job-4'], [5, 'jobs', 'job-5']]);
    expect(list(index, 'b-1', 3)).toEqual([[4, 'jobs', 'job-4'], [5, 'jobs', 'job-5']]);
    expect(list(index, 'b-1', 5)).toEqual([]);
    expect(list(index, 'b-2')).toEqual([[1, 'names', 'x']]);
    expect(list(index, 'b-3')).toEqual([]);
    expect(index.size).toBe(5);
  });

  it('keeps order when a peer\'s changes arrive out of order, and holds a number added again once', () => {
    const index = new OriginIndex();
    for (const seq of [10, 4, 7, 1]) index.set('peer', seq, 'jobs', `j${seq}`);
    index.delete('peer', 7);
    index.set('peer', 7, 'nodes', 'peer/ex');
    index.set('peer', 4, 'names', 'j4/out');
    expect(list(index, 'peer')).toEqual([[1, 'jobs', 'j1'], [4, 'names', 'j4/out'], [7, 'nodes', 'peer/ex'], [10, 'jobs', 'j10']]);
    expect(list(index, 'peer', 4)).toEqual([[7, 'nodes', 'peer/ex'], [10, 'jobs', 'j10']]);
    expect(index.size).toBe(4);
  });

  it('lists the same after many changes were replaced and the lists compacted', () => {
    const index = new OriginIndex();
    // A job written three times: each change replaces the one before, as records do.
    for (let job = 0; job < 2_000; job++) {
      const first = job * 3 + 1;
      for (let k = 0; k < 3; k++) {
        if (k > 0) index.delete('b', first + k - 1);
        index.set('b', first + k, 'jobs', `j${job}`);
      }
    }
    const held = list(index, 'b');
    expect(held).toHaveLength(2_000);
    expect(held.every(([seq, table, key], i) => seq === i * 3 + 3 && table === 'jobs' && key === `j${i}`)).toBe(true);
    expect(list(index, 'b', 5_997)).toEqual([[6_000, 'jobs', 'j1999']]);
    expect(index.size).toBe(2_000);
  });
});
