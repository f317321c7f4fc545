import type { JobClient } from '../../src/client/index.js';
import type { JobView } from '../../src/protocol/index.js';

/** Polls the job's broker every 50 ms until the job matches `ok`; fails with the last state seen. */
export async function waitForJob(jobs: Pick<JobClient, 'query'>, jobId: string, what: string, ok: (job: JobView) => boolean, timeoutMs: number): Promise<JobView> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const job = await jobs.query(jobId);
    if (ok(job)) return job;
    if (performance.now() > deadline) throw new Error(`job ${jobId} never became ${what}: ${JSON.stringify(job)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
