import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capMemory, SandboxPool, WASM_PAGE_BYTES, type SandboxJob } from '../../src/executor/sandbox/index.js';
import { ROOT, removeDir, tempDir } from '../helpers/processes.js';

const fixture = (name: string) => new Uint8Array(readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', `${name}.wasm`)));
const MiB = 1_048_576;

/** Real WASI modules (built from the C sources beside them) in real worker threads. */
describe('WASI sandbox pool', () => {
  let dir: string;
  let pool: SandboxPool;
  let n = 0;

  beforeAll(() => {
    dir = tempDir();
    pool = new SandboxPool({ size: 2 });
  });

  afterAll(async () => {
    await pool.close();
    removeDir(dir);
  });

  function job(name: string, args: string[], extra: Partial<SandboxJob> = {}): SandboxJob {
    const jobDir = join(dir, `job-${++n}`);
    mkdirSync(join(jobDir, 'output'), { recursive: true });
    return {
      wasm: fixture(name),
      args,
      env: {},
      jobDir,
      stdoutPath: join(jobDir, 'output', 'stdout'),
      stderrPath: join(jobDir, 'output', 'stderr'),
      timeoutMs: 10_000,
      memoryCapBytes: 256 * MiB,
      ...extra,
    };
  }

  it('passes argv verbatim, env and stdin, and the job directory is the guest root', async () => {
    const j = job('echo', ['first', 'second arg'], { env: { SECTOR: '4', UNIT: 'fire-1' } });
    writeFileSync(join(j.jobDir, 'stdin.txt'), 'line one\nline two\n');
    const r = await pool.run({ ...j, stdinPath: join(j.jobDir, 'stdin.txt') }).result;
    expect(r).toMatchObject({ outcome: 'exited', exitCode: 0 });
    const out = readFileSync(j.stdoutPath, 'utf8');
    expect(out).toContain('argv[0]=first\n');
    expect(out).toContain('argv[1]=second arg\n');
    expect(out).toContain('env SECTOR=4\n');
    expect(out).toContain('env UNIT=fire-1\n');
    expect(out).toContain('stdin:\nline one\nline two\n');
    expect(readFileSync(join(j.jobDir, 'out.txt'), 'utf8')).toBe('hello from echo\n');
    expect(readFileSync(j.stderrPath, 'utf8')).toBe('echo done\n');
  });

  it('reports a non-zero exit code as such', async () => {
    const j = job('exit-code', ['exit-code', '7']);
    expect(await pool.run(j).result).toMatchObject({ outcome: 'exited', exitCode: 7 });
  });

  it('reports a trap', async () => {
    const r = await pool.run(job('trap', ['trap'])).result;
    expect(r.outcome).toBe('trap');
    expect(r.message).toMatch(/^trap: /);
  });

  it('kills a looping module at its timeout and the slot serves the next job', async () => {
    const r = await pool.run(job('spin', ['spin'], { timeoutMs: 300 })).result;
    expect(r.outcome).toBe('timeout');
    expect(r.message).toMatch(/300 ms timeout/);
    expect(r.durationMs).toBeGreaterThanOrEqual(300);
    const next = await pool.run(job('exit-code', ['exit-code', '0'])).result;
    expect(next).toMatchObject({ outcome: 'exited', exitCode: 0 });
  });

  it('stops a memory-hungry module at its cap', async () => {
    const r = await pool.run(job('memory-hog', ['memory-hog', '512'], { memoryCapBytes: 64 * MiB })).result;
    expect(r.outcome).toBe('memory_limit');
    expect(r.message).toMatch(/64 MiB memory cap/);
    // Under a generous cap the same module succeeds.
    const ok = await pool.run(job('memory-hog', ['memory-hog', '32'], { memoryCapBytes: 256 * MiB })).result;
    expect(ok).toMatchObject({ outcome: 'exited', exitCode: 0 });
  });

  it('survives memory-hungry jobs one after another', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await pool.run(job('memory-hog', ['memory-hog', '96'], { memoryCapBytes: 256 * MiB })).result;
      expect(r).toMatchObject({ outcome: 'exited', exitCode: 0 });
    }
  });

  it('stops a job blocked in a long sleep at its timeout, and its thread really ends', async () => {
    const r = await pool.run(job('sleep', ['sleep', '60'], { timeoutMs: 300 })).result;
    expect(r.outcome).toBe('timeout');
    const deadline = Date.now() + 2_000;
    while (pool.terminating > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
    expect(pool.terminating).toBe(0);
  });

  it('a sleeping job still sleeps as long as it asked', async () => {
    const j = job('sleep', ['sleep', '1']);
    const r = await pool.run(j).result;
    expect(r).toMatchObject({ outcome: 'exited', exitCode: 0 });
    expect(r.durationMs).toBeGreaterThanOrEqual(1_000);
    expect(readFileSync(j.stdoutPath, 'utf8')).toBe('slept 1 s\n');
  });

  it('reports a failure of the job\'s own files as a host error, not as a bad module', async () => {
    const j = job('exit-code', ['exit-code', '0']);
    const r = await pool.run({ ...j, stdoutPath: join(j.jobDir, 'missing-dir', 'stdout') }).result;
    expect(r.outcome).toBe('error');
    expect(r.message).toMatch(/cannot open the job's standard streams/);
  });

  it('under a small cap, an ordinary failure is not mistaken for running out of memory', async () => {
    const r = await pool.run(job('exit-code', ['exit-code', '7'], { memoryCapBytes: 2 * MiB })).result;
    expect(r).toMatchObject({ outcome: 'exited', exitCode: 7 });
  });

  it('cancels a running job and frees its slot', async () => {
    const handle = pool.run(job('spin', ['spin']));
    await new Promise((r) => setTimeout(r, 100));
    handle.cancel();
    expect((await handle.result).outcome).toBe('cancelled');
    expect(pool.running).toBe(0);
  });

  it('runs no more jobs at once than it has workers, and queues the rest', async () => {
    const handles = [1, 2, 3].map(() => pool.run(job('spin-for', ['spin-for', '200'])));
    await new Promise((r) => setTimeout(r, 50));
    expect(pool.running).toBe(2);
    expect(pool.queued).toBe(1);
    const results = await Promise.all(handles.map((h) => h.result));
    expect(results.map((r) => r.outcome)).toEqual(['exited', 'exited', 'exited']);
  });

  it('compiles a module once and reuses it', async () => {
    const before = pool.compiled;
    await pool.run(job('exit-code', ['exit-code', '0'])).result;
    await pool.run(job('exit-code', ['exit-code', '1'])).result;
    expect(pool.compiled).toBe(before);
  });

  it('refuses bytes that are not a module, with a clear reason', async () => {
    const r = await pool.run({ ...job('exit-code', []), wasm: new TextEncoder().encode('#!/bin/sh\nrm -rf /\n') }).result;
    expect(r.outcome).toBe('invalid_module');
    expect(r.message).toMatch(/not a WebAssembly module/);
  });
});

describe('sandbox pool lifecycle', () => {
  it('a job submitted to a closed pool ends as cancelled', async () => {
    const pool = new SandboxPool({ size: 1 });
    await pool.close();
    const dir = tempDir();
    try {
      const r = await pool.run({ wasm: fixture('exit-code'), args: [], env: {}, jobDir: dir, stdoutPath: join(dir, 'o'), stderrPath: join(dir, 'e'), timeoutMs: 1_000, memoryCapBytes: MiB }).result;
      expect(r.outcome).toBe('cancelled');
    } finally {
      removeDir(dir);
    }
  });

  it('closing the pool cancels the job it is running', async () => {
    const pool = new SandboxPool({ size: 1 });
    const dir = tempDir();
    try {
      const handle = pool.run({ wasm: fixture('spin'), args: ['spin'], env: {}, jobDir: dir, stdoutPath: join(dir, 'o'), stderrPath: join(dir, 'e'), timeoutMs: 30_000, memoryCapBytes: 16 * MiB });
      await new Promise((r) => setTimeout(r, 100));
      await pool.close();
      expect((await handle.result).outcome).toBe('cancelled');
    } finally {
      removeDir(dir);
    }
  });
});

describe('memory capping', () => {
  it('sets the maximum of a module that declares none, and leaves the rest of the module intact', async () => {
    const original = new Uint8Array(readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'echo.wasm')));
    const capped = capMemory(original, 8 * MiB);
    expect(capped.declared.length).toBe(1);
    const module = await WebAssembly.compile(capped.bytes);
    const memories = WebAssembly.Module.exports(module).filter((e) => e.kind === 'memory');
    expect(memories.length).toBe(1);
    // The rewrite only touched the memory section: same size give or take a few LEB128 bytes.
    expect(Math.abs(capped.bytes.length - original.length)).toBeLessThan(8);
    expect(capMemory(capped.bytes, 8 * MiB).declared[0]).toEqual({ minPages: capped.declared[0]!.minPages, maxPages: (8 * MiB) / WASM_PAGE_BYTES });
  });

  it('clamps a cap above 4 GiB to what wasm32 can address, and refuses a cap that is not a number', async () => {
    const original = new Uint8Array(readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'echo.wasm')));
    const huge = capMemory(original, 8 * 1024 * MiB);
    expect(WebAssembly.validate(huge.bytes)).toBe(true);
    expect(capMemory(huge.bytes, 8 * 1024 * MiB).declared[0]!.maxPages).toBe(65_536);
    expect(() => capMemory(original, Number.POSITIVE_INFINITY)).toThrow(RangeError);
    expect(() => capMemory(original, Number.NaN)).toThrow(RangeError);
  });

  it('keeps every byte of a module whose import section is large', () => {
    // A hand-made module importing one function with a 200 kB name: too big to spread into arguments.
    const name = new TextEncoder().encode('f'.repeat(200_000));
    const leb = (n: number) => { const out: number[] = []; do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; out.push(b); } while (n); return out; };
    const typeSec = [1, 4, 1, 0x60, 0, 0];
    const entry = [1, 0x6d, ...leb(name.length), ...name, 0, 0];
    const importSec = [2, ...leb(entry.length + 1), 1, ...entry];
    const memSec = [5, 3, 1, 0, 1];
    const bytes = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...typeSec, ...importSec, ...memSec]);
    expect(WebAssembly.validate(bytes)).toBe(true);
    const capped = capMemory(bytes, MiB);
    expect(WebAssembly.validate(capped.bytes)).toBe(true);
    expect(capped.declared).toEqual([{ minPages: 1, maxPages: undefined }]);
  });
});
