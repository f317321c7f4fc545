import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { INPUT_PIECE_BYTES, PROCESS_MODULE_CACHE, type InputPiece, type JobIo, type ReadyMessage, type RunReply, type RunRequest, type SandboxLimits } from './messages.js';
import { checkModule, MAX_WASM32_PAGES, MemoryCapError, WASM_PAGE_BYTES, type CheckedModule } from './module-check.js';
import type { CollectedResults } from './result-collection.js';
import { WASI_PREVIEW1_FUNCTIONS } from './wasi-functions.js';

export interface SandboxJob extends JobIo {
  /** The module's bytes, as fetched from the datastore. */
  readonly wasm: Uint8Array;
  readonly timeoutMs: number;
  readonly memoryCapBytes: number;
  readonly limits: SandboxLimits;
}

/**
 * How a run ended. 'invalid_module': the bytes are not a runnable WASI command, or break a rule of the
 * sandbox. 'crashed': the sandbox process died under the job. 'result_too_large'/'result_undeliverable':
 * the job ran, but its results cannot travel. 'error': the host failed, which says nothing about the job
 * and is worth running again elsewhere.
 */
export type SandboxOutcome =
  | 'exited'
  | 'trap'
  | 'timeout'
  | 'memory_limit'
  | 'output_limit'
  | 'invalid_module'
  | 'crashed'
  | 'result_too_large'
  | 'result_undeliverable'
  | 'cancelled'
  | 'error';

export interface SandboxResult {
  readonly outcome: SandboxOutcome;
  /** Set when the module exited on its own (outcome 'exited'), 0 meaning success. */
  readonly exitCode?: number;
  /** One line for humans: why it ended. */
  readonly message: string;
  readonly durationMs: number;
  /** The last line the job wrote to stderr, if any. */
  readonly stderrTail?: string;
  /** What the job delivers; absent when it never ran or its results cannot travel. */
  readonly results?: CollectedResults;
  /** Every file the job left, when the job asked for it (keepTree). */
  readonly tree?: ReadonlyArray<readonly [string, Uint8Array]>;
}

export interface SandboxPoolOptions {
  /** Jobs that may run at once; each gets its own sandbox process. */
  readonly size: number;
  /** Checked modules kept, by content hash and cap, so a module used again is not checked again. */
  readonly cacheEntries?: number;
  /** Most elements a module's table may hold. */
  readonly maxTableElements?: number;
  /** A sandbox process with no job for this long exits; a new one starts for the next job. 0 keeps them. */
  readonly idleMs?: number;
  /** A process whose job's memory grew past this is replaced after the run, so the unit gets it back. */
  readonly recycleAboveBytes?: number;
}

export interface RunHandle {
  readonly result: Promise<SandboxResult>;
  /** Stops the job if it is queued or running; it then ends as 'cancelled'. */
  cancel(): void;
}

interface Slot {
  child?: ChildProcess;
  ready?: Promise<void>;
  /** Module keys this process holds, in the order it received them (it drops the oldest, as we do here). */
  sent: string[];
  run?: { runId: number; onReply: (reply: RunReply) => void; stop: (outcome: 'timeout' | 'cancelled' | 'crashed' | 'error', message: string) => void };
  idle?: NodeJS.Timeout;
}

interface Pending {
  readonly job: SandboxJob;
  readonly finish: (r: Omit<SandboxResult, 'durationMs'>) => void;
  state: 'queued' | 'running' | 'done';
  stop?: (outcome: 'timeout' | 'cancelled', message: string) => void;
}

/** How far below the cap a failed job's memory may be and still count as having hit it. */
const CAP_MARGIN_BYTES = 2 * 1_048_576;
/** JavaScript heap of a sandbox process; WASM memory is capped separately, in the module. */
const PROCESS_HEAP_MB = 64;
const DEFAULT_TABLE_ELEMENTS = 100_000;

/**
 * The compiled sandbox script. Under the test runner this module is TypeScript, but a child process must
 * run JavaScript, so fall back to the build output beside it in dist/.
 */
function processScript(): string {
  const sibling = fileURLToPath(new URL('./sandbox-process.js', import.meta.url));
  if (existsSync(sibling)) return sibling;
  const built = fileURLToPath(import.meta.url.replace('/src/executor/sandbox/', '/dist/src/executor/sandbox/').replace(/pool\.ts$/, 'sandbox-process.js'));
  if (existsSync(built)) return built;
  throw new Error('the sandbox process is not built; run `npm run build`');
}

/**
 * Node flags for a sandbox process: a small heap, and the permission model with reads allowed only of the
 * code it runs (the project's compiled sources and the zip library), so even a flaw in the WASI layer
 * could not reach the unit's files, start processes or threads.
 */
function processFlags(script: string): string[] {
  const code = join(dirname(script), '..', '..');
  const fflate = join(dirname(createRequire(import.meta.url).resolve('fflate')), '..');
  // Directories end in a separator, so that a sibling sharing the prefix (dist/src-old) is not included.
  const readable = [`${code}${sep}`, `${fflate}${sep}`, join(code, '..', '..', 'package.json')];
  const permission = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';
  return [permission, ...readable.map((p) => `--allow-fs-read=${p}`), `--max-old-space-size=${PROCESS_HEAP_MB}`, '--max-semi-space-size=4', '--no-warnings'];
}

/**
 * Runs WASI jobs in a pool of sandbox processes. A job that runs past its timeout, or is cancelled, has
 * its process killed (the only way to stop running WASM) and replaced, so the slot is free again at once.
 * A process that dies under a job ends that job as 'crashed', and the next job gets a new process.
 */
export class SandboxPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private readonly cache = new Map<string, { key: string; checked: CheckedModule }>();
  private readonly digests = new WeakMap<Uint8Array, string>();
  private readonly cacheEntries: number;
  private readonly tableElements: number;
  private readonly idleMs: number;
  private readonly recycleAboveBytes: number;
  private readonly script = processScript();
  private readonly flags = processFlags(this.script);
  private nextRunId = 1;
  private closed = false;
  /** Modules checked so far; a cache hit does not count. */
  checked = 0;
  /** Sandbox processes started so far, replacements included. */
  started = 0;

  constructor(options: SandboxPoolOptions) {
    this.cacheEntries = options.cacheEntries ?? 64;
    this.tableElements = options.maxTableElements ?? DEFAULT_TABLE_ELEMENTS;
    this.idleMs = options.idleMs ?? 60_000;
    this.recycleAboveBytes = options.recycleAboveBytes ?? 64 * 1_048_576;
    for (let i = 0; i < options.size; i++) this.slots.push({ sent: [] });
  }

  get running(): number {
    return this.slots.filter((s) => s.run !== undefined).length;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Sandbox processes alive now. */
  get processes(): number {
    return this.slots.filter((s) => s.child !== undefined).length;
  }

  /** Starts one sandbox process ahead of the first job, so it does not wait for one. */
  warm(): void {
    const slot = this.slots[0];
    if (slot !== undefined && slot.child === undefined && !this.closed) this.startProcess(slot);
  }

  /** Queues a job; it starts as soon as a sandbox process is free. */
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
    await Promise.all(this.slots.map((slot) => this.kill(slot)));
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (this.closed || this.queue.length === 0) return;
      if (slot.run === undefined) this.execute(slot, this.queue.shift()!);
    }
  }

  private execute(slot: Slot, pending: Pending): void {
    const runId = this.nextRunId++;
    const { job } = pending;
    pending.state = 'running';
    clearTimeout(slot.idle);
    let timer: NodeJS.Timeout | undefined;
    const done = (r: Omit<SandboxResult, 'durationMs'>, replace: boolean) => {
      clearTimeout(timer);
      if (slot.run?.runId !== runId) return;
      slot.run = undefined;
      if (replace) void this.kill(slot);
      else this.idleLater(slot);
      pending.finish(r);
      this.pump();
    };
    // Claimed before anything asynchronous, so that pump() does not hand the slot out twice.
    slot.run = {
      runId,
      onReply: (reply) => done(this.classify(reply, job), (reply.memoryBytes ?? 0) > this.recycleAboveBytes),
      stop: (outcome, message) => done({ outcome, message }, true),
    };
    pending.stop = (outcome, message) => slot.run?.runId === runId && slot.run.stop(outcome, message);

    let checked: { key: string; checked: CheckedModule };
    try {
      checked = this.check(job.wasm, job.memoryCapBytes);
    } catch (err) {
      const outcome = err instanceof MemoryCapError ? 'memory_limit' : 'invalid_module';
      done({ outcome, message: err instanceof Error ? err.message : String(err) }, false);
      return;
    }
    if (slot.child === undefined) this.startProcess(slot);
    const child = slot.child!;
    timer = setTimeout(() => pending.stop?.('timeout', `killed after its ${formatSeconds(job.timeoutMs)} time limit`), job.timeoutMs);
    const known = slot.sent.includes(checked.key);
    if (!known) {
      slot.sent.push(checked.key);
      if (slot.sent.length > PROCESS_MODULE_CACHE) slot.sent.shift();
    }
    const { wasm: _bytes, timeoutMs: _timeout, memoryCapBytes: _cap, ...io } = job;
    const large = io.inputs.filter(([, bytes]) => bytes.byteLength > INPUT_PIECE_BYTES);
    const request: RunRequest = {
      ...io,
      inputs: io.inputs.filter(([, bytes]) => bytes.byteLength <= INPUT_PIECE_BYTES),
      type: 'run',
      runId,
      moduleKey: checked.key,
      ...(known ? {} : { module: checked.checked.bytes }),
      ...(checked.checked.importedMemory !== undefined ? { importedMemory: checked.checked.importedMemory } : {}),
    };
    const current = () => slot.child === child && slot.run?.runId === runId;
    void slot.ready!.then(async () => {
      // One piece in the channel at a time: a large input is not serialized whole beside its fetched copy.
      for (const [path, bytes] of large) {
        for (let at = 0; at < bytes.byteLength && current(); at += INPUT_PIECE_BYTES) {
          const piece: InputPiece = { type: 'input', runId, path, size: bytes.byteLength, at, bytes: bytes.subarray(at, at + INPUT_PIECE_BYTES) };
          await new Promise<void>((resolve) => child.send(piece, () => resolve()));
        }
      }
      if (current()) child.send(request);
    });
  }

  /**
   * A module that hit its memory cap sees failed allocations and then traps or exits non-zero. Its memory
   * at that point is close to the cap (short of it by at most the allocation that failed), which tells it
   * apart from an ordinary failure.
   */
  private classify(reply: RunReply, job: SandboxJob): Omit<SandboxResult, 'durationMs'> {
    const common = { stderrTail: reply.stderrTail, ...(reply.tree !== undefined ? { tree: reply.tree } : {}) };
    switch (reply.outcome) {
      case 'invalid':
        return { outcome: 'invalid_module', message: reply.message, ...common };
      case 'staging':
        return { outcome: 'error', message: reply.message, ...common };
      default:
    }
    const collected = reply.collected;
    if (collected !== undefined && 'outcome' in collected) return { outcome: collected.outcome, message: collected.message, ...common };
    const results = collected !== undefined ? { results: collected } : {};
    const exit = reply.exitCode !== undefined ? { exitCode: reply.exitCode } : {};
    if (reply.outcome === 'output_limit') return { outcome: 'output_limit', message: reply.message, ...common, ...results };
    if (reply.outcome === 'raised') return { outcome: 'trap', message: reply.message, ...common, ...results };
    const failed = reply.outcome === 'trap' || reply.exitCode !== 0;
    const capped = Math.min(MAX_WASM32_PAGES, Math.floor(job.memoryCapBytes / WASM_PAGE_BYTES)) * WASM_PAGE_BYTES;
    const nearCap = capped - Math.min(CAP_MARGIN_BYTES, capped / 16);
    if (failed && reply.memoryBytes !== undefined && reply.memoryBytes >= nearCap) {
      return { outcome: 'memory_limit', ...exit, message: `ran out of its ${Math.round(capped / 1_048_576)} MiB memory limit (${reply.message})`, ...common, ...results };
    }
    return { outcome: reply.outcome === 'trap' ? 'trap' : 'exited', ...exit, message: reply.message, ...common, ...results };
  }

  private startProcess(slot: Slot): void {
    const child = fork(this.script, [], {
      execArgv: this.flags,
      // No environment: the executor's (the hub password among it) is not the job's business.
      env: {},
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    });
    this.started++;
    slot.child = child;
    slot.sent = [];
    slot.ready = new Promise<void>((resolve) => {
      const onReady = (msg: ReadyMessage | RunReply) => {
        if (msg.type !== 'ready') return;
        child.off('message', onReady);
        resolve();
      };
      child.on('message', onReady);
      child.once('exit', () => resolve());
    });
    child.on('message', (reply: RunReply | ReadyMessage) => {
      if (reply.type === 'done' && slot.child === child && slot.run?.runId === reply.runId) slot.run.onReply(reply);
    });
    child.on('error', () => undefined);
    child.once('exit', (code, signal) => {
      if (slot.child !== child) return;
      slot.child = undefined;
      slot.sent = [];
      // A death nobody asked for, during a run, is the job's doing: a sandbox process runs nothing else.
      if (slot.run !== undefined && !this.closed) slot.run.stop('crashed', `the job's sandbox process died (${signal ?? `exit code ${code}`}); the job exhausted or broke it`);
    });
    child.unref();
    (child.channel as { unref?: () => void } | undefined)?.unref?.();
  }

  /** Ends a slot's process; a new one starts with the slot's next job. */
  private kill(slot: Slot): Promise<void> {
    clearTimeout(slot.idle);
    const child = slot.child;
    slot.child = undefined;
    slot.sent = [];
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  private idleLater(slot: Slot): void {
    if (this.idleMs <= 0) return;
    clearTimeout(slot.idle);
    slot.idle = setTimeout(() => {
      if (slot.run === undefined) void this.kill(slot);
    }, this.idleMs);
    slot.idle.unref();
  }

  private check(wasm: Uint8Array, capBytes: number): { key: string; checked: CheckedModule } {
    // The executor hands the same bytes object for the same module version: hash each one once.
    let digest = this.digests.get(wasm);
    if (digest === undefined) this.digests.set(wasm, (digest = createHash('sha256').update(wasm).digest('hex')));
    const key = `${digest}:${capBytes}:${this.tableElements}`;
    const hit = this.cache.get(key);
    if (hit !== undefined) {
      // Refresh its place: the map's insertion order is the eviction order.
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    const checked = checkModule(wasm, { memoryBytes: capBytes, tableElements: this.tableElements, wasiFunctions: WASI_PREVIEW1_FUNCTIONS });
    this.checked++;
    const entry = { key, checked };
    this.cache.set(key, entry);
    if (this.cache.size > this.cacheEntries) this.cache.delete(this.cache.keys().next().value!);
    return entry;
  }
}

function formatSeconds(ms: number): string {
  return ms % 1_000 === 0 ? `${ms / 1_000} s` : `${ms} ms`;
}

