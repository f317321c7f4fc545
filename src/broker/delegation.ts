import { unmetRequirement, type Requirements } from '../protocol/index.js';
import type { NodeRuntime } from '../transport/index.js';
import type { MetadataReplica, SyncedJob } from './metadata-replica.js';

/** What delegation needs from the broker's job table. */
export interface DelegationHost {
  /** This broker's jobs waiting in its queue for an executor. */
  queued(): Iterable<SyncedJob>;
  /** Whether an executor this broker sees can run a job that needs this, busy or not. */
  canRun(needs: Requirements): boolean;
  /** The live peer brokers. */
  peerBrokers(): string[];
  /** A peer took the job: this broker stops managing it. */
  handOver(jobId: string): void;
}

/**
 * Cross-broker scheduling. With hubs bridged for broker traffic only, each broker sees only its own
 * district's executors. A queued job that no executor in sight can run (not merely a busy one) is offered,
 * once it has waited `afterMs`, to the peer brokers in turn; the first that sees a capable executor takes
 * it over (job_delegate). Peers are ordered by the replicated registry.
 */
export class Delegation {
  /** Stranded jobs, and since when (local monotonic time). */
  private readonly stranded = new Map<string, number>();
  private busy = false;
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly node: NodeRuntime,
    private readonly replica: MetadataReplica,
    private readonly host: DelegationHost,
    private readonly afterMs: number,
  ) {
    // Only with a peer broker alive is there anyone to offer a job to: a broker alone does not tick.
    node.link.onPresence((event) => {
      if (event.peer.role === 'broker') this.arm();
    });
    node.onConnected(() => this.arm());
    node.beforeStop(async () => {
      this.stopped = true;
      clearInterval(this.timer);
    });
  }

  private arm(): void {
    const peers = this.host.peerBrokers().length > 0;
    if (peers && this.timer === undefined && !this.stopped) {
      this.timer = setInterval(() => void this.offerStranded(), Math.max(250, Math.floor(this.afterMs / 4)));
      this.timer.unref();
    } else if (!peers && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
      // Waiting with no one to offer to does not count: the wait starts again when a peer appears.
      this.stranded.clear();
    }
  }

  private async offerStranded(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const now = performance.now();
      const live = this.host.peerBrokers();
      const waiting = new Set<string>();
      for (const job of this.host.queued()) {
        if (this.host.canRun(job.spec.capabilities)) continue;
        waiting.add(job.job_id);
        const since = this.stranded.get(job.job_id) ?? now;
        this.stranded.set(job.job_id, since);
        const peers = this.candidatesFor(job, live);
        if (now - since < this.afterMs || peers.length === 0) continue;
        if (!(await this.offer(job, peers))) this.stranded.set(job.job_id, performance.now());
      }
      for (const jobId of this.stranded.keys()) if (!waiting.has(jobId)) this.stranded.delete(jobId);
    } finally {
      this.busy = false;
    }
  }

  /** Asks each peer in turn to take the job; true once one did. */
  private async offer(job: SyncedJob, peers: readonly string[]): Promise<boolean> {
    for (const peer of peers) {
      try {
        const reply = await this.node.link.request(peer, 'job_delegate', { job });
        if (reply.kind !== 'job_accepted') continue;
        // The peer's record (naming it) may have arrived by sync already and taken the job off us.
        this.host.handOver(job.job_id);
        this.stranded.delete(job.job_id);
        this.node.link.counters.inc('jobs_delegated');
        this.node.log.info({ job: job.job_id, to: peer }, 'delegated a job no executor in sight can run');
        return true;
      } catch {
        // Refused (it sees no capable executor either) or unreachable: ask the next peer.
      }
    }
    return false;
  }

  /**
   * The peer brokers to offer a job to, from the replicated registry: first those that recorded a live
   * executor able to run it; brokers that recorded executors but none able are left out; brokers that
   * recorded none (nothing synced from them yet) are asked last.
   */
  private candidatesFor(job: SyncedJob, live: readonly string[]): string[] {
    const recorded = new Set<string>();
    const able = new Set<string>();
    for (const { broker, node } of this.replica.registry()) {
      if (node.role !== 'executor' || !live.includes(broker)) continue;
      recorded.add(broker);
      if (node.alive && node.capabilities !== undefined && unmetRequirement(node.capabilities, job.spec.capabilities) === undefined) able.add(broker);
    }
    return [...live.filter((b) => able.has(b)), ...live.filter((b) => !recorded.has(b))];
  }
}
