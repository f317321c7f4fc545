import type { Table } from '../store/index.js';

/**
 * Remembers which messages were already handled, keyed by (sender, message id). QoS 1 delivers at least
 * once and senders retry their outbox, so the same message can arrive many times.
 *
 * Recent ids live in memory. Ids of durable messages are also written to LMDB, so a duplicate that arrives
 * after a restart is still recognised, and forgotten after the TTL.
 */
export class Deduplicator {
  private readonly recent = new Set<string>();

  constructor(
    private readonly window: number,
    private readonly persisted?: Table<number>,
  ) {}

  static key(from: string, id: string): string {
    return `${from}\u0000${id}`;
  }

  /** True if this message was handled before (in memory, or on disk for durable messages). */
  seen(from: string, id: string, durable: boolean): boolean {
    const key = Deduplicator.key(from, id);
    if (this.recent.has(key)) return true;
    if (durable && this.persisted?.get(key) !== undefined) {
      this.remember(key);
      return true;
    }
    return false;
  }

  /** Marks a message handled in memory. */
  handled(from: string, id: string): void {
    this.remember(Deduplicator.key(from, id));
  }

  /**
   * Records a handled durable message on disk; resolves when the write is committed. `atMs` is HLC wall
   * time, which never runs backwards, so a clock corrected backwards cannot keep ids forever.
   */
  async persist(from: string, id: string, atMs: number): Promise<void> {
    await this.persisted?.put(Deduplicator.key(from, id), atMs);
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

  private remember(key: string): void {
    this.recent.add(key);
    if (this.recent.size > this.window) {
      // Sets iterate in insertion order, so the first entry is the oldest.
      const oldest = this.recent.values().next().value;
      if (oldest !== undefined) this.recent.delete(oldest);
    }
  }
}
