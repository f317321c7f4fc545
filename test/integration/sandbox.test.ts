import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkModule, SandboxPool, WASI_PREVIEW1_FUNCTIONS, WASM_PAGE_BYTES, type SandboxJob } from '../../src/executor/sandbox/index.js';
import { ROOT } from '../helpers/processes.js';

const fixture = (name: string) => new Uint8Array(readFileSync(join(ROOT, 'test', 'fixtures', 'wasm', `${name}.wasm`)));
const MiB = 1_048_576;
const text = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);
const LIMITS = { outputBytes: 64 * MiB, maxNodes: 10_000, maxFds: 1_024, maxResultBytes: 900_000, maxResultFiles: 4_096 };

function job(name: string, args: string[], extra: Partial<SandboxJob> = {}): SandboxJob {
  return { wasm: fixture(name), args, env: {}, dirs: ['output'], inputs: [], results: ['output'], namedResults: [], timeoutMs: 10_000, memoryCapBytes: 256 * MiB, limits: LIMITS, ...extra };
}

function archived(r: { results?: { archive: Uint8Array } }): Record<string, string> {
  const files = unzipSync(r.results!.archive);
  return Object.fromEntries(Object.entries(files).map(([k, v]) => [k, text(v)]));
}

/** Real WASI modules (built from the C sources beside them) in real sandbox processes. */
describe('WASI sandbox pool', () => {
  let pool: SandboxPool;

  beforeAll(() => {
    pool = new SandboxPool({ size: 2 });
  });

  afterAll(async () => {
    await pool.close();
  });

  it('passes argv verbatim, env and stdin; the job tree is the guest root; streams go to their files', async () => {
    const r = await pool.run(
      job('echo', ['first', 'second arg'], {
        env: { SECTOR: '4', UNIT: 'fire-1' },
        stdin: new TextEncoder().encode('line one\nline two\n'),
        stdoutFile: 'output/stdout.log',
        stderrFile: 'output/stderr.log',
        results: ['out.txt', 'output'],
      }),
    ).result;
    expect(r).toMatchObject({ outcome: 'exited', exitCode: 0 });
    const files = archived(r);
    expect(Object.keys(files)).toEqual(['out.txt', 'output/stderr.log', 'output/stdout.log']);
    expect(files['output/stdout.log']).toContain('argv[0]=first\n');
    expect(files['output/stdout.log']).toContain('argv[1]=second arg\n');
    expect(files['output/stdout.log']).toContain('env SECTOR=4\nenv UNIT=fire-1\n');
    expect(files['output/stdout.log']).toContain('stdin:\nline one\nline two\n');
    expect(files['out.txt']).toBe('hello from echo\n');
    expect(files['output/stderr.log']).toBe('echo done\n');
  });

  it('discards streams that have no file, keeping the last stderr line to explain a failure', async () => {
    const r = await pool.run(job('exit-code', ['exit-code', '5'])).result;
    expect(r).toMatchObject({ outcome: 'exited', exitCode: 5, stderrTail: 'exiting with 5' });
    expect(r.results!.files).toEqual([]);
  });

  it('gives an empty argv to a job whose argv is empty', async () => {
    const r = await pool.run(job('echo', [], { stdoutFile: 'output/stdout.log' })).result;
    expect(r).toMatchObject({ outcome: 'exited', exitCode: 0 });
    expect(archived(r)['output/stdout.log']).not.toContain('argv[0]=');
  });

  it('stages inputs, and reads named results out of the tree: a file as it is, a directory zipped', async () => {
    const r = await pool.run(
      job('sum', ['sum', 'in/numbers.txt', 'output/sum.txt'], {
        inputs: [['in/numbers.txt', new TextEncoder().encode('1 2 3 40\n')]],
        results: [],
        namedResults: [
          ['output/sum.txt', 'district-3/sum'],
          ['output', 'district-3/all'],
          ['never-written.txt', 'district-3/none'],
        ],
      }),
    ).result;
    expect(r).toMatchObject({ outcome: 'exited', exitCode: 0 });
    const named = Object.fromEntries(r.results!.named.map((n) => [n.name, n.bytes]));
    expect(text(named['district-3/sum'])).toBe('46\n');
    expect(Object.keys(unzipSync(named['district-3/all']!))).toEqual(['sum.txt']);
    expect(r.results!.missing).toEqual(['never-written.txt']);
  });

  it('an input larger than one piece reaches the job byte for byte, beside a small one', async () => {
    const big = new Uint8Array(2 * MiB + MiB / 2 + 17);
    for (let i = 0; i < big.length; i++) big[i] = i % 251 === 0 ? 0x0a : (i * 7) & 0xff;
    const lines = big.filter((b) => b === 0x0a).length;
    const r = await pool.run(
      job('read-input', ['read-input'], {
        inputs: [
          ['input/data.txt', big],
          ['input/small.txt', new TextEncoder().encode('small\n')],
        ],
        stdoutFile: 'output/stdout.log',
        keepTree: true,
      }),
    ).result;
    expect(r).toMatchObject({ outcome: 'exited', exitCode: 0 });
    expect(archived(r)['output/summary.txt']).toBe(`bytes=${big.length} lines=${lines}\n`);
    const tree = new Map(r.tree);
    expect(Buffer.from(tree.get('input/data.txt')!).equals(Buffer.from(big))).toBe(true);
    expect(text(tree.get('input/small.txt'))).toBe('small\n');
  });

  it('reports a non-zero exit code as such', async () => {
    expect(await pool.run(job('exit-code', ['exit-code', '7'])).result).toMatchObject({ outcome: 'exited', exitCode: 7 });
  });

  it('reports a trap', async () => {
    const r = await pool.run(job('trap', ['trap'])).result;
    expect(r.outcome).toBe('trap');
    expect(r.message).toMatch(/^trap: /);
  });

  it('kills a looping module at its timeout and the slot serves the next job', async () => {
    const r = await pool.run(job('spin', ['spin'], { timeoutMs: 300 })).result;
    expect(r.outcome).toBe('timeout');
    expect(r.message).toMatch(/300 ms time limit/);
    expect(r.durationMs).toBeGreaterThanOrEqual(300);
    expect(await pool.run(job('exit-code', ['exit-code', '0'])).result).toMatchObject({ outcome: 'exited', exitCode: 0 });
  });

  it('stops a memory-hungry module at its cap', async () => {
    const r = await pool.run(job('memory-hog', ['memory-hog', '512'], { memoryCapBytes: 64 * MiB })).result;
    expect(r.outcome).toBe('memory_limit');
    expect(r.message).toMatch(/64 MiB memory limit/);
    const ok = await pool.run(job('memory-hog', ['memory-hog', '32'], { memoryCapBytes: 256 * MiB })).result;
    expect(ok).toMatchObject({ outcome: 'exited', exitCode: 0 });
  });

  it('replaces a process whose job grew its memory, so the unit gets the memory back', async () => {
    const own = new SandboxPool({ size: 1 });
    try {
      for (let i = 0; i < 3; i++) {
        expect(await own.run(job('memory-hog', ['memory-hog', '96'])).result).toMatchObject({ outcome: 'exited', exitCode: 0 });
        // Ended as soon as it answered: its 96 MiB are above the recycling threshold.
        expect(own.processes).toBe(0);
      }
      expect(own.started).toBe(3);
      expect(await own.run(job('exit-code', ['exit-code', '0'])).result).toMatchObject({ outcome: 'exited' });
      expect(own.processes).toBe(1);
    } finally {
      await own.close();
    }
  });

  it('stops a job blocked in a long sleep at its timeout', async () => {
    const r = await pool.run(job('sleep', ['sleep', '60'], { timeoutMs: 300 })).result;
    expect(r.outcome).toBe('timeout');
    expect(r.durationMs).toBeLessThan(5_000);
  });

  it('a sleeping job still sleeps as long as it asked', async () => {
    const r = await pool.run(job('sleep', ['sleep', '1'], { stdoutFile: 'output/out' })).result;
    expect(r).toMatchObject({ outcome: 'exited', exitCode: 0 });
    expect(r.durationMs).toBeGreaterThanOrEqual(1_000);
    expect(archived(r)['output/out']).toBe('slept 1 s\n');
  });

  it('under a small cap, an ordinary failure is not mistaken for running out of memory', async () => {
    expect(await pool.run(job('exit-code', ['exit-code', '7'], { memoryCapBytes: 2 * MiB })).result).toMatchObject({ outcome: 'exited', exitCode: 7 });
  });

  it('cancels a running job and frees its slot', async () => {
    const handle = pool.run(job('spin', ['spin']));
    await new Promise((r) => setTimeout(r, 200));
    handle.cancel();
    expect((await handle.result).outcome).toBe('cancelled');
    expect(pool.running).toBe(0);
  });

  it('runs no more jobs at once than it has processes, and queues the rest', async () => {
    const handles = [1, 2, 3].map(() => pool.run(job('spin-for', ['spin-for', '300'])));
    await new Promise((r) => setTimeout(r, 50));
    expect(pool.running).toBe(2);
    expect(pool.queued).toBe(1);
    const results = await Promise.all(handles.map((h) => h.result));
    expect(results.map((r) => r.outcome)).toEqual(['exited', 'exited', 'exited']);
  });

  it('checks a module once and reuses it', async () => {
    await pool.run(job('exit-code', ['exit-code', '0'])).result;
    const before = pool.checked;
    await pool.run(job('exit-code', ['exit-code', '1'])).result;
    expect(pool.checked).toBe(before);
  });

  it('refuses bytes that are not a module, with a clear reason', async () => {
    const r = await pool.run({ ...job('exit-code', []), wasm: new TextEncoder().encode('#!/bin/sh\nrm -rf /\n') }).result;
    expect(r.outcome).toBe('invalid_module');
    expect(r.message).toMatch(/not a WebAssembly module/);
  });

  it('ends a job that writes more than its output limit, naming the limit', async () => {
    const r = await pool.run(job('echo', ['x'], { stdoutFile: 'output/stdout.log', limits: { ...LIMITS, outputBytes: 16 } })).result;
    expect(r.outcome).toBe('output_limit');
    expect(r.message).toMatch(/wrote more than its 16 bytes output limit/);
  });
});

describe('sandbox pool lifecycle', () => {
  it('a job submitted to a closed pool ends as cancelled', async () => {
    const pool = new SandboxPool({ size: 1 });
    await pool.close();
    expect((await pool.run(job('exit-code', [])).result).outcome).toBe('cancelled');
  });

  it('closing the pool cancels the job it is running and ends its process', async () => {
    const pool = new SandboxPool({ size: 1 });
    const handle = pool.run(job('spin', ['spin'], { timeoutMs: 30_000 }));
    await new Promise((r) => setTimeout(r, 200));
    await pool.close();
    expect((await handle.result).outcome).toBe('cancelled');
    expect(pool.processes).toBe(0);
  });

  it('an idle process exits after the idle time, and the next job starts a new one', async () => {
    const pool = new SandboxPool({ size: 1, idleMs: 100 });
    try {
      expect(await pool.run(job('exit-code', ['exit-code', '0'])).result).toMatchObject({ outcome: 'exited' });
      expect(pool.processes).toBe(1);
      await new Promise((r) => setTimeout(r, 400));
      expect(pool.processes).toBe(0);
      expect(await pool.run(job('exit-code', ['exit-code', '0'])).result).toMatchObject({ outcome: 'exited' });
    } finally {
      await pool.close();
    }
  });
});

describe('module checks', () => {
  const caps = { memoryBytes: 8 * MiB, tableElements: 1_000, wasiFunctions: WASI_PREVIEW1_FUNCTIONS };

  it('sets the maximum of a memory that declares none, and leaves the rest of the module intact', async () => {
    const original = fixture('echo');
    const checked = checkModule(original, caps);
    expect(checked.declared.length).toBe(1);
    const module = await WebAssembly.compile(checked.bytes);
    expect(WebAssembly.Module.exports(module).filter((e) => e.kind === 'memory').length).toBe(1);
    // Only the limits changed: the same size give or take a few LEB128 bytes.
    expect(Math.abs(checked.bytes.length - original.length)).toBeLessThan(16);
    expect(checkModule(checked.bytes, caps).declared[0]).toEqual({ minPages: checked.declared[0]!.minPages, maxPages: (8 * MiB) / WASM_PAGE_BYTES });
  });

  it('clamps a cap above 4 GiB to what wasm32 can address, and refuses a cap that is not a number', () => {
    const original = fixture('echo');
    const huge = checkModule(original, { ...caps, memoryBytes: 8 * 1024 * MiB });
    expect(WebAssembly.validate(huge.bytes)).toBe(true);
    expect(checkModule(huge.bytes, { ...caps, memoryBytes: 8 * 1024 * MiB }).declared[0]!.maxPages).toBe(65_536);
    expect(() => checkModule(original, { ...caps, memoryBytes: Number.POSITIVE_INFINITY })).toThrow(RangeError);
    expect(() => checkModule(original, { ...caps, memoryBytes: Number.NaN })).toThrow(RangeError);
  });

  it('refuses an import with a 200 kB name without spreading it into arguments', () => {
    const name = new TextEncoder().encode('f'.repeat(200_000));
    const leb = (n: number) => {
      const out: number[] = [];
      do {
        let b = n & 0x7f;
        n >>>= 7;
        if (n) b |= 0x80;
        out.push(b);
      } while (n);
      return out;
    };
    const typeSec = [1, 4, 1, 0x60, 0, 0];
    const entry = [22, ...new TextEncoder().encode('wasi_snapshot_preview1'), ...leb(name.length), ...name, 0, 0];
    const importSec = [2, ...leb(entry.length + 1), 1, ...entry];
    const bytes = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...typeSec, ...importSec]);
    expect(WebAssembly.validate(bytes)).toBe(true);
    expect(() => checkModule(bytes, caps)).toThrow(/not a WASI preview1 function the sandbox provides/);
  });
});
