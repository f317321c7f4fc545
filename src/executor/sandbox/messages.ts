import type { MemoryLimits } from './wasm-memory.js';

/** A job's inputs and outputs. Paths are on the host; the job directory is the guest's `/`. */
export interface JobIo {
  /** Passed verbatim: args[0] is the first argument the module sees, as in REC. */
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Host directory preopened as the guest's `/`. */
  readonly jobDir: string;
  readonly stdinPath?: string;
  readonly stdoutPath: string;
  readonly stderrPath: string;
}

/** Compiled modules a worker keeps, oldest dropped first; the pool mirrors the same list per worker. */
export const WORKER_MODULE_CACHE = 16;

/** What the pool asks a worker to run. */
export interface RunRequest extends JobIo {
  readonly type: 'run';
  readonly runId: number;
  /** Names the compiled module; the worker keeps the last few it was sent. */
  readonly moduleKey: string;
  /** Sent only when the worker does not hold `moduleKey` yet: cloning a module per run is costly. */
  readonly module?: WebAssembly.Module;
  readonly importedMemory?: { module: string; name: string; limits: MemoryLimits };
}

export interface RunReply {
  readonly type: 'done';
  readonly runId: number;
  /** 'invalid': the module could not be instantiated or started; 'host_error': the job's files failed. */
  readonly outcome: 'exited' | 'trap' | 'invalid' | 'host_error';
  readonly exitCode?: number;
  readonly message: string;
  /** Size of the module's linear memory when it stopped, to tell a memory cap from other failures. */
  readonly memoryBytes?: number;
}
