import type { Table } from '../store/index.js';

/**
 * Remembers which messages were already handled, keyed by (sender, message id). QoS 1 delivers at least
 * once and senders retry their outbox, so the same message can arrive many times.
 *
 * Recent ids live in memory. Ids of durable messages are also written to LMDB, so a duplicate that arrives
 * after a restart is still recognised, and forgotten after the TTL.
 */
export class Deduplicator {
  /**
   * Two generations instead of an exact LRU: when the current one fills up it becomes the previous one,
   * so at least `window` and at most twice that many recent ids are remembered, at no per-message cost.
   */
  private current = new Set<string>();
  private previous = new Set<string>();

  constructor(
    private readonly window: number,
    private readonly persisted?: Table<number>,
  ) {}

  static key(from: string, id: string): string {
    return `${from}\u0000${id}`;
  }

  /** True if the message with this key was handled before (in memory, or on disk for durable ones). */
  seen(key: string, durable: boolean): boolean {
    if (this.current.has(key) || this.previous.has(key)) return true;
    if (durable && this.persisted?.get(key) !== undefined) {
      this.handled(key);
      return true;
    }
    return false;
  }

  /** Marks a message handled in memory. */
  handled(key: string): void {
    this.current.add(key);
    if (this.current.size >= this.window) {
      this.previous = this.current;
      this.current = new Set();
    }
  }

  /**
   * Records a handled durable message on disk; resolves when the write is committed. `atMs` is HLC wall
   * time, which never runs backwards, so a clock corrected backwards cannot keep ids forever.
   */
  async persist(key: string, atMs: number): Promise<void> {
    await this.persisted?.put(key, atMs);
  }

  /** Removes a recorded id again (its handling failed after all); resolves once committed. */
  async forget(key: string): Promise<void> {
    await this.persisted?.remove(key);
  }

  /** Drops on-disk ids recorded before `olderThanMs` (HLC wall time); returns how many went. */
  async prune(olderThanMs: number): Promise<number> {
    if (this.persisted === undefined) return 0;
    const stale: string[] = [];
    for (const { key, value } of this.persisted.getRange()) {
      if (value < olderThanMs) stale.push(key);
    }
    const table = this.persisted;
    await table.transaction(() => {
      for (const key of stale) table.remove(key);
    });
    return stale.length;
  }
}
