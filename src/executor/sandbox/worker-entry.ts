import { closeSync, openSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { parentPort } from 'node:worker_threads';
import type { RunReply, RunRequest } from './messages.js';

// Node 20's node:wasi can let a garbage collection run in the middle of a WASI call once WASM memory
// reaches a few tens of MiB, which aborts the whole process (seen with fd_write). Turning V8's fast API
// calls off before node:wasi is loaded avoids it. The flag is process-wide; the pool sets it too.
setFlagsFromString('--no-turbo-fast-api-calls');
const { WASI } = await import('node:wasi');

/**
 * Runs one WASI job at a time inside a worker thread, so a module that loops, traps or allocates wildly
 * can be stopped by terminating the worker without touching the agent's own event loop.
 */
async function run(req: RunRequest): Promise<RunReply> {
  const fds: number[] = [];
  const open = (path: string, flags: string) => {
    const fd = openSync(path, flags);
    fds.push(fd);
    return fd;
  };
  let instance: WebAssembly.Instance | undefined;
  try {
    // Without a stdin file the job reads an empty stream, never the agent's own stdin.
    const stdin = open(req.stdinPath ?? '/dev/null', 'r');
    const stdout = open(req.stdoutPath, 'w');
    const stderr = open(req.stderrPath, 'w');
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
      imports[module] = { ...(imports[module] ?? {}), [name]: new WebAssembly.Memory({ initial: limits.minPages, ...(limits.maxPages !== undefined ? { maximum: limits.maxPages } : {}) }) };
    }
    instance = await WebAssembly.instantiate(req.module, imports);
    const exitCode = wasi.start(instance);
    return { type: 'done', runId: req.runId, outcome: 'exited', exitCode, message: `exited with code ${exitCode}`, ...memoryOf(instance) };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof WebAssembly.RuntimeError) return { type: 'done', runId: req.runId, outcome: 'trap', message: `trap: ${message}`, ...memoryOf(instance) };
    return { type: 'done', runId: req.runId, outcome: 'error', message, ...memoryOf(instance) };
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

function memoryOf(instance: WebAssembly.Instance | undefined): { memoryBytes?: number } {
  const memory = instance?.exports.memory;
  return memory instanceof WebAssembly.Memory ? { memoryBytes: memory.buffer.byteLength } : {};
}

parentPort?.on('message', (req: RunRequest) => {
  void run(req).then((reply) => parentPort?.postMessage(reply));
});
