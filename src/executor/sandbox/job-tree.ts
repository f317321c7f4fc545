/**
 * A job's file tree, held in memory. It is the whole of what a job can see: the job's `/` is this tree's
 * root and nothing maps onto a host file, so no path a job can name reaches the host. The tree has no
 * symbolic or hard links (the WASI layer refuses to make them), every name is resolved here component by
 * component, and `..` stops at the root.
 *
 * Limits are the executor's: a job that writes past its output budget is ended (`OutputLimitError`),
 * and one that creates too many files and directories is refused more (EDQUOT).
 */

export interface FileNode {
  readonly kind: 'file';
  readonly ino: number;
  /** Backing store; only the first `size` bytes are the file. Grown by doubling. */
  data: Uint8Array;
  size: number;
  atime: bigint;
  mtime: bigint;
  ctime: bigint;
}

export interface DirNode {
  readonly kind: 'dir';
  readonly ino: number;
  readonly entries: Map<string, TreeNode>;
  /** Undefined for the root, whose `..` is itself: the job cannot climb above it. */
  parent: DirNode | undefined;
  atime: bigint;
  mtime: bigint;
  ctime: bigint;
}

export type TreeNode = FileNode | DirNode;

export interface TreeLimits {
  /** Bytes the job may write in all, files and streams together (counted as written, not as kept). */
  readonly outputBytes: number;
  /** Files and directories the job may create. */
  readonly maxNodes: number;
}

/** WASI errno values used by the tree; the WASI layer returns them to the job as they are. */
export const Errno = {
  SUCCESS: 0,
  TOOBIG: 1,
  ACCES: 2,
  AGAIN: 6,
  BADF: 8,
  BUSY: 10,
  DQUOT: 19,
  EXIST: 20,
  FAULT: 21,
  FBIG: 22,
  ILSEQ: 25,
  INVAL: 28,
  IO: 29,
  ISDIR: 31,
  MFILE: 33,
  NAMETOOLONG: 37,
  NOENT: 44,
  NOSYS: 52,
  NOTDIR: 54,
  NOTEMPTY: 55,
  NOTSOCK: 57,
  NOTSUP: 58,
  OVERFLOW: 61,
  PERM: 63,
  SPIPE: 70,
  NOTCAPABLE: 76,
} as const;

/** A failed tree operation: the errno the job receives. */
export class TreeError extends Error {
  constructor(readonly errno: number) {
    super(`errno ${errno}`);
  }
}

/** The job wrote more than its output budget: the run ends here, with outcome output_limit. */
export class OutputLimitError extends Error {
  readonly code = 'output_limit';
}

const MAX_NAME_BYTES = 255;
const MAX_PATH_BYTES = 4_096;
const utf8 = new TextEncoder();

export function nowNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
}

export class JobTree {
  readonly root: DirNode;
  /** Bytes the job has written so far (files and streams), against limits.outputBytes. */
  written = 0;
  private nodes = 1;
  private nextIno = 2;

  constructor(readonly limits: TreeLimits) {
    const t = nowNs();
    this.root = { kind: 'dir', ino: 1, entries: new Map(), parent: undefined, atime: t, mtime: t, ctime: t };
  }

  /** Counts bytes the job writes; past the budget the run ends. */
  charge(bytes: number): void {
    this.written += bytes;
    if (this.written > this.limits.outputBytes) {
      throw new OutputLimitError(`wrote more than its ${formatBytes(this.limits.outputBytes)} output limit`);
    }
  }

  /**
   * Resolves `path` from `dir`. With `parent: true` it stops before the last component and returns the
   * directory that holds (or would hold) it, and the last name. Absolute paths, and `..` above the root,
   * are not capable of reaching anything: the job's preopen is its root.
   */
  lookup(dir: DirNode, path: string): TreeNode {
    const { parent, name } = this.walkToParent(dir, path);
    if (name === '.' || name === '') return parent;
    if (name === '..') {
      if (parent.parent === undefined) throw new TreeError(Errno.NOTCAPABLE);
      return parent.parent;
    }
    const node = parent.entries.get(name);
    if (node === undefined) throw new TreeError(Errno.NOENT);
    if (path.endsWith('/') && node.kind !== 'dir') throw new TreeError(Errno.NOTDIR);
    return node;
  }

  /** The directory holding the last component of `path`, and that component ('' or '.' for `path` itself). */
  walkToParent(dir: DirNode, path: string): { parent: DirNode; name: string } {
    if (path.length === 0) throw new TreeError(Errno.NOENT);
    if (path.includes('\0')) throw new TreeError(Errno.INVAL);
    if (utf8.encode(path).byteLength > MAX_PATH_BYTES) throw new TreeError(Errno.NAMETOOLONG);
    if (path.startsWith('/')) throw new TreeError(Errno.NOTCAPABLE);
    const parts = path.split('/').filter((p) => p !== '');
    const name = parts.pop() ?? '.';
    let at = dir;
    for (const part of parts) {
      if (part === '.') continue;
      if (part === '..') {
        if (at.parent === undefined) throw new TreeError(Errno.NOTCAPABLE);
        at = at.parent;
        continue;
      }
      const next = at.entries.get(part);
      if (next === undefined) throw new TreeError(Errno.NOENT);
      if (next.kind !== 'dir') throw new TreeError(Errno.NOTDIR);
      at = next;
    }
    return { parent: at, name };
  }

  /** Creates an empty file or directory named `name` in `parent`. */
  create<K extends TreeNode['kind']>(parent: DirNode, name: string, kind: K): Extract<TreeNode, { kind: K }> {
    checkName(name);
    if (parent.entries.has(name)) throw new TreeError(Errno.EXIST);
    if (this.nodes >= this.limits.maxNodes) throw new TreeError(Errno.DQUOT);
    this.nodes++;
    const t = nowNs();
    const node: TreeNode =
      kind === 'dir'
        ? { kind: 'dir', ino: this.nextIno++, entries: new Map(), parent, atime: t, mtime: t, ctime: t }
        : { kind: 'file', ino: this.nextIno++, data: new Uint8Array(0), size: 0, atime: t, mtime: t, ctime: t };
    parent.entries.set(name, node);
    parent.mtime = t;
    return node as Extract<TreeNode, { kind: K }>;
  }

  /** Removes `name` from `parent`: a file, or a directory that must be empty. */
  remove(parent: DirNode, name: string, kind: TreeNode['kind']): void {
    if (name === '.' || name === '..' || name === '') throw new TreeError(kind === 'dir' ? Errno.BUSY : Errno.ISDIR);
    const node = parent.entries.get(name);
    if (node === undefined) throw new TreeError(Errno.NOENT);
    if (kind === 'file' && node.kind === 'dir') throw new TreeError(Errno.ISDIR);
    if (kind === 'dir' && node.kind !== 'dir') throw new TreeError(Errno.NOTDIR);
    if (node.kind === 'dir' && node.entries.size > 0) throw new TreeError(Errno.NOTEMPTY);
    parent.entries.delete(name);
    parent.mtime = nowNs();
    this.nodes--;
  }

  /** Moves `from/fromName` to `to/toName`, replacing a file or an empty directory there, as rename(2) does. */
  rename(from: DirNode, fromName: string, to: DirNode, toName: string): void {
    for (const n of [fromName, toName]) if (n === '.' || n === '..' || n === '') throw new TreeError(Errno.BUSY);
    checkName(toName);
    const node = from.entries.get(fromName);
    if (node === undefined) throw new TreeError(Errno.NOENT);
    const existing = to.entries.get(toName);
    if (existing === node) return;
    if (node.kind === 'dir') {
      // A directory cannot move into itself or below itself.
      for (let d: DirNode | undefined = to; d !== undefined; d = d.parent) if (d === node) throw new TreeError(Errno.INVAL);
      if (existing !== undefined && existing.kind !== 'dir') throw new TreeError(Errno.NOTDIR);
    } else if (existing?.kind === 'dir') {
      throw new TreeError(Errno.ISDIR);
    }
    if (existing?.kind === 'dir' && existing.entries.size > 0) throw new TreeError(Errno.NOTEMPTY);
    if (existing !== undefined) this.nodes--;
    from.entries.delete(fromName);
    to.entries.set(toName, node);
    if (node.kind === 'dir') node.parent = to;
    const t = nowNs();
    from.mtime = t;
    to.mtime = t;
  }

  /** Writes `bytes` at `offset`, growing the file; counted against the output budget before anything changes. */
  write(file: FileNode, offset: number, bytes: Uint8Array): void {
    const end = offset + bytes.byteLength;
    this.charge(bytes.byteLength + Math.max(0, offset - file.size));
    this.reserve(file, end);
    file.data.set(bytes, offset);
    if (end > file.size) file.size = end;
    file.mtime = nowNs();
  }

  /** Sets a file's length; growth is zero-filled and counted against the output budget. */
  resize(file: FileNode, size: number): void {
    if (size > file.size) {
      this.charge(size - file.size);
      this.reserve(file, size);
      file.data.fill(0, file.size, size);
    } else {
      file.data.fill(0, size, file.size);
    }
    file.size = size;
    file.mtime = nowNs();
  }

  /** Puts an input file in place before the run: the executor's bytes, not counted as the job's output. */
  stage(path: string, bytes: Uint8Array): void {
    const parent = this.mkdirs(dirPart(path));
    const name = lastPart(path);
    const existing = parent.entries.get(name);
    const file = existing?.kind === 'file' ? existing : this.create(parent, name, 'file');
    file.data = bytes;
    file.size = bytes.byteLength;
  }

  /** Creates `path` and every missing directory above it (the plan's `dirs`). */
  mkdirs(path: string): DirNode {
    let at = this.root;
    for (const part of path.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') throw new TreeError(Errno.NOTCAPABLE);
      const next = at.entries.get(part);
      if (next === undefined) at = this.create(at, part, 'dir');
      else if (next.kind === 'dir') at = next;
      else throw new TreeError(Errno.NOTDIR);
    }
    return at;
  }

  /** The node at a job path (relative to the root), or undefined. */
  find(path: string): TreeNode | undefined {
    try {
      return this.lookup(this.root, path === '' ? '.' : path);
    } catch {
      return undefined;
    }
  }

  private reserve(file: FileNode, size: number): void {
    if (size <= file.data.byteLength) return;
    const grown = new Uint8Array(Math.max(size, Math.min(file.data.byteLength * 2, size + 16 * 1_048_576), 64));
    grown.set(file.data.subarray(0, file.size));
    file.data = grown;
  }
}

/**
 * Every file below `dir`, as [path relative to `dir`, file], in name order. Iterative: a job can nest
 * directories deeper than the host's call stack.
 */
export function filesBelow(dir: DirNode): Array<[string, FileNode]> {
  const out: Array<[string, FileNode]> = [];
  const stack: Array<[string, TreeNode]> = [['', dir]];
  while (stack.length > 0) {
    const [path, node] = stack.pop()!;
    if (node.kind === 'file') {
      out.push([path, node]);
      continue;
    }
    // Pushed in reverse so that they come off the stack in name order.
    for (const name of [...node.entries.keys()].sort().reverse()) stack.push([path === '' ? name : `${path}/${name}`, node.entries.get(name)!]);
  }
  return out;
}

function checkName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/')) throw new TreeError(Errno.INVAL);
  if (name.includes('\0')) throw new TreeError(Errno.INVAL);
  if (utf8.encode(name).byteLength > MAX_NAME_BYTES) throw new TreeError(Errno.NAMETOOLONG);
}

function dirPart(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

function lastPart(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function formatBytes(n: number): string {
  if (n >= 1_048_576 && n % 1_048_576 === 0) return `${n / 1_048_576} MiB`;
  if (n >= 1_024 && n % 1_024 === 0) return `${n / 1_024} KiB`;
  return `${n} bytes`;
}
