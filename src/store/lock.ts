import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { StoreError } from './errors.js';

interface LockContent {
  pid: number;
  nodeId: string;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM means it exists but belongs to someone else: still alive.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readLock(path: string): LockContent | undefined {
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockContent>;
    if (typeof parsed.pid === 'number' && typeof parsed.nodeId === 'string') return { pid: parsed.pid, nodeId: parsed.nodeId };
  } catch {
    // A torn or empty lock file is as good as none: its writer died before finishing it.
  }
  return undefined;
}

/**
 * A pid file that keeps two processes from running the same node directory at once. LMDB itself would
 * happily let both in, and two live nodes with one id would fight over the same MQTT client id.
 * A lock left behind by a SIGKILLed process is taken over: its pid is gone (or it is our own pid, as
 * happens to PID 1 in a restarted container).
 */
export class DirectoryLock {
  private constructor(private readonly path: string) {}

  static acquire(path: string, nodeId: string, dir: string): DirectoryLock {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, 'wx');
        writeSync(fd, JSON.stringify({ pid: process.pid, nodeId } satisfies LockContent));
        closeSync(fd);
        return new DirectoryLock(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new StoreError('store_open_failed', `cannot create lock file ${path}: ${(err as Error).message}`);
        }
      }
      const holder = readLock(path);
      if (holder !== undefined && holder.pid !== process.pid && processAlive(holder.pid)) {
        throw new StoreError(
          'store_locked',
          `data directory ${dir} is in use by process ${holder.pid} (node "${holder.nodeId}"); stop that process or choose another --data-dir`,
        );
      }
      try {
        unlinkSync(path);
      } catch {
        // Another starter removed it first; the next attempt will tell who won.
      }
    }
    throw new StoreError('store_locked', `data directory ${dir} is being claimed by another process; try again`);
  }

  release(): void {
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone: nothing to release.
    }
  }
}
