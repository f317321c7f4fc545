export { summarize, type LatencySummary } from '../../src/cli/latency.js';

export function round(n: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
