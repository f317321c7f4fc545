import type { MemoryLimits } from './module-check.js';
import type { CollectedResults, UndeliverableResults } from './result-collection.js';

/** Everything a job sees and delivers, in memory: nothing here names a host path. */
export interface JobIo {
  /** Passed verbatim: args[0] is the first argument the module sees, as in REC. */
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Read by the job as its standard input; empty when absent. */
  readonly stdin?: Uint8Array;
  /** Directories created before the run (job paths, relative to the job root). */
  readonly dirs: readonly string[];
  /** Files staged before the run: job path -> bytes. */
  readonly inputs: ReadonlyArray<readonly [string, Uint8Array]>;
  /** Job paths that receive stdout and stderr; without one the stream is discarded (its tail is kept). */
  readonly stdoutFile?: string;
  readonly stderrFile?: string;
  /** Paths zipped into the result archive. */
  readonly results: readonly string[];
  /** Job path -> data name, read out after the run. */
  readonly namedResults: ReadonlyArray<readonly [string, string]>;
  /** Return every file of the tree after the run (to keep a job's files for debugging). */
  readonly keepTree?: boolean;
}

export interface SandboxLimits {
  /** Bytes the job may write in all (files and streams). */
  readonly outputBytes: number;
  /** Files and directories the job may create. */
  readonly maxNodes: number;
  /** Descriptors the job may hold open. */
  readonly maxFds: number;
  /** Archive plus named results of one job at most (executor.max_result_mb). */
  readonly maxResultBytes: number;
  /** Most file paths one result may list. */
  readonly maxResultFiles: number;
}

/**
 * A piece of an input too large to travel inside its run request. The pieces of a run come before its
 * request, so neither side serializes a large input whole a second time.
 */
export interface InputPiece {
  readonly type: 'input';
  readonly runId: number;
  readonly path: string;
  /** The whole input's size; the first piece of a path makes room for all of it. */
  readonly size: number;
  readonly at: number;
  readonly bytes: Uint8Array;
}

/** Inputs larger than this go to the sandbox process in pieces of this size. */
export const INPUT_PIECE_BYTES = 1_048_576;

/** What the pool asks a sandbox process to run. */
export interface RunRequest extends JobIo {
  readonly type: 'run';
  readonly runId: number;
  /** Names the checked module; the process keeps the last few it compiled. */
  readonly moduleKey: string;
  /** The checked module's bytes, sent only when the process does not hold `moduleKey` yet. */
  readonly module?: Uint8Array;
  readonly importedMemory?: { module: string; name: string; limits: MemoryLimits };
  readonly limits: SandboxLimits;
}

/**
 * How a run ended inside the sandbox process. 'invalid': the module could not be compiled or
 * instantiated; 'staging': the job's files could not be put in place; 'raised': the job called
 * proc_raise, which ends only the job.
 */
export type ProcessOutcome = 'exited' | 'trap' | 'raised' | 'output_limit' | 'invalid' | 'staging';

export interface RunReply {
  readonly type: 'done';
  readonly runId: number;
  readonly outcome: ProcessOutcome;
  readonly exitCode?: number;
  readonly message: string;
  /** Size of the module's linear memory when it stopped, to tell a memory cap from other failures. */
  readonly memoryBytes?: number;
  /** The last line the job wrote to stderr. */
  readonly stderrTail: string;
  readonly collected?: CollectedResults | UndeliverableResults;
  /** Every file of the tree, when the request asked to keep it. */
  readonly tree?: ReadonlyArray<readonly [string, Uint8Array]>;
}

/** Sent once by a new sandbox process when it can take runs. */
export interface ReadyMessage {
  readonly type: 'ready';
}

/** Compiled modules a sandbox process keeps; the pool mirrors the same list per process. */
export const PROCESS_MODULE_CACHE = 16;
