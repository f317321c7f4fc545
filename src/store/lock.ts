import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { StoreError } from './errors.js';

interface LockContent {
  pid: number;
  nodeId: string;
  /** Tells this holder's lock file from a later one with the same pid (a re-open in the same process). */
  token: string;
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
    if (typeof parsed.pid === 'number' && typeof parsed.nodeId === 'string') {
      return { pid: parsed.pid, nodeId: parsed.nodeId, token: typeof parsed.token === 'string' ? parsed.token : '' };
    }
  } catch {
    // Unreadable or garbage: no valid holder.
  }
  return undefined;
}

/**
 * A pid file that keeps two processes from running the same node directory at once. LMDB itself would
 * happily let both in, and two live nodes with one id would fight over the same MQTT client id.
 * A lock left behind by a SIGKILLed process is taken over: its pid is gone (or it is our own pid, as
 * happens to PID 1 in a restarted container).
 *
 * The file is written aside and hard-linked into place, so it never exists without its content, and a
 * link fails if another process got there first.
 */
export class DirectoryLock {
  private constructor(
    private readonly path: string,
    private readonly token: string,
  ) {}

  static acquire(path: string, nodeId: string, dir: string): DirectoryLock {
    const token = randomBytes(8).toString('hex');
    const aside = `${path}.${process.pid}.${token}`;
    try {
      writeFileSync(aside, JSON.stringify({ pid: process.pid, nodeId, token } satisfies LockContent));
    } catch (err) {
      throw new StoreError('store_open_failed', `cannot write in data directory ${dir}: ${(err as Error).message}`);
    }
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          linkSync(aside, path);
          return new DirectoryLock(path, token);
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
          // Another starter removed it first; the next attempt tells who won.
        }
      }
      throw new StoreError('store_locked', `data directory ${dir} is being claimed by another process; try again`);
    } finally {
      try {
        unlinkSync(aside);
      } catch {
        // Already gone.
      }
    }
  }

  /** Removes the lock file, but only if it is still this holder's. */
  release(): void {
    if (readLock(this.path)?.token !== this.token) return;
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone: nothing to release.
    }
  }
}
