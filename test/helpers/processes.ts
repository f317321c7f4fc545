import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const UCP_BIN = join(ROOT, 'dist', 'src', 'cli', 'main.js');

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export function tempDir(prefix = 'ucp-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface LogLine {
  level: number;
  time: number;
  msg: string;
  [key: string]: unknown;
}

/**
 * The state directory child processes use by default (XDG_STATE_HOME), one per test file, so nodes and
 * clients started without --data-dir never write into the developer's home or see another file's jobs.
 */
export const STATE_HOME = mkdtempSync(join(tmpdir(), 'ucp-test-state-'));
process.once('exit', () => rmSync(STATE_HOME, { recursive: true, force: true }));

/**
 * Environment for child processes: nothing UCP_* (or systemd's state directory) leaks in from the developer's
 * shell. Tests wait for what nodes log at info, and a node whose output is a pipe logs only warnings unless
 * told otherwise.
 */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('UCP_') && k !== 'STATE_DIRECTORY' && k !== 'INVOCATION_ID') env[k] = v;
  return { ...env, UCP_LOG_LEVEL: 'info', XDG_STATE_HOME: STATE_HOME, ...extra };
}

/**
 * A real process (a `ucp` command, Mosquitto, ...) whose output is collected line by line. JSON log lines
 * are parsed, so tests can wait for what a node says it observed.
 */
export class Proc {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  readonly logs: LogLine[] = [];
  stderr = '';
  private waiters: Array<() => void> = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(command: string, args: string[], env: NodeJS.ProcessEnv = cleanEnv(), cwd?: string) {
    this.child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], ...(cwd !== undefined ? { cwd } : {}) });
    // Nodes log to stdout, query commands to stderr (their answer owns stdout): collect logs from both.
    this.collect(this.child.stdout!, (line) => this.lines.push(line));
    this.collect(this.child.stderr!, (line) => (this.stderr += `${line}\n`));
    this.exited = new Promise((resolveExit) => this.child.once('close', (code, signal) => {
      this.notify();
      resolveExit({ code, signal });
    }));
  }

  private collect(stream: NodeJS.ReadableStream, keep: (line: string) => void): void {
    let buffered = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        keep(line);
        if (line.startsWith('{')) {
          try {
            this.logs.push(JSON.parse(line) as LogLine);
          } catch {
            // Not a log line after all.
          }
        }
      }
      this.notify();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits until `find` returns something, checking after every chunk of output. */
  async waitFor<T>(what: string, find: () => T | undefined, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = find();
      if (found !== undefined && found !== false) return found;
      const left = deadline - Date.now();
      if (left <= 0 || this.child.exitCode !== null) {
        throw new Error(`timed out waiting for ${what}; exit ${this.child.exitCode}; last output:\n${this.lines.slice(-15).join('\n')}\n${this.stderr.slice(-2000)}`);
      }
      await new Promise<void>((r) => {
        const timer = setTimeout(r, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
  }

  /** Waits for a log line matching every given field, searching lines from index `from` on. */
  waitForLog(match: Partial<LogLine>, timeoutMs = 10_000, from = 0): Promise<LogLine> {
    return this.waitFor(`log ${JSON.stringify(match)}`, () => this.logs.slice(from).find((l) => matches(l, match)), timeoutMs);
  }

  waitForLine(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    return this.waitFor(`line ${pattern}`, () => this.lines.find((l) => pattern.test(l)), timeoutMs);
  }

  count(match: Partial<LogLine>): number {
    return this.logs.filter((l) => matches(l, match)).length;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGCONT');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(timer);
  }
}

function matches(line: LogLine, match: Partial<LogLine>): boolean {
  return Object.entries(match).every(([k, v]) => line[k] === v);
}

/** Runs `ucp` with the given arguments as a real process (in `cwd`, by default this process's). */
export function ucp(args: string[], env: Record<string, string> = {}, cwd?: string): Proc {
  return new Proc(process.execPath, [UCP_BIN, ...args], cleanEnv(env), cwd);
}

/** Runs a `ucp` command to completion. */
export async function ucpRun(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000, cwd?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = ucp(args, env, cwd);
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  const { code } = await proc.exited;
  clearTimeout(timer);
  return { code, stdout: proc.lines.join('\n'), stderr: proc.stderr };
}

/** Starts `ucp hub` as a real process on `port` and waits until it listens. */
export async function startHubProcess(port: number): Promise<Proc> {
  const hub = ucp(['hub', '--port', String(port), '--log-level', 'warn']);
  await hub.waitForLine(/hub listening on/);
  return hub;
}
