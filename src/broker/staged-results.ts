import { stagingPrefix, type StagedObject } from '../protocol/index.js';
import type { StagedMove } from './data-router.js';

/** A result object's content as a job_result carries it: the bytes, or where they were staged. */
export type ResultContent = Uint8Array | StagedObject;

/** What publishing one result takes: names stored from inline bytes, staged objects renamed into place. */
export interface Publication {
  readonly inline: ReadonlyArray<{ name: string; bytes: Uint8Array }>;
  readonly moves: readonly StagedMove[];
  /** Each published name's size. */
  readonly sizes: ReadonlyMap<string, number>;
}

/**
 * Splits a result's objects into inline ones and staged ones, and checks each staged reference as far as
 * the message alone allows (PROTOCOL.md, "Results larger than one message"): it must lie under the
 * staging prefix of the job and attempt that reported it, and no staged object may be published twice.
 * Returns the reason otherwise, since an executor pointing its broker at data that is not its attempt's
 * (another job's result, another attempt's staging, a user's data) must publish nothing. Whether the
 * object exists with that size and digest is the datastore's check, when it is moved.
 */
export function planPublication(jobId: string, attempt: number, items: ReadonlyArray<{ name: string; content: ResultContent }>): Publication | { problem: string } {
  const prefix = stagingPrefix(jobId, attempt);
  const inline: Array<{ name: string; bytes: Uint8Array }> = [];
  const moves: StagedMove[] = [];
  const sizes = new Map<string, number>();
  const staged = new Set<string>();
  for (const { name, content } of items) {
    // A name given twice (two named results published under one name) keeps the first, as two writes
    // of one version do.
    if (sizes.has(name)) continue;
    if (content instanceof Uint8Array) {
      inline.push({ name, bytes: content });
      sizes.set(name, content.byteLength);
      continue;
    }
    if (!content.name.startsWith(prefix)) return { problem: `"${content.name}" is not under "${prefix}", where attempt ${attempt} of job ${jobId} stages its results` };
    if (staged.has(content.name)) return { problem: `"${content.name}" is referenced twice` };
    staged.add(content.name);
    moves.push({ from: content.name, to: name, size: content.size, digest: content.digest });
    sizes.set(name, content.size);
  }
  return { inline, moves, sizes };
}
