export {
  EMPTY_CLOCK,
  canonical,
  compare,
  dominates,
  merge,
  prune,
  size,
  tick,
} from './vector-clock.js';
export type { Ordering, VectorClock } from './vector-clock.js';
export { HybridLogicalClock, compareEvents, compareHlc } from './hlc.js';
export type { HlcTimestamp } from './hlc.js';
