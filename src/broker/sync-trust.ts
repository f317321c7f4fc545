import type { Change } from './metadata-merge.js';

/** A local wall clock before this date was never set (no RTC, booted offline): it judges no peer's time. */
const CLOCK_SET_AFTER_MS = Date.UTC(2026, 0, 1);

export interface SyncSource {
  /** The broker the changes came from, as the hub proved it. */
  readonly sender: string;
  /** Pushed as they happened (the sender's own changes), rather than answering our digest. */
  readonly pushed: boolean;
  /** Local wall time. */
  readonly now: number;
  /** How far ahead of local time a change may be stamped (protocol.max_clock_offset_ms); 0: no bound. */
  readonly maxLeadMs: number;
}

/**
 * Whether a broker may hand us this change (PROTOCOL.md, "Broker metadata sync"): a push carries only the
 * sender's own changes (a broker speaks for itself; others' changes travel in answers to a digest), and no
 * change may be stamped further ahead of our clock than the cluster allows, or it would win every merge
 * for as long as that lead lasts. Pure: the replica counts what it returns.
 */
export function syncChangeProblem(change: Change, source: SyncSource): string | undefined {
  if (source.pushed && change.origin !== source.sender) return `${source.sender} pushed a change made by ${change.origin}; a broker pushes only its own`;
  if (source.maxLeadMs > 0 && source.now >= CLOCK_SET_AFTER_MS) {
    const lead = Math.max(change.hlc[0], change.location?.at[0] ?? 0) - source.now;
    if (lead > source.maxLeadMs) return `change ${change.table}/${change.key} from ${change.origin} is stamped ${Math.round(lead / 1_000)} s ahead of this broker's clock (at most ${Math.round(source.maxLeadMs / 1_000)} s)`;
  }
  return undefined;
}
