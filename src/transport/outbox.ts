import type { Table } from '../store/index.js';

export interface OutboxEntry {
  readonly id: string;
  readonly to: string;
  readonly topic: string;
  readonly kind: string;
  readonly payload: Uint8Array;
  readonly createdAt: number;
}

interface Pending {
  entry: OutboxEntry;
  attempts: number;
  nextAttemptAt: number;
  waiters: Array<{ resolve: () => void; reject: (err: Error) => void }>;
}

/** A retry waits between this fraction of its backoff and 0.4 more. */
export const RETRY_JITTER_LOW = 0.8;

export interface OutboxTiming {
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
}

/**
 * Messages kept in LMDB until their receiver acknowledges them at the application level. The hub is not
 * trusted for durability: a message survives the sender's restart and is retried with exponential backoff,
 * and at once when the receiver is seen coming back.
 */
export class DurableOutbox {
  private readonly pending = new Map<string, Pending>();
  /**
   * Acknowledged messages still on disk. Their removal rides with the next message stored, or goes after
   * `removalDelayMs`: it needs no commit of its own, because a message sent again after a crash is only
   * acknowledged again (the receiver remembers what it handled).
   */
  private readonly acknowledged: string[] = [];
  private removalTimer?: NodeJS.Timeout;

  constructor(
    private readonly table: Table<OutboxEntry>,
    private readonly timing: OutboxTiming,
    private readonly now: () => number = () => performance.now(),
    private readonly removalDelayMs = 1_000,
  ) {
    for (const { value } of table.getRange()) this.track(value, 0);
  }

  get size(): number {
    return this.pending.size;
  }

  /** Stores a message the caller is sending now; resolves once the write is committed. */
  async add(entry: OutboxEntry): Promise<void> {
    const p = this.track(entry, 0);
    this.schedule(p, this.now());
    this.removeAcknowledged();
    try {
      await this.table.put(entry.id, entry);
    } catch (err) {
      // Not stored, so not promised: the caller learns it failed, and nothing retries it behind its back.
      this.pending.delete(entry.id);
      throw err;
    }
  }

  /** Resolves when the receiver acknowledges the message (at once if it is not pending). */
  delivered(id: string): Promise<void> {
    const p = this.pending.get(id);
    if (p === undefined) return Promise.resolve();
    return new Promise((resolve, reject) => p.waiters.push({ resolve, reject }));
  }

  /** Rejects everyone waiting for a delivery (the link is stopping); the messages themselves stay. */
  abandonWaiters(err: Error): void {
    for (const p of this.pending.values()) for (const w of p.waiters.splice(0)) w.reject(err);
  }

  /**
   * The acknowledgement arrived: forget the message. Returns false for an unknown or repeated ack, and for
   * an ack from anyone but the message's receiver.
   */
  acknowledge(id: string, from: string): boolean {
    const p = this.pending.get(id);
    if (p === undefined || p.entry.to !== from) return false;
    this.pending.delete(id);
    this.acknowledged.push(id);
    this.removalTimer ??= setTimeout(() => this.removeAcknowledged(), this.removalDelayMs).unref();
    for (const w of p.waiters) w.resolve();
    return true;
  }

  /** Issues the removals of acknowledged messages now (they commit with whatever else is written). */
  removeAcknowledged(): void {
    clearTimeout(this.removalTimer);
    this.removalTimer = undefined;
    // A failed removal only means the message is sent once more after a restart, and acknowledged again.
    for (const id of this.acknowledged.splice(0)) {
      try {
        this.table.remove(id).catch(() => undefined);
      } catch {
        // The store closed first (the node is stopping): the message is acknowledged again next start.
      }
    }
  }

  /**
   * Gives up messages to `to` of one kind that are no longer wanted (the work they carry went elsewhere).
   * Their waiters are rejected with `reason`. Returns how many were withdrawn.
   */
  withdraw(to: string, kind: string, reason: Error): number {
    let n = 0;
    for (const [id, p] of this.pending) {
      if (p.entry.to !== to || p.entry.kind !== kind) continue;
      this.pending.delete(id);
      this.table.remove(id).catch(() => undefined);
      for (const w of p.waiters) w.reject(reason);
      n++;
    }
    return n;
  }

  /**
   * Sends messages of one kind that wait for `from` to `to` instead (on `topic`), due at once: e.g. job
   * results owed to a broker that was lost, to the broker that adopted its jobs. The acknowledgement must
   * then come from `to`. Returns how many.
   */
  redirect(from: string, kind: string, to: string, topic: string): number {
    let n = 0;
    const now = this.now();
    for (const p of this.pending.values()) {
      if (p.entry.to !== from || p.entry.kind !== kind) continue;
      p.entry = { ...p.entry, to, topic };
      p.attempts = 0;
      p.nextAttemptAt = now;
      this.table.put(p.entry.id, p.entry).catch(() => undefined);
      n++;
    }
    return n;
  }

  /** Receivers that messages of `kind` are waiting for. */
  receivers(kind: string): Set<string> {
    const to = new Set<string>();
    for (const p of this.pending.values()) if (p.entry.kind === kind) to.add(p.entry.to);
    return to;
  }

  /**
   * Entries whose retry is due; each is rescheduled with backoff as it is returned. Entries for receivers
   * `held` says to hold back are left as they are: they are made due when the receiver reappears.
   */
  due(held: (to: string) => boolean = () => false): OutboxEntry[] {
    const now = this.now();
    const out: OutboxEntry[] = [];
    for (const p of this.pending.values()) {
      if (p.nextAttemptAt <= now && !held(p.entry.to)) {
        out.push(p.entry);
        this.schedule(p, now);
      }
    }
    return out;
  }

  /** When the next retry is due, among the entries `held` does not hold back; undefined: none is. */
  nextDueAt(held: (to: string) => boolean = () => false): number | undefined {
    let next: number | undefined;
    for (const p of this.pending.values()) if ((next === undefined || p.nextAttemptAt < next) && !held(p.entry.to)) next = p.nextAttemptAt;
    return next;
  }

  /** Makes every message for `to` (or all, when omitted) due now, e.g. when the receiver reappears. */
  expedite(to?: string): void {
    const now = this.now();
    for (const p of this.pending.values()) {
      if (to === undefined || p.entry.to === to) {
        p.nextAttemptAt = now;
        p.attempts = 0;
      }
    }
  }

  entries(): OutboxEntry[] {
    return [...this.pending.values()].map((p) => p.entry);
  }

  private track(entry: OutboxEntry, dueAt: number): Pending {
    const p: Pending = { entry, attempts: 0, nextAttemptAt: dueAt, waiters: [] };
    this.pending.set(entry.id, p);
    return p;
  }

  private schedule(p: Pending, now: number): void {
    const backoff = Math.min(this.timing.retryMaxMs, this.timing.retryInitialMs * 2 ** Math.min(p.attempts, 30));
    // Jitter keeps many nodes that lost the same receiver from retrying in lockstep.
    p.nextAttemptAt = now + backoff * (RETRY_JITTER_LOW + Math.random() * 0.4);
    p.attempts++;
  }
}
