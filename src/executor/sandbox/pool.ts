import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { WORKER_MODULE_CACHE, type JobIo, type RunReply, type RunRequest } from './messages.js';
import { capMemory, MAX_WASM32_PAGES, MemoryCapError, WASM_PAGE_BYTES, type CappedModule } from './wasm-memory.js';

export interface SandboxJob extends JobIo {
  /** The module's bytes, as fetched from the datastore. */
  readonly wasm: Uint8Array;
  readonly timeoutMs: number;
  readonly memoryCapBytes: number;
}

/**
 * 'invalid_module': the bytes are not a runnable WASI command. 'error': the host failed (the job's files,
 * or the worker itself), which says nothing about the job and is worth running again elsewhere.
 */
export type SandboxOutcome = 'exited' | 'trap' | 'timeout' | 'memory_limit' | 'invalid_module' | 'cancelled' | 'error';

export interface SandboxResult {
  readonly outcome: SandboxOutcome;
  /** Set when the module exited on its own (outcome 'exited'), 0 meaning success. */
  readonly exitCode?: number;
  /** One line for humans: why it ended. */
  readonly message: string;
  readonly durationMs: number;
}

export interface SandboxPoolOptions {
  /** Jobs that may run at once; each gets its own worker thread. */
  readonly size: number;
  /** Compiled modules kept, by content hash, so a module used again is not compiled again. */
  readonly cacheEntries?: number;
}

export interface RunHandle {
  readonly result: Promise<SandboxResult>;
  /** Stops the job if it is queued or running; it then ends as 'cancelled'. */
  cancel(): void;
}

interface Slot {
  worker: Worker;
  /** Module keys this worker holds, in the order it received them (it drops the oldest, as we do here). */
  sent: string[];
  /** The run this worker is busy with, if any. */
  run?: { runId: number; onReply: (reply: RunReply) => void; stop: (outcome: 'cancelled' | 'error', message: string) => void };
}

interface Pending {
  readonly job: SandboxJob;
  readonly finish: (r: Omit<SandboxResult, 'durationMs'>) => void;
  state: 'queued' | 'running' | 'done';
  /** Set while running: stops the worker and frees its slot. */
  stop?: (outcome: 'timeout' | 'cancelled', message: string) => void;
}

/** How far below the cap a failed job's memory may be and still count as having hit it. */
const CAP_MARGIN_BYTES = 2 * 1_048_576;
/** V8 heap for a worker's JavaScript; the WASM memory itself is capped separately, in the module. */
const WORKER_HEAP_MB = 64;

/**
 * The compiled worker script. Under the test runner this module is TypeScript, but a worker must be
 * JavaScript, so fall back to the build output beside it in dist/.
 */
function workerScript(): URL {
  const sibling = new URL('./worker-entry.js', import.meta.url);
  if (existsSync(fileURLToPath(sibling))) return sibling;
  const built = new URL(import.meta.url.replace('/src/executor/sandbox/', '/dist/src/executor/sandbox/').replace(/pool\.ts$/, 'worker-entry.js'));
  if (existsSync(fileURLToPath(built))) return built;
  throw new Error('the sandbox worker is not built; run `npm run build`');
}

/**
 * Runs WASI jobs in a pool of worker threads. A job that runs past its timeout, or is cancelled, has its
 * worker terminated (the only way to stop running WASM) and replaced, so the slot is free again at once.
 */
export class SandboxPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private readonly cache = new Map<string, { key: string; module: WebAssembly.Module; capped: CappedModule }>();
  private readonly cacheEntries: number;
  private readonly script = workerScript();
  private nextRunId = 1;
  private closed = false;
  /** Modules compiled so far; a cache hit does not count. */
  compiled = 0;
  /** Workers told to terminate that have not stopped yet: a job stuck where termination cannot reach. */
  terminating = 0;

  constructor(options: SandboxPoolOptions) {
    // See worker-entry.ts: without this, node:wasi can abort the process under memory pressure.
    setFlagsFromString('--no-turbo-fast-api-calls');
    this.cacheEntries = options.cacheEntries ?? 64;
    for (let i = 0; i < options.size; i++) this.slots.push(this.spawn());
  }

  get running(): number {
    return this.slots.filter((s) => s.run !== undefined).length;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Queues a job; it starts as soon as a worker is free. */
  run(job: SandboxJob): RunHandle {
    if (this.closed) return { result: Promise.resolve({ outcome: 'cancelled', message: 'the sandbox pool is closed', durationMs: 0 }), cancel: () => undefined };
    const started = performance.now();
    let pending!: Pending;
    const result = new Promise<SandboxResult>((resolve) => {
      pending = {
        job,
        state: 'queued',
        finish: (r) => {
          if (pending.state === 'done') return;
          pending.state = 'done';
          resolve({ ...r, durationMs: performance.now() - started });
        },
      };
    });
    this.queue.push(pending);
    this.pump();
    return {
      result,
      cancel: () => {
        if (pending.state === 'queued') {
          this.queue.splice(this.queue.indexOf(pending), 1);
          pending.finish({ outcome: 'cancelled', message: 'cancelled before it started' });
        } else if (pending.state === 'running') {
          pending.stop?.('cancelled', 'cancelled while running');
        }
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) p.finish({ outcome: 'cancelled', message: 'the sandbox pool was closed' });
    for (const slot of this.slots) slot.run?.stop('cancelled', 'the sandbox pool was closed');
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (this.closed || this.queue.length === 0) return;
      if (slot.run === undefined) void this.execute(slot, this.queue.shift()!);
    }
  }

  private async execute(slot: Slot, pending: Pending): Promise<void> {
    const runId = this.nextRunId++;
    const { job } = pending;
    pending.state = 'running';
    let timer: NodeJS.Timeout | undefined;
    // Claim the slot before the first await, so that pump() does not hand it out twice.
    const done = (r: Omit<SandboxResult, 'durationMs'>, replaceWorker: boolean) => {
      clearTimeout(timer);
      if (slot.run?.runId === runId) slot.run = undefined;
      if (replaceWorker) this.replace(slot);
      pending.finish(r);
      this.pump();
    };
    pending.stop = (outcome, message) => done({ outcome, message }, true);
    slot.run = { runId, onReply: (reply) => done(this.classify(reply, job.memoryCapBytes), false), stop: (outcome, message) => done({ outcome, message }, true) };

    let compiled: { key: string; module: WebAssembly.Module; capped: CappedModule };
    try {
      compiled = await this.compile(job.wasm, job.memoryCapBytes);
    } catch (err) {
      const outcome = err instanceof MemoryCapError ? 'memory_limit' : 'invalid_module';
      done({ outcome, message: err instanceof Error ? err.message : String(err) }, false);
      return;
    }
    if (pending.state !== 'running' || slot.run?.runId !== runId) return;
    timer = setTimeout(() => pending.stop?.('timeout', `killed after the ${job.timeoutMs} ms timeout`), job.timeoutMs);
    const { wasm: _bytes, timeoutMs: _timeout, memoryCapBytes: _cap, ...io } = job;
    const known = slot.sent.includes(compiled.key);
    if (!known) {
      slot.sent.push(compiled.key);
      if (slot.sent.length > WORKER_MODULE_CACHE) slot.sent.shift();
    }
    const request: RunRequest = {
      ...io,
      type: 'run',
      runId,
      moduleKey: compiled.key,
      ...(known ? {} : { module: compiled.module }),
      ...(compiled.capped.importedMemory !== undefined ? { importedMemory: compiled.capped.importedMemory } : {}),
    };
    slot.worker.postMessage(request);
  }

  /**
   * A module that hit the cap sees failed allocations and then traps or exits non-zero. Its memory at that
   * point is close to the cap (short of it by at most the allocation that failed), which tells it apart
   * from an ordinary failure.
   */
  private classify(reply: RunReply, capBytes: number): Omit<SandboxResult, 'durationMs'> {
    if (reply.outcome === 'invalid') return { outcome: 'invalid_module', message: reply.message };
    if (reply.outcome === 'host_error') return { outcome: 'error', message: reply.message };
    const failed = reply.outcome === 'trap' || reply.exitCode !== 0;
    const capped = Math.min(MAX_WASM32_PAGES, Math.floor(capBytes / WASM_PAGE_BYTES)) * WASM_PAGE_BYTES;
    const nearCap = capped - Math.min(CAP_MARGIN_BYTES, capped / 16);
    if (failed && reply.memoryBytes !== undefined && reply.memoryBytes >= nearCap) {
      return { outcome: 'memory_limit', ...(reply.exitCode !== undefined ? { exitCode: reply.exitCode } : {}), message: `ran out of its ${Math.round(capped / 1_048_576)} MiB memory cap (${reply.message})` };
    }
    return { outcome: reply.outcome, ...(reply.exitCode !== undefined ? { exitCode: reply.exitCode } : {}), message: reply.message };
  }

  private spawn(): Slot {
    const slot = {} as Slot;
    this.startWorker(slot);
    return slot;
  }

  private startWorker(slot: Slot): void {
    const worker = new Worker(this.script, { resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB } });
    slot.worker = worker;
    slot.sent = [];
    worker.unref();
    worker.on('message', (reply: RunReply) => {
      if (slot.worker === worker && slot.run?.runId === reply.runId) slot.run.onReply(reply);
    });
    // A worker can die on its own (an 'error', or an exit such as hitting its heap limit): its job fails
    // as a host error and the slot gets a fresh worker.
    const lost = (why: string) => {
      if (slot.worker !== worker || this.closed) return;
      if (slot.run !== undefined) slot.run.stop('error', `the sandbox worker ${why}`);
      else this.replace(slot);
    };
    worker.on('error', (err) => lost(`failed: ${err.message}`));
    worker.on('exit', (code) => lost(`exited with code ${code}`));
  }

  /** Terminates a slot's worker (stopping whatever WASM it runs) and puts a fresh one in its place. */
  private replace(slot: Slot): void {
    const old = slot.worker;
    if (!this.closed) this.startWorker(slot);
    this.terminating++;
    void old.terminate().finally(() => this.terminating--);
  }

  private async compile(wasm: Uint8Array, capBytes: number): Promise<{ key: string; module: WebAssembly.Module; capped: CappedModule }> {
    const key = `${createHash('sha256').update(wasm).digest('hex')}:${capBytes}`;
    const hit = this.cache.get(key);
    if (hit !== undefined) {
      // Refresh its place: the map's insertion order is the eviction order.
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    const capped = capMemory(wasm, capBytes);
    const module = await WebAssembly.compile(capped.bytes);
    this.compiled++;
    const entry = { key, module, capped };
    this.cache.set(key, entry);
    if (this.cache.size > this.cacheEntries) this.cache.delete(this.cache.keys().next().value!);
    return entry;
  }
}

