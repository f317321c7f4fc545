/**
 * Hybrid logical clock (Kulkarni, Demirbas et al., "Logical Physical Clocks",
 * 2014). Timestamps stay close to physical time, so they are meaningful to
 * humans and for last-writer-wins, yet they respect causality and stay
 * monotonic when the physical clock stalls or jumps backwards — e.g. a
 * Raspberry Pi without an RTC that boots with a stale clock and is later
 * corrected by NTP.
 */

export interface HlcTimestamp {
  /** Milliseconds since the Unix epoch. */
  readonly wall: number;
  /** Counter that orders events sharing the same `wall`. */
  readonly logical: number;
}

export class HybridLogicalClock {
  readonly #physicalNow: () => number;
  #wall = 0;
  #logical = 0;
  #maxDriftMs = 0;

  constructor(physicalNow: () => number = Date.now) {
    this.#physicalNow = physicalNow;
  }

  /**
   * Largest amount (ms) by which a received remote wall clock was ahead of our
   * physical clock; 0 if none ever was. Exposed for logging only: HLC stays
   * correct under drift, but a large value means some node's RTC is wrong and
   * every clock that hears from it gets dragged forward.
   */
  get maxObservedDriftMs(): number {
    return this.#maxDriftMs;
  }

  /** Timestamp for a local or send event. */
  now(): HlcTimestamp {
    const pt = this.#readPhysical();
    if (pt > this.#wall) {
      this.#wall = pt;
      this.#logical = 0;
    } else {
      this.#logical += 1;
    }
    return this.last();
  }

  /**
   * Timestamp for the receipt of a message stamped `remote`; the result is
   * greater than both `remote` and every timestamp this clock issued before.
   * `remote` is expected to be validated already (finite, non-negative
   * integers) by the protocol layer.
   */
  receive(remote: HlcTimestamp): HlcTimestamp {
    const pt = this.#readPhysical();
    const drift = remote.wall - pt;
    if (drift > this.#maxDriftMs) this.#maxDriftMs = drift;

    const wall = Math.max(this.#wall, remote.wall, pt);
    let logical: number;
    if (wall === this.#wall && wall === remote.wall) {
      logical = Math.max(this.#logical, remote.logical) + 1;
    } else if (wall === this.#wall) {
      logical = this.#logical + 1;
    } else if (wall === remote.wall) {
      logical = remote.logical + 1;
    } else {
      logical = 0;
    }
    this.#wall = wall;
    this.#logical = logical;
    return this.last();
  }

  /** Most recently issued timestamp; `{ wall: 0, logical: 0 }` before the first event. */
  last(): HlcTimestamp {
    return { wall: this.#wall, logical: this.#logical };
  }

  #readPhysical(): number {
    const raw = this.#physicalNow();
    // A broken time source must not poison the clock: Math.max with NaN would
    // make every later timestamp NaN. Falling back to -Infinity leaves the
    // logical counter to carry monotonicity.
    return Number.isFinite(raw) ? Math.floor(raw) : Number.NEGATIVE_INFINITY;
  }
}

/** Orders HLC timestamps by wall time, then logical counter. */
export function compareHlc(a: HlcTimestamp, b: HlcTimestamp): -1 | 0 | 1 {
  if (a.wall !== b.wall) return a.wall < b.wall ? -1 : 1;
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1;
  return 0;
}

/**
 * Deterministic total order over events, used wherever replicas must agree
 * without coordination (e.g. last-writer-wins): HLC time first (wall, then
 * logical), then node id compared as plain strings by UTF-16 code units; the
 * lower node id sorts first. Locale-aware comparison is deliberately avoided
 * because it can differ between hosts.
 */
export function compareEvents(
  a: { readonly hlc: HlcTimestamp; readonly node: string },
  b: { readonly hlc: HlcTimestamp; readonly node: string },
): -1 | 0 | 1 {
  const byTime = compareHlc(a.hlc, b.hlc);
  if (byTime !== 0) return byTime;
  if (a.node === b.node) return 0;
  return a.node < b.node ? -1 : 1;
}
