import { performance } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * How often a long-running process looks at whether it has gone quiet. More than 5 s: V8 judges the
 * allocation rate over the last 5 s of its collections, so the second collection of a quiet spell must
 * come that long after the first to be judged on the quiet alone.
 */
const CHECK_MS = 20_000;
/**
 * The share of a check interval the event loop may be busy and still count as quiet. An idle broker
 * handling the heartbeats of two nodes is busy 0.2% of the time (measured), so this leaves room for a few
 * dozen nodes; a broker running jobs is busy far more.
 */
const QUIET_UTILIZATION = 0.03;
/**
 * Collections per quiet spell, one check apart. V8 judges the allocation rate from what it recorded at its
 * last collections: the first one, right after the work, still sees the busy rate and shrinks nothing;
 * the second sees the quiet one. (Measured: 32 MiB of young generation kept after the first, 1 MiB left
 * after the second.)
 */
const COLLECTIONS = 2;
/** Heap V8 holds beyond what is live below which a collection would hand back too little to matter. */
const MIN_SLACK_BYTES = 4 << 20;

/**
 * Hands memory back once a long-running process goes quiet after work. V8 grows its young generation to
 * 32 MiB under load (two 16 MiB semi-spaces) and keeps it, and lets dead objects sit in the old
 * generation until it next needs room, which an idle process never does: a broker idle after 6,000 jobs
 * held 59 MiB of heap with 28 MiB live. V8 shrinks both only in a full collection made while the
 * allocation rate is low, which an idle process never triggers itself; this makes two, once per quiet
 * spell that follows busy time (a few milliseconds each), so a unit's memory falls back to its idle figure
 * instead of staying at its busiest. Running under load is left as it was, with V8's own sizing.
 *
 * `checkMs`: how often it looks (tests look more often). Returns a function that stops it.
 */
export function trimWhenQuiet(checkMs = CHECK_MS): () => void {
  // The collection function only: it exposes nothing to the process's own code (it lives in a
  // context of its own), and V8's heuristics are otherwise untouched.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (() => void) | undefined;
  if (typeof gc !== 'function') return () => undefined;
  let last = performance.eventLoopUtilization();
  // Starting up is work too: the first quiet spell trims what loading the code left behind.
  let collections = COLLECTIONS;
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    if (busy >= QUIET_UTILIZATION) {
      collections = COLLECTIONS;
      return;
    }
    if (collections === 0) return;
    collections--;
    const heap = getHeapStatistics();
    if (heap.total_heap_size - heap.used_heap_size >= MIN_SLACK_BYTES) gc();
  }, checkMs);
  timer.unref();
  return () => clearInterval(timer);
}
