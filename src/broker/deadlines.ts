/**
 * One timer per job with an attempt running, keyed by job: arming again replaces the old deadline. Timers
 * do not keep the process alive, and only jobs that are running have one, so the cost is independent of
 * how many jobs the broker has ever seen.
 */
export class Deadlines {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  arm(jobId: string, at: number, onPast: () => void): void {
    this.disarm(jobId);
    const timer = setTimeout(() => {
      if (this.timers.get(jobId) === timer) this.timers.delete(jobId);
      onPast();
    }, Math.max(0, at - Date.now()));
    timer.unref();
    this.timers.set(jobId, timer);
  }

  disarm(jobId: string): void {
    const timer = this.timers.get(jobId);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.timers.delete(jobId);
  }

  clear(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }

  get size(): number {
    return this.timers.size;
  }
}
