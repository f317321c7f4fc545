/**
 * What Linux says about a process and its descendants, read from /proc: memory, CPU time, wake-ups, open
 * files and bytes sent to storage. The footprint bench measures the project's processes with these, from
 * outside, exactly as an operator would on a field unit.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';

/** Clock ticks per second of utime/stime in /proc/<pid>/stat (100 on every common Linux). */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export const MiB = 1_048_576;

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function alive(pid: number): boolean {
  const stat = read(`/proc/${pid}/stat`);
  if (stat === undefined) return false;
  // A zombie has exited; only its parent's wait is missing.
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

/** Fields of /proc/<pid>/status in kB (VmRSS, VmHWM, ...) or counts (voluntary_ctxt_switches, Threads). */
function statusFields(path: string): Map<string, number> {
  const fields = new Map<string, number>();
  for (const line of (read(path) ?? '').split('\n')) {
    const m = /^(\w+):\s+(\d+)/.exec(line);
    if (m !== null) fields.set(m[1]!, Number(m[2]));
  }
  return fields;
}

/** Resident memory now and at its peak, in bytes. */
export function rss(pid: number): { rss: number; hwm: number } {
  const f = statusFields(`/proc/${pid}/status`);
  return { rss: (f.get('VmRSS') ?? 0) * 1_024, hwm: (f.get('VmHWM') ?? 0) * 1_024 };
}

/** /proc/<pid>/smaps_rollup in bytes: Rss, Pss (shared pages split between their users), Anonymous, ... */
export function smapsRollup(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (read(`/proc/${pid}/smaps_rollup`) ?? '').split('\n')) {
    const m = /^(\w+):\s+(\d+) kB/.exec(line);
    if (m !== null) out[m[1]!] = Number(m[2]) * 1_024;
  }
  return out;
}

/**
 * User plus system CPU time the process has used so far (all its threads), in seconds; with `reaped`, also
 * that of its children that exited and were waited for (a sandbox process that went idle and ended).
 */
export function cpuSeconds(pid: number, reaped = false): number {
  const stat = read(`/proc/${pid}/stat`);
  if (stat === undefined) return 0;
  // Fields after the command name, which may itself contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime, stime, cutime and cstime are fields 14 to 17 of the line, 12 to 15 after "pid (comm) ".
  const own = Number(fields[11]) + Number(fields[12]);
  return (reaped ? own + Number(fields[13]) + Number(fields[14]) : own) / CLK_TCK;
}

/**
 * Times the process's threads went to sleep and were woken again (voluntary context switches), summed
 * over its live threads: each one is a timer, a socket or a lock waking it up.
 */
export function wakeups(pid: number): number {
  let total = 0;
  for (const tid of list(`/proc/${pid}/task`)) total += statusFields(`/proc/${pid}/task/${tid}/status`).get('voluntary_ctxt_switches') ?? 0;
  return total;
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Child processes, from every thread's children list (a child belongs to the thread that forked it). */
export function children(pid: number): number[] {
  const out: number[] = [];
  for (const tid of list(`/proc/${pid}/task`)) {
    for (const c of (read(`/proc/${pid}/task/${tid}/children`) ?? '').split(' ')) if (c.trim() !== '') out.push(Number(c));
  }
  return out;
}

/** The process and all its descendants (for an executor: its sandbox processes). */
export function tree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...children(out[i]!));
  return out.filter(alive);
}

export function openFiles(pid: number): number {
  return list(`/proc/${pid}/fd`).length;
}

export interface IoCounters {
  /** Bytes the process caused to be sent to storage (counted when pages are dirtied). */
  writeBytes: number;
  readBytes: number;
  /** Bytes passed to write-like calls, whether or not they reached storage (sockets and pipes too). */
  wchar: number;
}

/** /proc/<pid>/io. A child's counters are added to its parent's when the parent reaps it. */
export function io(pid: number): IoCounters {
  const f = new Map<string, number>();
  for (const line of (read(`/proc/${pid}/io`) ?? '').split('\n')) {
    const m = /^(\w+):\s+(\d+)/.exec(line);
    if (m !== null) f.set(m[1]!, Number(m[2]));
  }
  return { writeBytes: f.get('write_bytes') ?? 0, readBytes: f.get('read_bytes') ?? 0, wchar: f.get('wchar') ?? 0 };
}

/** What the bench samples about one process (and its descendants, for tree figures). */
export interface Snapshot {
  at: number;
  rss: number;
  hwm: number;
  pss: number;
  treeRss: number;
  treePss: number;
  processes: number;
  cpuS: number;
  treeCpuS: number;
  wakeups: number;
  fds: number;
  writeBytes: number;
  treeWriteBytes: number;
}

export function snapshot(pid: number): Snapshot {
  const pids = tree(pid);
  const own = rss(pid);
  const sum = (f: (p: number) => number) => pids.reduce((s, p) => s + f(p), 0);
  return {
    at: performance.now(),
    rss: own.rss,
    hwm: own.hwm,
    pss: smapsRollup(pid).Pss ?? 0,
    treeRss: sum((p) => rss(p).rss),
    treePss: sum((p) => smapsRollup(p).Pss ?? 0),
    processes: pids.length,
    cpuS: cpuSeconds(pid),
    // Reaped children count too, so a sandbox process ending during a window does not take its time along.
    treeCpuS: sum((p) => cpuSeconds(p, true)),
    wakeups: wakeups(pid),
    fds: openFiles(pid),
    writeBytes: io(pid).writeBytes,
    treeWriteBytes: sum((p) => io(p).writeBytes),
  };
}

/** A file's apparent size and the bytes actually allocated to it (LMDB files can be sparse), 0 when absent. */
export function fileSize(path: string): { size: number; allocated: number } {
  try {
    const st = statSync(path);
    return { size: st.size, allocated: st.blocks * 512 };
  } catch {
    return { size: 0, allocated: 0 };
  }
}
