import { closeSync, openSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { parentPort } from 'node:worker_threads';
import { WORKER_MODULE_CACHE, type RunReply, type RunRequest } from './messages.js';

// Node 20's node:wasi can let a garbage collection run in the middle of a WASI call once WASM memory
// reaches a few tens of MiB, which aborts the whole process (seen with fd_write). Turning V8's fast API
// calls off before node:wasi is loaded avoids it. The flag is process-wide; the pool sets it too.
setFlagsFromString('--no-turbo-fast-api-calls');
// Every worker would print Node's "WASI is an experimental feature" warning to the agent's stderr; it
// says nothing an operator can act on. Other warnings still go through.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const text = typeof warning === 'string' ? warning : warning.message;
  if (/WASI is an experimental feature/.test(text)) return;
  (emitWarning as (w: string | Error, ...r: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;
const { WASI } = await import('node:wasi');

/**
 * Runs one WASI job at a time inside a worker thread, so a module that loops, traps or allocates wildly
 * can be stopped by terminating the worker without touching the agent's own event loop.
 */
const modules = new Map<string, WebAssembly.Module>();

/** The request's module: the one it carries (kept for later runs) or the one kept under its key. */
function moduleOf(req: RunRequest): WebAssembly.Module | undefined {
  if (req.module === undefined) return modules.get(req.moduleKey);
  modules.set(req.moduleKey, req.module);
  if (modules.size > WORKER_MODULE_CACHE) modules.delete(modules.keys().next().value!);
  return req.module;
}

async function run(req: RunRequest): Promise<RunReply> {
  const module = moduleOf(req);
  if (module === undefined) return { type: 'done', runId: req.runId, outcome: 'host_error', message: `the sandbox worker lost module ${req.moduleKey}` };
  const fds: number[] = [];
  const open = (path: string, flags: string) => {
    const fd = openSync(path, flags);
    fds.push(fd);
    return fd;
  };
  let memory: WebAssembly.Memory | undefined;
  let stdin: number;
  let stdout: number;
  let stderr: number;
  try {
    // Without a stdin file the job reads an empty stream, never the agent's own stdin.
    stdin = open(req.stdinPath ?? '/dev/null', 'r');
    stdout = open(req.stdoutPath, 'w');
    stderr = open(req.stderrPath, 'w');
  } catch (err) {
    for (const fd of fds) closeSync(fd);
    return { type: 'done', runId: req.runId, outcome: 'host_error', message: `cannot open the job's standard streams: ${(err as Error).message}` };
  }
  try {
    const wasi = new WASI({
      version: 'preview1',
      args: [...req.args],
      env: { ...req.env },
      preopens: { '/': req.jobDir },
      stdin,
      stdout,
      stderr,
      returnOnExit: true,
    });
    const imports = wasi.getImportObject() as WebAssembly.Imports;
    if (req.importedMemory !== undefined) {
      const { module, name, limits } = req.importedMemory;
      memory = new WebAssembly.Memory({ initial: limits.minPages, ...(limits.maxPages !== undefined ? { maximum: limits.maxPages } : {}) });
      imports[module] = { ...(imports[module] ?? {}), [name]: memory };
    }
    const wasiImports = imports.wasi_snapshot_preview1 as Record<string, WebAssembly.ImportValue>;
    wasiImports.poll_oneoff = interruptiblePoll(wasiImports.poll_oneoff as PollOneoff, () => memory);
    let instance: WebAssembly.Instance;
    try {
      instance = await WebAssembly.instantiate(module, imports);
    } catch (err) {
      return { type: 'done', runId: req.runId, outcome: 'invalid', message: `cannot instantiate the module: ${(err as Error).message}` };
    }
    const exported = instance.exports.memory;
    if (memory === undefined && exported instanceof WebAssembly.Memory) memory = exported;
    let exitCode: number;
    try {
      exitCode = wasi.start(instance);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (err instanceof WebAssembly.RuntimeError) return { type: 'done', runId: req.runId, outcome: 'trap', message: `trap: ${message}`, ...memoryBytes(memory) };
      // start() itself refuses modules that are not WASI commands (no _start, no memory export).
      return { type: 'done', runId: req.runId, outcome: 'invalid', message, ...memoryBytes(memory) };
    }
    return { type: 'done', runId: req.runId, outcome: 'exited', exitCode, message: `exited with code ${exitCode}`, ...memoryBytes(memory) };
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

function memoryBytes(memory: WebAssembly.Memory | undefined): { memoryBytes?: number } {
  return memory !== undefined ? { memoryBytes: memory.buffer.byteLength } : {};
}

type PollOneoff = (inPtr: number, outPtr: number, nsubscriptions: number, neventsPtr: number) => number;

/** The longest a single native poll may block; terminate() takes effect between polls. */
const POLL_SLICE_NS = 50_000_000n;
/** Offsets within a WASI `subscription` record (see wasi_snapshot_preview1). */
const TAG_OFFSET = 8;
const CLOCK_TIMEOUT_OFFSET = 24;
const CLOCK_FLAGS_OFFSET = 40;
const EVENTTYPE_CLOCK = 0;

/**
 * A job that sleeps (poll_oneoff on a clock) blocks its thread in native code, where worker.terminate()
 * cannot reach it: a timed-out job would keep its thread and memory. A lone relative clock wait is
 * therefore served in slices of at most 50 ms, returning to JavaScript in between, so the sleep lasts as
 * long as asked but can be stopped at any time.
 */
function interruptiblePoll(poll: PollOneoff, getMemory: () => WebAssembly.Memory | undefined): PollOneoff {
  return (inPtr, outPtr, nsubscriptions, neventsPtr) => {
    const memory = getMemory();
    if (memory === undefined || nsubscriptions !== 1) return poll(inPtr, outPtr, nsubscriptions, neventsPtr);
    const view = new DataView(memory.buffer);
    const isRelativeClock = view.getUint8(inPtr + TAG_OFFSET) === EVENTTYPE_CLOCK && (view.getUint16(inPtr + CLOCK_FLAGS_OFFSET, true) & 1) === 0;
    if (!isRelativeClock) return poll(inPtr, outPtr, nsubscriptions, neventsPtr);
    let remaining = view.getBigUint64(inPtr + CLOCK_TIMEOUT_OFFSET, true);
    const deadline = process.hrtime.bigint() + remaining;
    for (;;) {
      const slice = remaining < POLL_SLICE_NS ? remaining : POLL_SLICE_NS;
      new DataView(memory.buffer).setBigUint64(inPtr + CLOCK_TIMEOUT_OFFSET, slice, true);
      const errno = poll(inPtr, outPtr, nsubscriptions, neventsPtr);
      remaining = deadline - process.hrtime.bigint();
      if (errno !== 0 || remaining <= 0n) return errno;
    }
  };
}


parentPort?.on('message', (req: RunRequest) => {
  void run(req).then((reply) => parentPort?.postMessage(reply));
});
