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
});
