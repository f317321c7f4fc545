export interface LoginLimiterOptions {
  /** Failed logins a source may make before it has to wait. */
  readonly freeFailures: number;
  /** The first wait; it doubles with every further failure, up to maxLockMs. */
  readonly baseLockMs: number;
  readonly maxLockMs: number;
  /** Sources remembered at most; the stalest are forgotten first, so a flood of addresses cannot exhaust memory. */
  readonly capacity: number;
  /** Failures this long ago no longer count: a source starts afresh. */
  readonly forgetAfterMs: number;
}

interface SourceState {
  failures: number;
  lockedUntil: number;
  lastFailure: number;
}

/** Per source address and user name: guessing one node's password. */
export const DEFAULT_LOGIN_LIMITS: LoginLimiterOptions = { freeFailures: 5, baseLockMs: 1_000, maxLockMs: 60_000, capacity: 10_000, forgetAfterMs: 15 * 60_000 };
/** Per source address, whatever the user name: spraying guesses over many nodes. */
export const DEFAULT_SOURCE_LIMITS: LoginLimiterOptions = { ...DEFAULT_LOGIN_LIMITS, freeFailures: 50 };

/**
 * Failed logins, per source address. After a few failures a source must wait before its next attempt is
 * even checked, and the wait doubles with each further failure: guessing a password over the network
 * costs minutes per handful of guesses instead of hundreds of guesses a second. A success clears the
 * source. Pure bookkeeping over an injected clock, so the rule can be tested without a hub.
 */
export class LoginLimiter {
  private readonly sources = new Map<string, SourceState>();

  constructor(
    private readonly options: LoginLimiterOptions = DEFAULT_LOGIN_LIMITS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Milliseconds the source must still wait before a login is checked; 0 if it may try now. */
  waitMs(source: string): number {
    const state = this.sources.get(source);
    if (state === undefined) return 0;
    return Math.max(0, state.lockedUntil - this.now());
  }

  failed(source: string): void {
    let state = this.sources.get(source);
    const now = this.now();
    if (state === undefined) {
      if (this.sources.size >= this.options.capacity) this.sources.delete(this.sources.keys().next().value!);
      state = { failures: 0, lockedUntil: 0, lastFailure: now };
    } else {
      // Re-inserted, so the map's order is least recently failed first.
      this.sources.delete(source);
      if (now - state.lastFailure > this.options.forgetAfterMs) state.failures = 0;
    }
    this.sources.set(source, state);
    state.lastFailure = now;
    state.failures++;
    const over = state.failures - this.options.freeFailures;
    if (over >= 0) state.lockedUntil = now + Math.min(this.options.maxLockMs, this.options.baseLockMs * 2 ** Math.min(over, 30));
  }

  succeeded(source: string): void {
    this.sources.delete(source);
  }
}
