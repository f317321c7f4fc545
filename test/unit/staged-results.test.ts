import { describe, expect, it } from 'vitest';
import { planPublication } from '../../src/broker/staged-results.js';
import { DATA_NAME_PATTERN, isStagingName, stagingName, stagingOwner, stagingPrefix } from '../../src/protocol/index.js';

const digest = 'a'.repeat(64);

describe('staging names', () => {
  it('puts every staged object of an attempt under its own prefix, as valid data names', () => {
    expect(stagingPrefix('fw-stats', 2)).toBe('fw-stats/.attempts/2/');
    expect(stagingName('fw-stats', 2)).toBe('fw-stats/.attempts/2/result.zip');
    expect(stagingName('fw-stats', 2, 0)).toBe('fw-stats/.attempts/2/named/0');
    const longest = stagingName('j'.repeat(128), 4_096, 1_023);
    expect(DATA_NAME_PATTERN.test(longest) && longest.length <= 512).toBe(true);
  });

  it('reserves every name whose second segment is .attempts, and no other', () => {
    for (const name of ['j/.attempts', 'j/.attempts/1/result.zip', 'j/.attempts/x', '.attempts/.attempts/1/a']) expect(isStagingName(name), name).toBe(true);
    for (const name of ['.attempts', '.attempts/1/a', 'j/.attemptsx/1', 'j/x/.attempts/1/a', 'j/attempts/1/a', 'j/result.zip']) expect(isStagingName(name), name).toBe(false);
  });

  it('names the job and attempt only of a name an attempt may write', () => {
    expect(stagingOwner('j/.attempts/12/named/3')).toEqual({ jobId: 'j', attempt: 12 });
    for (const name of ['j/.attempts/12', 'j/.attempts/012/a', 'j/.attempts/0/a', 'j/.attempts/-1/a', 'j/.attempts/1e3/a', 'j/.attempts/9999999999/a', 'j/other/1/a']) {
      expect(stagingOwner(name), name).toBeUndefined();
    }
  });
});

describe('planning a publication', () => {
  const staged = (name: string, size = 10) => ({ name, size, digest });

  it('keeps inline objects inline and turns references into moves to the published names', () => {
    const plan = planPublication('j', 2, [
      { name: 'j/result.zip', content: staged('j/.attempts/2/result.zip', 5_000_000) },
      { name: 'fire/stats', content: staged('j/.attempts/2/named/0', 3_000_000) },
      { name: 'fire/small', content: new Uint8Array(3) },
    ]);
    expect(plan).toEqual({
      inline: [{ name: 'fire/small', bytes: new Uint8Array(3) }],
      moves: [
        { from: 'j/.attempts/2/result.zip', to: 'j/result.zip', size: 5_000_000, digest },
        { from: 'j/.attempts/2/named/0', to: 'fire/stats', size: 3_000_000, digest },
      ],
      sizes: new Map([
        ['j/result.zip', 5_000_000],
        ['fire/stats', 3_000_000],
        ['fire/small', 3],
      ]),
    });
  });

  it('refuses a reference outside the reporting attempt\'s staging: another attempt, another job, anyone\'s data', () => {
    for (const name of ['j/.attempts/1/result.zip', 'j/.attempts/22/result.zip', 'k/.attempts/2/result.zip', 'j/result.zip', 'fire/district-3/temps', 'j/.attempts/2']) {
      const plan = planPublication('j', 2, [{ name: 'j/result.zip', content: staged(name) }]);
      expect(plan, name).toEqual({ problem: expect.stringContaining('is not under "j/.attempts/2/"') });
    }
  });

  it('refuses one staged object published twice, and keeps the first of two objects given one name', () => {
    expect(planPublication('j', 2, [
      { name: 'a', content: staged('j/.attempts/2/x') },
      { name: 'b', content: staged('j/.attempts/2/x') },
    ])).toEqual({ problem: expect.stringContaining('referenced twice') });
    const plan = planPublication('j', 2, [
      { name: 'j/result.zip', content: new Uint8Array(1) },
      { name: 'j/result.zip', content: staged('k/.attempts/1/forged') },
    ]);
    expect(plan).toMatchObject({ inline: [{ name: 'j/result.zip' }], moves: [] });
  });
});
