import { HybridLogicalClock, merge, EMPTY_CLOCK, size, type HlcTimestamp, type VectorClock } from '../clock/index.js';
import type { NodeStore } from '../store/index.js';

/** How many vector clock ticks a broker reserves on disk at a time. */
const COUNTER_BLOCK = 10_000;
/** The most entries a merged vector clock may hold; the wire limit is the same. */
export const MAX_CLOCK_ENTRIES = 1_024;
/**
 * A logical counter this large means a peer is broken or hostile: a genuine one only grows while the wall
 * clock stands still, by one per event. Adopting it would push our own past the wire limit.
 */
const MAX_ADOPTED_LOGICAL = 2 ** 24;

/** Which of a message's clocks were adopted. */
export interface ObserveOutcome {
  readonly hlc: boolean;
  readonly vc: boolean;
  /** Entries left out because they name no broker this node knows of. */
  readonly ignored: number;
}

/**
 * A local wall clock before this date has never been set (a unit without RTC that booted offline): it is
 * no yardstick for how far ahead a peer's clock may be, so the bound is not applied until it is set.
 */
const CLOCK_SET_AFTER_MS = Date.UTC(2026, 0, 1);

/**
 * The node's clocks: what it stamps on every message and what it learns from every message received.
 *
 * One message must not be able to wreck a node's clocks, so remote timestamps are adopted only when
 * plausible: an HLC whose logical counter is sane and, if `maxOffsetMs` is set, whose wall time is no
 * further ahead of local time than that (the ε of the HLC paper); and a vector clock that neither claims
 * more of our own events than we made nor grows past its size limit. A refused clock does not refuse the
 * message: ordering then rests on what the node already knew.
 *
 * A unit whose own clock was never set (no RTC, booted offline) adopts any HLC, so that it can catch up
 * with the cluster's time; `maxOffsetMs` 0 removes the bound for everyone.
 */
export class ClockKeeper {
  readonly hlc: HybridLogicalClock;
  private vc: VectorClock = EMPTY_CLOCK;
  private counter = 0;
  private reservedUntil = 0;

  /**
   * @param owner the node id whose entry this node ticks, or undefined for nodes that own no entry
   *   (only brokers do).
   * @param store where a broker reserves its counter, so that it never goes backwards across restarts.
   */
  constructor(
    private readonly owner: string | undefined,
    private readonly maxOffsetMs: number,
    private readonly store?: NodeStore,
    private readonly wallNow: () => number = Date.now,
  ) {
    this.hlc = new HybridLogicalClock(wallNow);
  }

  /** Timestamps for one outgoing message. */
  stamp(): { vc: VectorClock; hlc: HlcTimestamp } {
    if (this.owner !== undefined) {
      this.counter++;
      if (this.counter > this.reservedUntil) this.reserve();
      this.vc = merge(this.vc, { [this.owner]: this.counter });
    }
    return { vc: this.vc, hlc: this.hlc.now() };
  }

  /**
   * Learns from a received message's clocks. Only brokers own vector-clock entries, so an entry is
   * merged only if `isBroker` says its id is a broker this node knows (by its proven role): a message
   * cannot grow every node's clock, and with it every message, by naming brokers that do not exist.
   */
  observe(vc: VectorClock, hlc: HlcTimestamp, isBroker: (id: string) => boolean = () => true): ObserveOutcome {
    const now = this.wallNow();
    const plausibleWall = this.maxOffsetMs === 0 || now < CLOCK_SET_AFTER_MS || hlc.wall - now <= this.maxOffsetMs;
    const hlcOk = plausibleWall && hlc.logical <= MAX_ADOPTED_LOGICAL;
    if (hlcOk) this.hlc.receive(hlc);
    let vcOk = this.owner === undefined || (vc[this.owner] ?? 0) <= this.counter;
    let ignored = 0;
    if (vcOk) {
      let known: Record<string, number> | undefined;
      for (const id in vc) {
        if (id === this.owner || isBroker(id)) {
          if (known !== undefined) known[id] = vc[id]!;
        } else {
          // Copied only once an unknown entry turns up: the common message names known brokers only.
          if (known === undefined) {
            known = {};
            for (const k in vc) {
              if (k === id) break;
              known[k] = vc[k]!;
            }
          }
          ignored++;
        }
      }
      const merged = merge(this.vc, known ?? vc);
      if (size(merged) > MAX_CLOCK_ENTRIES) vcOk = false;
      else this.vc = merged;
    }
    return { hlc: hlcOk, vc: vcOk, ignored };
  }

  clock(): VectorClock {
    return this.vc;
  }

  get maxObservedDriftMs(): number {
    return this.hlc.maxObservedDriftMs;
  }

  private reserve(): void {
    if (this.store === undefined) {
      this.reservedUntil = Number.MAX_SAFE_INTEGER;
      return;
    }
    const start = this.store.reserve('vector_clock', COUNTER_BLOCK);
    // Resume after everything an earlier run may have used: its whole reserved block.
    if (this.counter <= start) this.counter = start + 1;
    this.reservedUntil = start + COUNTER_BLOCK;
  }
}
