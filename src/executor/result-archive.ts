import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { zipSync, type Zippable } from 'fflate';

export interface ResultArchive {
  /** The zip file's bytes: `<jobId>_result.zip` as REC names it. */
  readonly zip: Uint8Array;
  /** Paths (relative to the job directory) of the files it holds. */
  readonly files: readonly string[];
  /** Requested result paths that did not exist when the job ended. */
  readonly missing: readonly string[];
}

/** A result archive larger than this is refused: results travel as named data. */
export class ResultTooLargeError extends Error {
  readonly code = 'result_too_large';
}

/**
 * Zips a finished job's results: each path in `results` (a file, or a directory taken whole) relative to
 * the job directory. Symbolic links are skipped and nothing outside the job directory is read, whatever
 * the module left behind, so a job cannot smuggle host files into its results. `extra` adds files the
 * executor itself wrote outside the job directory, such as captured stdout.
 */
export function buildResultArchive(jobDir: string, results: readonly string[], maxBytes: number, extra: Readonly<Record<string, string>> = {}): ResultArchive {
  const root = resolve(jobDir);
  const entries: Zippable = {};
  const files: string[] = [];
  const missing: string[] = [];
  let total = 0;
  const add = (abs: string) => {
    const rel = relative(root, abs);
    if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) return;
    const stat = lstatSync(abs, { throwIfNoEntry: false });
    if (stat === undefined || stat.isSymbolicLink()) return;
    if (stat.isDirectory()) {
      for (const name of readdirSync(abs).sort()) add(join(abs, name));
      return;
    }
    if (!stat.isFile()) return;
    total += stat.size;
    if (total > maxBytes) throw new ResultTooLargeError(`the job's results exceed ${maxBytes} bytes`);
    const key = rel.split(sep).join('/');
    entries[key] = [readFileSync(abs), { level: 6 }];
    files.push(key);
  };
  for (const path of results) {
    const abs = resolve(root, path);
    if (lstatSync(abs, { throwIfNoEntry: false }) === undefined) missing.push(path);
    else add(abs);
  }
  // Host files the executor wrote itself (captured streams), stored under the given entry names.
  for (const [key, abs] of Object.entries(extra)) {
    if (entries[key] !== undefined) continue;
    const stat = lstatSync(abs, { throwIfNoEntry: false });
    if (stat === undefined || !stat.isFile()) continue;
    total += stat.size;
    if (total > maxBytes) throw new ResultTooLargeError(`the job's results exceed ${maxBytes} bytes`);
    entries[key] = [readFileSync(abs), { level: 6 }];
    files.push(key);
  }
  // A fixed timestamp keeps the archive identical for identical results, whichever executor ran the job.
  const zip = zipSync(entries, { mtime: new Date('2000-01-01T00:00:00Z') });
  return { zip, files, missing };
}
