import { inputsOf, type JobSpec, type JobState, type JobView } from '../protocol/index.js';

/**
 * Chaining, decided without I/O: a job that reads another job's named results waits for that job's
 * accepted result, never for whatever version of the names happens to exist (a previous run's). The job
 * manager asks `dependencyState` whenever a producer or a name changes, and acts on the answer.
 */

/** What the decision needs to know of a producer job. */
export interface ProducerView {
  readonly state: JobState;
  readonly reason?: string;
  readonly spec: Pick<JobSpec, 'named_results'>;
  readonly result?: Pick<NonNullable<JobView['result']>, 'named_results' | 'missing' | 'published'>;
}

export type DependencyState =
  /** Every producer succeeded and its names reached this broker: the job can be placed. */
  | { readonly kind: 'ready' }
  /** Still waiting; `jobs` and `names` say for what, `reason` says it in words. */
  | { readonly kind: 'wait'; readonly reason: string; readonly jobs: readonly string[]; readonly names: readonly string[] }
  /** A producer failed, or succeeded without publishing what this job reads: the job fails too. */
  | { readonly kind: 'fail'; readonly reason: string };

export interface DependencyLookup {
  /** The producer's record, wherever it is managed; undefined when no broker in sight knows it. */
  producer(jobId: string): ProducerView | undefined;
  /** The version of a name this broker would serve, if it knows the name. */
  located(name: string): readonly [number, number] | undefined;
  /** Why a producer this broker manages is still queued, if it is. */
  whyQueued(jobId: string): string | undefined;
}

const later = (a: readonly [number, number], b: readonly [number, number]) => a[0] > b[0] || (a[0] === b[0] && a[1] >= b[1]);

export function dependencyState(consumer: { readonly spec: JobSpec; readonly after: readonly string[] }, lookup: DependencyLookup): DependencyState {
  const reads = new Set(inputsOf(consumer.spec));
  const waits: string[] = [];
  const waitJobs: string[] = [];
  const waitNames: string[] = [];
  for (const producerId of consumer.after) {
    const producer = lookup.producer(producerId);
    if (producer === undefined) {
      waits.push(`job ${producerId}, which no broker in sight knows yet`);
      waitJobs.push(producerId);
      continue;
    }
    const names = Object.values(producer.spec.named_results).filter((name) => reads.has(name));
    const what = names.length > 0 ? names.map((n) => `"${n}"`).join(', ') : 'its result';
    if (producer.state === 'failed') {
      return { kind: 'fail', reason: `job ${producerId}, whose ${what} this job reads, failed: ${producer.reason ?? 'no reason given'}` };
    }
    if (producer.state !== 'succeeded') {
      const why = producer.state === 'queued' ? lookup.whyQueued(producerId) ?? producer.reason : undefined;
      waits.push(`job ${producerId} (${producer.state}${why !== undefined ? `: ${why}` : ''}) to publish ${what}`);
      waitJobs.push(producerId);
      continue;
    }
    const published = new Set(producer.result?.named_results ?? []);
    const unpublished = names.filter((name) => !published.has(name));
    if (unpublished.length > 0) {
      const missing = producer.result?.missing ?? [];
      return {
        kind: 'fail',
        reason: `job ${producerId} succeeded without publishing ${unpublished.map((n) => `"${n}"`).join(', ')}, which this job reads${missing.length > 0 ? ` (it did not leave ${missing.join(', ')})` : ''}`,
      };
    }
    // The names travel with the producer's record between brokers; until this broker holds at least the
    // version the producer published, serving the name could hand out an older one.
    for (const name of names) {
      const version = producer.result?.published?.[name]?.at;
      const here = lookup.located(name);
      if (here === undefined || (version !== undefined && !later(here, version))) {
        waits.push(`"${name}", published by job ${producerId}, to reach this broker`);
        waitNames.push(name);
      }
    }
  }
  if (waits.length === 0) return { kind: 'ready' };
  return { kind: 'wait', reason: `waiting for ${waits.join('; ')}`, jobs: waitJobs, names: waitNames };
}
