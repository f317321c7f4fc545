import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { UcpConfig } from '../config/index.js';
import type { Role } from '../protocol/index.js';
import type { NodeRuntime } from '../transport/index.js';

/** Room left in a message for the envelope and the job_result fields around inline results. */
const RESULT_ENVELOPE_BYTES = 64 * 1_024;

/**
 * Gives a node its role's behaviour. Called before the node connects, so no request of the role's kinds
 * can arrive unhandled. Roles never import each other: the CLI is where they meet, and it loads a role's
 * code only for a node that has that role.
 */
export async function attachRole(node: NodeRuntime, role: Role, config: UcpConfig): Promise<void> {
  switch (role) {
    case 'broker': {
      const { DataRouter, JobManager, MetadataReplica, NodeRegistry } = await import('../broker/index.js');
      const replica = new MetadataReplica(node, {
        intervalMs: config.metadata_sync.interval_s * 1_000,
        retryOnFailure: config.metadata_sync.retry_on_failure,
        failureRetryMs: config.metadata_sync.failure_retry_interval_s * 1_000,
        maxClockLeadMs: config.protocol.max_clock_offset_ms,
      });
      new NodeRegistry(node, replica);
      const data = new DataRouter(node, replica, { maxBytesPerClient: config.budgets.max_bytes_per_client });
      new JobManager(node, data, replica, {
        agingMs: config.scheduler.aging_s * 1_000,
        inlineResultBytes: config.scheduler.inline_result_bytes,
        metadataArchiveBytes: config.scheduler.metadata_archive_bytes,
        maxRedeploys: config.scheduler.max_redeploy_attempts,
        redeployDelayMs: config.scheduler.redeploy_delay_ms,
        delegateAfterMs: config.scheduler.delegate_after_ms,
        deadlineMarginMs: config.scheduler.deadline_margin_s * 1_000,
        retention: { maxAgeMs: config.jobs.retention_s * 1_000, maxCount: config.jobs.retention_count },
        deadAfterMs: config.liveness.dead_after_ms,
        maxJobsPerClient: config.budgets.max_jobs_per_client,
        maxBytesPerClient: config.budgets.max_bytes_per_client,
      });
      return;
    }
    case 'datastore': {
      const { DatastoreNode } = await import('../datastore/index.js');
      new DatastoreNode(node, config.datastore.max_object_bytes, config.transport.dedup_ttl_s * 1_000);
      return;
    }
    case 'executor': {
      const { JobRunner } = await import('../executor/index.js');
      const runner = new JobRunner(node, {
        slots: config.executor.slots > 0 ? config.executor.slots : availableParallelism(),
        tags: config.executor.tags,
        workDir: join(node.store.dir, 'jobs'),
        resultDir: join(node.store.dir, 'staged-results'),
        keepJobDirs: config.executor.keep_job_dirs,
        inlineResultBytes: Math.max(1_024, config.protocol.max_message_bytes - RESULT_ENVELOPE_BYTES),
        limits: {
          memoryBytes: config.executor.max_memory_mb * 1_048_576,
          outputBytes: config.executor.max_output_mb * 1_048_576,
          jobMs: config.executor.max_job_seconds * 1_000,
          files: config.executor.max_files,
          resultBytes: config.executor.max_result_mb * 1_048_576,
        },
        sandboxIdleMs: config.executor.sandbox_idle_s * 1_000,
      });
      node.onConnected(() => runner.resume());
      node.beforeStop(() => runner.stop());
      return;
    }
    default:
      return;
  }
}
