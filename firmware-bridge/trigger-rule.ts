import type { Trigger } from './bridge-config.js';

/** What a rule remembers per watched name. */
export interface RuleState {
  seen: number;
  lastFiredAt?: number;
  lastValue?: number;
}

/**
 * Whether a reading fires a trigger, without I/O: every reading; every `count`-th; at most every
 * `interval`; or when a threshold is crossed (the value goes above `above`, or below `below`, from the
 * other side; the first reading counts as a crossing). `interval_s` also spaces threshold firings.
 */
export function fires(rule: Pick<Trigger, 'when' | 'count' | 'intervalMs' | 'above' | 'below'>, state: RuleState, value: unknown, now: number): boolean {
  state.seen++;
  const spaced = state.lastFiredAt === undefined || now - state.lastFiredAt >= rule.intervalMs;
  let fire: boolean;
  switch (rule.when) {
    case 'every':
      fire = spaced;
      break;
    case 'count':
      fire = state.seen % rule.count === 0;
      break;
    case 'interval':
      fire = spaced;
      break;
    case 'threshold': {
      if (typeof value !== 'number') return false;
      const prev = state.lastValue;
      state.lastValue = value;
      const up = rule.above !== undefined && value > rule.above && (prev === undefined || prev <= rule.above);
      const down = rule.below !== undefined && value < rule.below && (prev === undefined || prev >= rule.below);
      fire = (up || down) && spaced;
      break;
    }
  }
  if (fire) state.lastFiredAt = now;
  return fire;
}
