import { describe, expect, it } from 'vitest';
import type { Change } from '../../src/broker/metadata-replica.js';
import { syncChangeProblem } from '../../src/broker/sync-trust.js';

const NOW = Date.UTC(2026, 5, 1);
const change = (origin: string, wall: number, at?: number): Change => ({ table: 'names', key: 'a/b', origin, seq: 1, vc: { [origin]: 1 }, hlc: [wall, 0], ...(at !== undefined ? { location: { store: 'ds', size: 1, at: [at, 0] } } : {}) });
const source = (pushed: boolean, maxLeadMs = 300_000, now = NOW) => ({ sender: 'b2', pushed, now, maxLeadMs });

describe('which metadata changes a broker takes from a peer', () => {
  it('a push carries only the sender\'s own changes; an answer to a digest may relay others\'', () => {
    expect(syncChangeProblem(change('b2', NOW), source(true))).toBeUndefined();
    expect(syncChangeProblem(change('b1', NOW), source(true))).toMatch(/pushed a change made by b1/);
    expect(syncChangeProblem(change('b1', NOW), source(false))).toBeUndefined();
  });

  it('refuses changes and data versions stamped further ahead than the cluster allows, unless the local clock was never set', () => {
    expect(syncChangeProblem(change('b2', NOW + 299_000), source(true))).toBeUndefined();
    expect(syncChangeProblem(change('b2', NOW + 3_600_000), source(true))).toMatch(/3600 s ahead/);
    expect(syncChangeProblem(change('b2', NOW, NOW + 3_600_000), source(false))).toMatch(/ahead/);
    expect(syncChangeProblem(change('b2', NOW + 3_600_000), source(true, 0))).toBeUndefined();
    expect(syncChangeProblem(change('b2', NOW + 3_600_000), source(true, 300_000, 30_000))).toBeUndefined();
  });
});

describe('whose jobs a requester sees', () => {
  it('a client and a bridge their own, an operator and brokers every job', async () => {
    const { jobHidden } = await import('../../src/broker/job-visibility.js');
    expect(jobHidden('victim', 'victim', 'client')).toBeUndefined();
    expect(jobHidden('victim', 'mallory', 'client')).toMatch(/sees only its own jobs/);
    expect(jobHidden('victim', 'gate-7', 'bridge')).toMatch(/sees only its own jobs/);
    expect(jobHidden('victim', 'ops', 'operator')).toBeUndefined();
    expect(jobHidden('victim', 'command-post', 'client', ['command-post'])).toBeUndefined();
    expect(jobHidden('victim', 'mallory', 'client', ['command-post'])).toMatch(/sees only its own jobs/);
    expect(jobHidden('victim', 'br-2', 'broker')).toBeUndefined();
  });
});
