import { describe, expect, it } from 'vitest';
import { Counters } from '../../src/transport/index.js';

describe('timings in status', () => {
  it('reports the count of everything observed and the percentiles of the most recent 1,024', () => {
    const counters = new Counters();
    // 1,000 slow ones, then 1,024 that are 1..1,024 ms: the slow ones have left the window.
    for (let i = 0; i < 1_000; i++) counters.time('decision_ms', 5_000);
    for (let i = 1; i <= 1_024; i++) counters.time('decision_ms', i);
    const t = counters.timingSummaries().decision_ms!;
    expect(t.count).toBe(2_024);
    expect(t.p50_ms).toBe(513);
    expect(t.p99_ms).toBe(1_014);
    expect(t.max_ms).toBe(1_024);
  });

  it('summarises a window that is not full yet from what it holds, rounded to hundredths', () => {
    const counters = new Counters();
    counters.time('submission_ms', 0.123_4);
    counters.time('submission_ms', 2.5);
    expect(counters.timingSummaries()).toEqual({ submission_ms: { count: 2, p50_ms: 2.5, p99_ms: 2.5, max_ms: 2.5 } });
    counters.time('submission_ms', 0.01);
    expect(counters.timingSummaries().submission_ms).toEqual({ count: 3, p50_ms: 0.12, p99_ms: 2.5, max_ms: 2.5 });
  });
});
