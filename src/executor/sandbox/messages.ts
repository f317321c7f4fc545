import type { MemoryLimits } from './wasm-memory.js';

/** What the pool asks a worker to run. Paths are on the host; the job directory is the guest's `/`. */
export interface RunRequest {
  readonly type: 'run';
  readonly runId: number;
  readonly module: WebAssembly.Module;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly jobDir: string;
  readonly stdinPath?: string;
  readonly stdoutPath: string;
  readonly stderrPath: string;
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
