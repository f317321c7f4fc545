import { zipSync, type Zippable } from 'fflate';
import { JOB_PATH_PATTERN } from '../../protocol/job.js';
import { filesBelow, formatBytes, type JobTree, type TreeNode } from './job-tree.js';

/** What a finished job delivers: its result archive and named results, read out of its tree. */
export interface CollectedResults {
  /** `<jobId>_result.zip` as REC names it. */
  readonly archive: Uint8Array;
  /** Paths (relative to the job root) of the files the archive holds. */
  readonly files: string[];
  /** Requested results (archive paths or named-result paths) that did not exist when the job ended. */
  readonly missing: string[];
  readonly named: Array<{ path: string; name: string; bytes: Uint8Array }>;
}

/** Results that cannot travel: the job fails with this outcome and reason instead. */
export interface UndeliverableResults {
  readonly outcome: 'result_too_large' | 'result_undeliverable';
  readonly message: string;
}

export interface CollectLimits {
  /** Archive plus named results of one job at most (executor.max_result_mb). */
  readonly maxBytes: number;
  /** Most file paths one result may list. */
  readonly maxFiles: number;
}

/** A fixed timestamp keeps an archive identical for identical results, whichever executor ran the job. */
const ZIP_MTIME = new Date('2000-01-01T00:00:00Z');

/**
 * Zips the paths in `results` (a file, or a directory taken whole) and reads the named results (a file
 * as it is; a directory zipped, as REC does). Everything comes from the job's tree, which has no links,
 * so nothing of the host can be in a result. Names a result message cannot carry, and results larger than
 * the unit's ceiling, are reported as undeliverable rather than sent to be refused. (Results larger than
 * one message are the executor's to stage before it reports them.)
 */
export function collectResults(tree: JobTree, results: readonly string[], namedResults: ReadonlyArray<readonly [string, string]>, limits: CollectLimits): CollectedResults | UndeliverableResults {
  const entries: Zippable = {};
  const files: string[] = [];
  const missing: string[] = [];
  let total = 0;
  const tooLarge = (): UndeliverableResults => ({ outcome: 'result_too_large', message: `the job's results exceed ${formatBytes(limits.maxBytes)}, the most this unit delivers for one job (executor.max_result_mb)` });
  for (const path of results) {
    const node = tree.find(path);
    if (node === undefined) {
      missing.push(path);
      continue;
    }
    for (const [rel, file] of node.kind === 'dir' ? filesBelow(node).map(([p, f]) => [join(path, p), f] as const) : [[path, node] as const]) {
      if (entries[rel] !== undefined) continue;
      const bad = undeliverablePath(rel);
      if (bad !== undefined) return bad;
      total += file.size;
      if (total > limits.maxBytes) return tooLarge();
      if (files.length >= limits.maxFiles) {
        return { outcome: 'result_undeliverable', message: `the results hold more than ${limits.maxFiles} files, the most one result can list; archive them into fewer files` };
      }
      entries[rel] = [file.data.subarray(0, file.size), { level: 6 }];
      files.push(rel);
    }
  }
  const archive = zipSync(entries, { mtime: ZIP_MTIME });
  total = archive.byteLength;
  const named: CollectedResults['named'] = [];
  for (const [path, name] of namedResults) {
    const node = tree.find(path);
    if (node === undefined) {
      if (!missing.includes(path)) missing.push(path);
      continue;
    }
    // A view, not a copy: the tree is dropped after the run, and the reply to the executor copies it once.
    const bytes = node.kind === 'dir' ? zipDirectory(node) : node.data.subarray(0, node.size);
    total += bytes.byteLength;
    if (total > limits.maxBytes) return tooLarge();
    named.push({ path, name, bytes });
  }
  return { archive, files, missing, named };
}

/** The last non-empty line of a stream (at most 200 characters), to say why a job failed. */
export function lastLine(text: string): string {
  const line = text.slice(-4_096).split('\n').filter((l) => l.trim() !== '').pop() ?? '';
  return line.trim().slice(0, 200);
}

function zipDirectory(dir: Extract<TreeNode, { kind: 'dir' }>): Uint8Array {
  const entries: Zippable = {};
  for (const [rel, file] of filesBelow(dir)) entries[rel] = [file.data.subarray(0, file.size), { level: 6 }];
  return zipSync(entries, { mtime: ZIP_MTIME });
}

function undeliverablePath(path: string): UndeliverableResults | undefined {
  if (path.length <= 512 && JOB_PATH_PATTERN.test(path)) return undefined;
  return {
    outcome: 'result_undeliverable',
    message: `result file ${JSON.stringify(path.slice(0, 200))} has a name a result cannot carry: a result path may use letters, digits, '.', '_', '-' and '/', up to 512 characters`,
  };
}

function join(dir: string, rel: string): string {
  return rel === '' ? dir : `${dir.replace(/\/+$/, '')}/${rel}`;
}
