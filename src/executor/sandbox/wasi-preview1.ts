import { randomFillSync } from 'node:crypto';
import { Errno, JobTree, nowNs, TreeError, type DirNode, type FileNode } from './job-tree.js';

/**
 * WASI preview1 (`wasi_snapshot_preview1`) over a job's in-memory tree. This is the only door from a job
 * to the host, and it opens onto nothing of the host's:
 * - files are the tree's; there is no host path behind any of them;
 * - symbolic and hard links cannot be made (ENOTSUP), so a name always means the node it names;
 * - `proc_exit` and `proc_raise` end the job's own run; no signal reaches a process;
 * - sockets are not supported; clocks and randomness are read-only;
 * - a sleep (`poll_oneoff` on clocks) blocks only the sandbox process, which the executor kills at the
 *   job's deadline, so nothing outlives the job.
 * Every pointer a job passes is checked against its memory; a bad one is EFAULT, not a host error.
 */

/** The job called proc_exit. */
export class WasiExit extends Error {
  constructor(readonly code: number) {
    super(`exited with code ${code}`);
  }
}

/** The job called proc_raise: it ends the job, and nothing else. */
export class WasiRaise extends Error {
  constructor(readonly signal: number) {
    super(`raised signal ${signal}${SIGNAL_NAMES[signal] !== undefined ? ` (${SIGNAL_NAMES[signal]})` : ''}; a job's signals end only the job`);
  }
}

/** A pointer outside the job's memory. */
class Fault extends Error {}

export interface WasiOptions {
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly tree: JobTree;
  readonly stdin: Uint8Array;
  /** Where fd 1 and 2 write: a file in the tree, or a sink that keeps only a tail. */
  readonly stdout: FileNode | StreamSink;
  readonly stderr: FileNode | StreamSink;
  /** Most descriptors open at once. */
  readonly maxFds?: number;
}

/** A stream nobody keeps (REC sends it to the null device); its last bytes are kept for failure messages. */
export class StreamSink {
  private tail = new Uint8Array(0);
  constructor(private readonly keep: number) {}

  write(bytes: Uint8Array): void {
    if (this.keep === 0) return;
    const joined = new Uint8Array(Math.min(this.keep, this.tail.byteLength + bytes.byteLength));
    const fromBytes = Math.min(bytes.byteLength, joined.byteLength);
    const fromTail = joined.byteLength - fromBytes;
    joined.set(this.tail.subarray(this.tail.byteLength - fromTail), 0);
    joined.set(bytes.subarray(bytes.byteLength - fromBytes), fromTail);
    this.tail = joined;
  }

  text(): string {
    return new TextDecoder().decode(this.tail);
  }
}

const FILETYPE = { UNKNOWN: 0, CHARACTER_DEVICE: 2, DIRECTORY: 3, REGULAR_FILE: 4 } as const;
const OFLAGS = { CREAT: 1, DIRECTORY: 2, EXCL: 4, TRUNC: 8 } as const;
const FDFLAGS_APPEND = 1;
const RIGHT_FD_READ = 1n << 1n;
const RIGHT_FD_WRITE = 1n << 6n;
const ALL_RIGHTS = (1n << 30n) - 1n;
const FSTFLAGS = { ATIM: 1, ATIM_NOW: 2, MTIM: 4, MTIM_NOW: 8 } as const;
const CLOCK = { REALTIME: 0, MONOTONIC: 1, PROCESS_CPUTIME: 2, THREAD_CPUTIME: 3 } as const;
const EVENTTYPE = { CLOCK: 0, FD_READ: 1, FD_WRITE: 2 } as const;
const SUBSCRIPTION_BYTES = 48;
const EVENT_BYTES = 32;
const DIRENT_BYTES = 24;
const PREOPEN_FD = 3;
const PREOPEN_NAME = '/';
const SIGNAL_NAMES: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 6: 'SIGABRT', 9: 'SIGKILL', 11: 'SIGSEGV', 15: 'SIGTERM', 19: 'SIGSTOP' };

type Descriptor =
  | { kind: 'file'; node: FileNode; pos: number; read: boolean; write: boolean; append: boolean; rights: bigint }
  | { kind: 'dir'; node: DirNode; rights: bigint }
  | { kind: 'stdin'; data: Uint8Array; pos: number }
  | { kind: 'sink'; sink: StreamSink };

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

export class Wasi {
  private memory: WebAssembly.Memory | undefined;
  private readonly fds = new Map<number, Descriptor>();
  private readonly maxFds: number;
  private readonly args: Uint8Array[];
  private readonly env: Uint8Array[];
  private readonly tree: JobTree;
  /** Wakes nothing: Atomics.wait on it is how a job's sleep blocks without spinning. */
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));

  constructor(options: WasiOptions) {
    this.tree = options.tree;
    this.maxFds = options.maxFds ?? 1_024;
    this.args = options.args.map((a) => utf8.encode(`${a}\0`));
    this.env = Object.entries(options.env).map(([k, v]) => utf8.encode(`${k}=${v}\0`));
    this.fds.set(0, { kind: 'stdin', data: options.stdin, pos: 0 });
    this.fds.set(1, streamDescriptor(options.stdout));
    this.fds.set(2, streamDescriptor(options.stderr));
    this.fds.set(PREOPEN_FD, { kind: 'dir', node: options.tree.root, rights: ALL_RIGHTS });
  }

  /** The memory the job's pointers refer to: its exported memory, or the one the host gave it. */
  bind(memory: WebAssembly.Memory): void {
    this.memory = memory;
  }

  /** The `wasi_snapshot_preview1` import object. */
  imports(): Record<string, (...args: never[]) => number> {
    const calls: Record<string, (...args: never[]) => number> = {};
    for (const [name, fn] of Object.entries(this.calls())) {
      calls[name] = (...args: never[]) => {
        try {
          return (fn as (...a: never[]) => number)(...args);
        } catch (err) {
          if (err instanceof TreeError) return err.errno;
          if (err instanceof Fault) return Errno.FAULT;
          throw err;
        }
      };
    }
    return calls;
  }

  private calls() {
    return {
      args_get: (argv: number, buf: number) => this.strings(this.args, argv, buf),
      args_sizes_get: (count: number, size: number) => this.sizes(this.args, count, size),
      environ_get: (environ: number, buf: number) => this.strings(this.env, environ, buf),
      environ_sizes_get: (count: number, size: number) => this.sizes(this.env, count, size),

      clock_res_get: (id: number, out: number) => {
        if (!(id in CLOCK_NAMES)) return Errno.INVAL;
        this.setU64(out, 1_000n);
        return Errno.SUCCESS;
      },
      clock_time_get: (id: number, _precision: bigint, out: number) => {
        const t = clockNow(id);
        if (t === undefined) return Errno.INVAL;
        this.setU64(out, t);
        return Errno.SUCCESS;
      },

      fd_advise: (fd: number) => (this.fd(fd), Errno.SUCCESS),
      fd_allocate: (fd: number, offset: bigint, len: bigint) => {
        const d = this.writableFile(fd);
        const end = Number(offset + len);
        if (!Number.isSafeInteger(end) || offset < 0n || len < 0n) return Errno.INVAL;
        if (end > d.node.size) this.tree.resize(d.node, end);
        return Errno.SUCCESS;
      },
      fd_close: (fd: number) => {
        this.fd(fd);
        this.fds.delete(fd);
        return Errno.SUCCESS;
      },
      fd_datasync: (fd: number) => (this.fd(fd), Errno.SUCCESS),
      fd_sync: (fd: number) => (this.fd(fd), Errno.SUCCESS),
      fd_fdstat_get: (fd: number, out: number) => {
        const d = this.fd(fd);
        const [type, flags, rights] = fdstatOf(d);
        this.bytes(out, 24).fill(0);
        this.view().setUint8(out, type);
        this.view().setUint16(out + 2, flags, true);
        this.setU64(out + 8, rights);
        this.setU64(out + 16, d.kind === 'dir' ? d.rights : 0n);
        return Errno.SUCCESS;
      },
      fd_fdstat_set_flags: (fd: number, flags: number) => {
        const d = this.fd(fd);
        if (d.kind === 'file') d.append = (flags & FDFLAGS_APPEND) !== 0;
        return Errno.SUCCESS;
      },
      fd_fdstat_set_rights: (fd: number, base: bigint) => {
        const d = this.fd(fd);
        // Rights may only shrink.
        if (d.kind === 'file' || d.kind === 'dir') {
          if ((base & ~d.rights) !== 0n) return Errno.NOTCAPABLE;
          d.rights = base;
          if (d.kind === 'file') {
            d.read &&= (base & RIGHT_FD_READ) !== 0n;
            d.write &&= (base & RIGHT_FD_WRITE) !== 0n;
          }
        }
        return Errno.SUCCESS;
      },
      fd_filestat_get: (fd: number, out: number) => {
        const d = this.fd(fd);
        if (d.kind === 'file' || d.kind === 'dir') this.filestat(out, d.node);
        else this.streamstat(out);
        return Errno.SUCCESS;
      },
      fd_filestat_set_size: (fd: number, size: bigint) => {
        const d = this.writableFile(fd);
        if (size < 0n || size > BigInt(Number.MAX_SAFE_INTEGER)) return Errno.INVAL;
        this.tree.resize(d.node, Number(size));
        return Errno.SUCCESS;
      },
      fd_filestat_set_times: (fd: number, atim: bigint, mtim: bigint, flags: number) => {
        const d = this.fd(fd);
        if (d.kind !== 'file' && d.kind !== 'dir') return Errno.BADF;
        return setTimes(d.node, atim, mtim, flags);
      },
      fd_pread: (fd: number, iovs: number, iovsLen: number, offset: bigint, nread: number) => {
        const d = this.fd(fd);
        if (d.kind === 'dir') return Errno.ISDIR;
        if (d.kind !== 'file') return Errno.SPIPE;
        if (!d.read) return Errno.BADF;
        if (offset < 0n) return Errno.INVAL;
        this.setU32(nread, this.readInto(d.node.data.subarray(0, d.node.size), Number(offset), iovs, iovsLen));
        return Errno.SUCCESS;
      },
      fd_pwrite: (fd: number, iovs: number, iovsLen: number, offset: bigint, nwritten: number) => {
        const d = this.fd(fd);
        if (d.kind === 'dir') return Errno.ISDIR;
        if (d.kind !== 'file') return Errno.SPIPE;
        if (!d.write) return Errno.BADF;
        if (offset < 0n || offset > BigInt(Number.MAX_SAFE_INTEGER)) return Errno.INVAL;
        const data = this.gather(iovs, iovsLen);
        this.tree.write(d.node, Number(offset), data);
        this.setU32(nwritten, data.byteLength);
        return Errno.SUCCESS;
      },
      fd_read: (fd: number, iovs: number, iovsLen: number, nread: number) => {
        const d = this.fd(fd);
        if (d.kind === 'dir') return Errno.ISDIR;
        if (d.kind === 'sink') return Errno.BADF;
        if (d.kind === 'stdin') {
          const n = this.readInto(d.data, d.pos, iovs, iovsLen);
          d.pos += n;
          this.setU32(nread, n);
          return Errno.SUCCESS;
        }
        if (!d.read) return Errno.BADF;
        const n = this.readInto(d.node.data.subarray(0, d.node.size), d.pos, iovs, iovsLen);
        d.pos += n;
        d.node.atime = nowNs();
        this.setU32(nread, n);
        return Errno.SUCCESS;
      },
      fd_write: (fd: number, iovs: number, iovsLen: number, nwritten: number) => {
        const d = this.fd(fd);
        if (d.kind === 'dir') return Errno.ISDIR;
        if (d.kind === 'stdin') return Errno.BADF;
        const data = this.gather(iovs, iovsLen);
        if (d.kind === 'sink') {
          this.tree.charge(data.byteLength);
          d.sink.write(data);
        } else {
          if (!d.write) return Errno.BADF;
          if (d.append) d.pos = d.node.size;
          this.tree.write(d.node, d.pos, data);
          d.pos += data.byteLength;
        }
        this.setU32(nwritten, data.byteLength);
        return Errno.SUCCESS;
      },
      fd_prestat_get: (fd: number, out: number) => {
        if (fd !== PREOPEN_FD || this.fds.get(fd)?.kind !== 'dir') return Errno.BADF;
        this.view().setUint32(out, 0, true);
        this.setU32(out + 4, utf8.encode(PREOPEN_NAME).byteLength);
        return Errno.SUCCESS;
      },
      fd_prestat_dir_name: (fd: number, path: number, len: number) => {
        if (fd !== PREOPEN_FD || this.fds.get(fd)?.kind !== 'dir') return Errno.BADF;
        const name = utf8.encode(PREOPEN_NAME);
        this.bytes(path, Math.min(len, name.byteLength)).set(name.subarray(0, len));
        return Errno.SUCCESS;
      },
      fd_readdir: (fd: number, buf: number, bufLen: number, cookie: bigint, bufused: number) => {
        const d = this.fd(fd);
        if (d.kind !== 'dir') return Errno.NOTDIR;
        const out = this.bytes(buf, bufLen);
        const names = ['.', '..', ...d.node.entries.keys()];
        let used = 0;
        for (let i = Number(cookie); i < names.length && used < bufLen; i++) {
          const name = names[i]!;
          const node = name === '.' ? d.node : name === '..' ? (d.node.parent ?? d.node) : d.node.entries.get(name)!;
          const nameBytes = utf8.encode(name);
          const entry = new Uint8Array(DIRENT_BYTES + nameBytes.byteLength);
          const view = new DataView(entry.buffer);
          view.setBigUint64(0, BigInt(i + 1), true);
          view.setBigUint64(8, BigInt(node.ino), true);
          view.setUint32(16, nameBytes.byteLength, true);
          view.setUint8(20, node.kind === 'dir' ? FILETYPE.DIRECTORY : FILETYPE.REGULAR_FILE);
          entry.set(nameBytes, DIRENT_BYTES);
          // A last entry that does not fit is cut; a full buffer tells the job to call again.
          const n = Math.min(entry.byteLength, bufLen - used);
          out.set(entry.subarray(0, n), used);
          used += n;
        }
        this.setU32(bufused, used);
        return Errno.SUCCESS;
      },
      fd_renumber: (from: number, to: number) => {
        const d = this.fd(from);
        this.fd(to);
        this.fds.set(to, d);
        this.fds.delete(from);
        return Errno.SUCCESS;
      },
      fd_seek: (fd: number, offset: bigint, whence: number, out: number) => {
        const d = this.fd(fd);
        if (d.kind !== 'file') return d.kind === 'dir' ? Errno.BADF : Errno.SPIPE;
        const base = whence === 0 ? 0n : whence === 1 ? BigInt(d.pos) : whence === 2 ? BigInt(d.node.size) : undefined;
        if (base === undefined) return Errno.INVAL;
        const pos = base + offset;
        if (pos < 0n || pos > BigInt(Number.MAX_SAFE_INTEGER)) return Errno.INVAL;
        d.pos = Number(pos);
        this.setU64(out, pos);
        return Errno.SUCCESS;
      },
      fd_tell: (fd: number, out: number) => {
        const d = this.fd(fd);
        if (d.kind !== 'file') return Errno.SPIPE;
        this.setU64(out, BigInt(d.pos));
        return Errno.SUCCESS;
      },

      path_create_directory: (fd: number, path: number, len: number) => {
        const { parent, name } = this.tree.walkToParent(this.dir(fd), this.path(path, len));
        if (name === '.' || name === '..') return Errno.EXIST;
        this.tree.create(parent, name, 'dir');
        return Errno.SUCCESS;
      },
      path_filestat_get: (fd: number, _flags: number, path: number, len: number, out: number) => {
        this.filestat(out, this.tree.lookup(this.dir(fd), this.path(path, len)));
        return Errno.SUCCESS;
      },
      path_filestat_set_times: (fd: number, _flags: number, path: number, len: number, atim: bigint, mtim: bigint, flags: number) =>
        setTimes(this.tree.lookup(this.dir(fd), this.path(path, len)), atim, mtim, flags),
      // No links of either kind: a name in the tree always means the one node it names.
      path_link: () => Errno.NOTSUP,
      path_symlink: () => Errno.NOTSUP,
      path_readlink: (fd: number, path: number, len: number) => {
        this.tree.lookup(this.dir(fd), this.path(path, len));
        return Errno.INVAL;
      },
      path_open: (fd: number, _dirflags: number, path: number, len: number, oflags: number, rightsBase: bigint, rightsInheriting: bigint, fdflags: number, out: number) => {
        const dir = this.dir(fd);
        const name = this.path(path, len);
        if (this.fds.size >= this.maxFds) return Errno.MFILE;
        let node: FileNode | DirNode;
        try {
          node = this.tree.lookup(dir, name);
          if ((oflags & OFLAGS.CREAT) !== 0 && (oflags & OFLAGS.EXCL) !== 0) return Errno.EXIST;
        } catch (err) {
          if (!(err instanceof TreeError) || err.errno !== Errno.NOENT || (oflags & OFLAGS.CREAT) === 0) throw err;
          if ((oflags & OFLAGS.DIRECTORY) !== 0 || name.endsWith('/')) return Errno.NOENT;
          const at = this.tree.walkToParent(dir, name);
          node = this.tree.create(at.parent, at.name, 'file');
        }
        const write = (rightsBase & RIGHT_FD_WRITE) !== 0n;
        if (node.kind === 'dir') {
          if (write) return Errno.ISDIR;
          this.setU32(out, this.open({ kind: 'dir', node, rights: rightsBase | rightsInheriting }));
          return Errno.SUCCESS;
        }
        if ((oflags & OFLAGS.DIRECTORY) !== 0) return Errno.NOTDIR;
        if ((oflags & OFLAGS.TRUNC) !== 0 && write) this.tree.resize(node, 0);
        const read = (rightsBase & RIGHT_FD_READ) !== 0n || !write;
        this.setU32(out, this.open({ kind: 'file', node, pos: 0, read, write, append: (fdflags & FDFLAGS_APPEND) !== 0, rights: rightsBase }));
        return Errno.SUCCESS;
      },
      path_remove_directory: (fd: number, path: number, len: number) => {
        const { parent, name } = this.tree.walkToParent(this.dir(fd), this.path(path, len));
        this.tree.remove(parent, name, 'dir');
        return Errno.SUCCESS;
      },
      path_rename: (fd: number, oldPath: number, oldLen: number, newFd: number, newPath: number, newLen: number) => {
        const from = this.tree.walkToParent(this.dir(fd), this.path(oldPath, oldLen));
        const to = this.tree.walkToParent(this.dir(newFd), this.path(newPath, newLen));
        this.tree.rename(from.parent, from.name, to.parent, to.name);
        return Errno.SUCCESS;
      },
      path_unlink_file: (fd: number, path: number, len: number) => {
        const { parent, name } = this.tree.walkToParent(this.dir(fd), this.path(path, len));
        this.tree.remove(parent, name, 'file');
        return Errno.SUCCESS;
      },

      poll_oneoff: (inPtr: number, outPtr: number, nsubs: number, neventsPtr: number) => this.poll(inPtr, outPtr, nsubs, neventsPtr),
      proc_exit: (code: number): number => {
        throw new WasiExit(code >>> 0);
      },
      proc_raise: (signal: number): number => {
        throw new WasiRaise(signal);
      },
      sched_yield: () => Errno.SUCCESS,
      random_get: (buf: number, len: number) => {
        randomFillSync(this.bytes(buf, len));
        return Errno.SUCCESS;
      },
      sock_accept: () => Errno.NOTSUP,
      sock_recv: () => Errno.NOTSUP,
      sock_send: () => Errno.NOTSUP,
      sock_shutdown: () => Errno.NOTSUP,
    };
  }

  /**
   * Ready descriptors answer at once (files and stdin never block); otherwise the job sleeps until its
   * earliest clock, blocking only this process.
   */
  private poll(inPtr: number, outPtr: number, nsubs: number, neventsPtr: number): number {
    if (nsubs === 0) return Errno.INVAL;
    this.bytes(inPtr, nsubs * SUBSCRIPTION_BYTES);
    this.bytes(outPtr, nsubs * EVENT_BYTES);
    const view = this.view();
    const ready: Array<{ userdata: bigint; type: number; error: number; nbytes: bigint }> = [];
    const clocks: Array<{ userdata: bigint; deadline: bigint }> = [];
    const now = process.hrtime.bigint();
    for (let i = 0; i < nsubs; i++) {
      const s = inPtr + i * SUBSCRIPTION_BYTES;
      const userdata = view.getBigUint64(s, true);
      const tag = view.getUint8(s + 8);
      if (tag === EVENTTYPE.CLOCK) {
        const id = view.getUint32(s + 16, true);
        const timeout = view.getBigUint64(s + 24, true);
        const absolute = (view.getUint16(s + 40, true) & 1) !== 0;
        const clockNowNs = clockNow(id);
        if (clockNowNs === undefined) {
          ready.push({ userdata, type: tag, error: Errno.INVAL, nbytes: 0n });
          continue;
        }
        const wait = absolute ? timeout - clockNowNs : timeout;
        clocks.push({ userdata, deadline: now + (wait > 0n ? wait : 0n) });
      } else if (tag === EVENTTYPE.FD_READ || tag === EVENTTYPE.FD_WRITE) {
        const d = this.fds.get(view.getUint32(s + 16, true));
        const nbytes = d === undefined ? 0n : tag === EVENTTYPE.FD_READ ? BigInt(readable(d)) : 0n;
        ready.push({ userdata, type: tag, error: d === undefined ? Errno.BADF : Errno.SUCCESS, nbytes });
      } else {
        return Errno.INVAL;
      }
    }
    if (ready.length === 0 && clocks.length > 0) {
      const first = clocks.reduce((a, b) => (b.deadline < a.deadline ? b : a)).deadline;
      for (;;) {
        const left = first - process.hrtime.bigint();
        if (left <= 0n) break;
        Atomics.wait(this.sleeper, 0, 0, Number(left) / 1e6);
      }
      const woke = process.hrtime.bigint();
      for (const c of clocks) if (c.deadline <= woke) ready.push({ userdata: c.userdata, type: EVENTTYPE.CLOCK, error: Errno.SUCCESS, nbytes: 0n });
    }
    const out = this.view();
    for (const [i, e] of ready.entries()) {
      const p = outPtr + i * EVENT_BYTES;
      this.bytes(p, EVENT_BYTES).fill(0);
      out.setBigUint64(p, e.userdata, true);
      out.setUint16(p + 8, e.error, true);
      out.setUint8(p + 10, e.type);
      if (e.type !== EVENTTYPE.CLOCK) out.setBigUint64(p + 16, e.nbytes, true);
    }
    this.setU32(neventsPtr, ready.length);
    return Errno.SUCCESS;
  }

  // ---- descriptors ---------------------------------------------------------------------------------

  private fd(fd: number): Descriptor {
    const d = this.fds.get(fd);
    if (d === undefined) throw new TreeError(Errno.BADF);
    return d;
  }

  private dir(fd: number): DirNode {
    const d = this.fd(fd);
    if (d.kind !== 'dir') throw new TreeError(Errno.NOTDIR);
    return d.node;
  }

  private writableFile(fd: number): Extract<Descriptor, { kind: 'file' }> {
    const d = this.fd(fd);
    if (d.kind === 'dir') throw new TreeError(Errno.ISDIR);
    if (d.kind !== 'file') throw new TreeError(Errno.SPIPE);
    if (!d.write) throw new TreeError(Errno.BADF);
    return d;
  }

  private open(d: Descriptor): number {
    let fd = PREOPEN_FD + 1;
    while (this.fds.has(fd)) fd++;
    this.fds.set(fd, d);
    return fd;
  }

  // ---- memory --------------------------------------------------------------------------------------

  private view(): DataView {
    if (this.memory === undefined) throw new Fault();
    return new DataView(this.memory.buffer);
  }

  /** A checked window onto the job's memory. */
  private bytes(ptr: number, len: number): Uint8Array {
    if (this.memory === undefined) throw new Fault();
    const buffer = this.memory.buffer;
    if (ptr < 0 || len < 0 || ptr + len > buffer.byteLength) throw new Fault();
    return new Uint8Array(buffer, ptr, len);
  }

  private setU32(ptr: number, value: number): void {
    this.bytes(ptr, 4);
    this.view().setUint32(ptr, value, true);
  }

  private setU64(ptr: number, value: bigint): void {
    this.bytes(ptr, 8);
    this.view().setBigUint64(ptr, value, true);
  }

  private path(ptr: number, len: number): string {
    try {
      return fromUtf8.decode(this.bytes(ptr, len));
    } catch (err) {
      if (err instanceof Fault) throw err;
      throw new TreeError(Errno.ILSEQ);
    }
  }

  /** The bytes of an iovec array, joined. */
  private gather(iovs: number, count: number): Uint8Array {
    const view = this.view();
    this.bytes(iovs, count * 8);
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < count; i++) {
      const part = this.bytes(view.getUint32(iovs + i * 8, true), view.getUint32(iovs + i * 8 + 4, true));
      parts.push(part);
      total += part.byteLength;
    }
    if (parts.length === 1) return parts[0]!.slice();
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    return out;
  }

  /** Copies from `source` at `offset` into an iovec array; returns the bytes copied. */
  private readInto(source: Uint8Array, offset: number, iovs: number, count: number): number {
    const view = this.view();
    this.bytes(iovs, count * 8);
    let copied = 0;
    for (let i = 0; i < count && offset + copied < source.byteLength; i++) {
      const target = this.bytes(view.getUint32(iovs + i * 8, true), view.getUint32(iovs + i * 8 + 4, true));
      const chunk = source.subarray(offset + copied, offset + copied + target.byteLength);
      target.set(chunk);
      copied += chunk.byteLength;
    }
    return copied;
  }

  private strings(items: readonly Uint8Array[], ptrs: number, buf: number): number {
    let at = buf;
    for (const [i, item] of items.entries()) {
      this.setU32(ptrs + i * 4, at);
      this.bytes(at, item.byteLength).set(item);
      at += item.byteLength;
    }
    return Errno.SUCCESS;
  }

  private sizes(items: readonly Uint8Array[], countPtr: number, sizePtr: number): number {
    this.setU32(countPtr, items.length);
    this.setU32(sizePtr, items.reduce((n, i) => n + i.byteLength, 0));
    return Errno.SUCCESS;
  }

  private filestat(out: number, node: FileNode | DirNode): void {
    this.bytes(out, 64).fill(0);
    const v = this.view();
    v.setBigUint64(out, 1n, true);
    v.setBigUint64(out + 8, BigInt(node.ino), true);
    v.setUint8(out + 16, node.kind === 'dir' ? FILETYPE.DIRECTORY : FILETYPE.REGULAR_FILE);
    v.setBigUint64(out + 24, 1n, true);
    v.setBigUint64(out + 32, BigInt(node.kind === 'dir' ? node.entries.size : node.size), true);
    v.setBigUint64(out + 40, node.atime, true);
    v.setBigUint64(out + 48, node.mtime, true);
    v.setBigUint64(out + 56, node.ctime, true);
  }

  private streamstat(out: number): void {
    this.bytes(out, 64).fill(0);
    this.view().setUint8(out + 16, FILETYPE.CHARACTER_DEVICE);
    this.view().setBigUint64(out + 24, 1n, true);
  }
}

const CLOCK_NAMES: Record<number, string> = { 0: 'realtime', 1: 'monotonic', 2: 'process_cputime', 3: 'thread_cputime' };

function clockNow(id: number): bigint | undefined {
  switch (id) {
    case CLOCK.REALTIME:
      return nowNs();
    case CLOCK.MONOTONIC:
      return process.hrtime.bigint();
    case CLOCK.PROCESS_CPUTIME:
    case CLOCK.THREAD_CPUTIME: {
      const usage = process.cpuUsage();
      return BigInt(usage.user + usage.system) * 1_000n;
    }
    default:
      return undefined;
  }
}

function streamDescriptor(target: FileNode | StreamSink): Descriptor {
  return target instanceof StreamSink ? { kind: 'sink', sink: target } : { kind: 'file', node: target, pos: 0, read: false, write: true, append: false, rights: RIGHT_FD_WRITE };
}

function fdstatOf(d: Descriptor): [type: number, flags: number, rights: bigint] {
  switch (d.kind) {
    case 'file':
      return [FILETYPE.REGULAR_FILE, d.append ? FDFLAGS_APPEND : 0, d.rights | (d.read ? RIGHT_FD_READ : 0n) | (d.write ? RIGHT_FD_WRITE : 0n)];
    case 'dir':
      return [FILETYPE.DIRECTORY, 0, d.rights];
    case 'stdin':
      return [FILETYPE.CHARACTER_DEVICE, 0, RIGHT_FD_READ];
    case 'sink':
      return [FILETYPE.CHARACTER_DEVICE, 0, RIGHT_FD_WRITE];
  }
}

function readable(d: Descriptor): number {
  if (d.kind === 'stdin') return d.data.byteLength - d.pos;
  if (d.kind === 'file') return Math.max(0, d.node.size - d.pos);
  return 0;
}

function setTimes(node: FileNode | DirNode, atim: bigint, mtim: bigint, flags: number): number {
  if ((flags & FSTFLAGS.ATIM && flags & FSTFLAGS.ATIM_NOW) || (flags & FSTFLAGS.MTIM && flags & FSTFLAGS.MTIM_NOW)) return Errno.INVAL;
  const now = nowNs();
  if (flags & FSTFLAGS.ATIM) node.atime = atim;
  if (flags & FSTFLAGS.ATIM_NOW) node.atime = now;
  if (flags & FSTFLAGS.MTIM) node.mtime = mtim;
  if (flags & FSTFLAGS.MTIM_NOW) node.mtime = now;
  return Errno.SUCCESS;
}
