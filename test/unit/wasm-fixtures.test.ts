import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { WASI } from 'node:wasi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bigOutputBytes } from '../helpers/big-output.js';

// Node 20's WASI bindings are V8 "fast API" calls that can allocate, and so trigger a garbage collection,
// inside the call; once the wasm memory of live or dead instances reaches a few tens of MiB this aborts
// (uv_mutex_destroy in ~WASI) or segfaults the whole process. Turning fast API calls off avoids it.
// Set before any module is instantiated; it only affects this test process.
v8.setFlagsFromString('--no-turbo-fast-api-calls');

/**
 * The committed WASI fixtures (test/fixtures/wasm, built by build.sh) do what their README says.
 * Runs each .wasm under node:wasi directly, no project code, with the job dir preopened as `/`.
 */

const FIXTURES = fileURLToPath(new URL('../fixtures/wasm/', import.meta.url));

interface RunOptions {
  env?: Record<string, string>;
  stdin?: string;
  /** Prepares the job dir (the preopened `/`) before the module starts. */
  setup?: (jobDir: string) => void;
}

interface RunResult {
  /** What wasi.start returned (the exit code), or undefined when it threw. */
  exitCode: number | undefined;
  /** What wasi.start threw, if anything. */
  error: unknown;
  stdout: string;
  stderr: string;
  jobDir: string;
}

let root: string;
let runs = 0;
const modules = new Map<string, Promise<WebAssembly.Module>>();

function compile(name: string): Promise<WebAssembly.Module> {
  let mod = modules.get(name);
  if (mod === undefined) {
    mod = WebAssembly.compile(readFileSync(join(FIXTURES, `${name}.wasm`)));
    modules.set(name, mod);
  }
  return mod;
}

/** Runs fixture `name` with `args` as its whole argv; stdio are temp files outside the job dir. */
async function run(name: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const runDir = join(root, `run-${++runs}`);
  const jobDir = join(runDir, 'job');
  mkdirSync(jobDir, { recursive: true });
  options.setup?.(jobDir);
  writeFileSync(join(runDir, 'stdin'), options.stdin ?? '');

  const stdin = openSync(join(runDir, 'stdin'), 'r');
  const stdout = openSync(join(runDir, 'stdout'), 'w');
  const stderr = openSync(join(runDir, 'stderr'), 'w');
  let exitCode: number | undefined;
  let error: unknown;
  try {
    const wasi = new WASI({
      version: 'preview1',
      args,
      env: options.env ?? {},
      preopens: { '/': jobDir },
      stdin,
      stdout,
      stderr,
      returnOnExit: true,
    });
    const instance = await WebAssembly.instantiate(await compile(name), wasi.getImportObject() as WebAssembly.Imports);
    try {
      exitCode = wasi.start(instance);
    } catch (err) {
      error = err;
    }
  } finally {
    closeSync(stdin);
    closeSync(stdout);
    closeSync(stderr);
  }
  return {
    exitCode,
    error,
    stdout: readFileSync(join(runDir, 'stdout'), 'utf8'),
    stderr: readFileSync(join(runDir, 'stderr'), 'utf8'),
    jobDir,
  };
}

const read = (dir: string, path: string): string => readFileSync(join(dir, path), 'utf8');
const listing = (dir: string): string[] => (readdirSync(dir, { recursive: true }) as string[]).sort();

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'ucp-wasm-fixtures-'));
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('WASI test fixtures', () => {
  it('echo reports argv, environ and stdin, and writes stdout, stderr and out.txt', async () => {
    const r = await run('echo', ['echo', 'one', 'two words', ''], {
      env: { GREETING: 'hi there', EMPTY: '' },
      stdin: 'first line\nsecond line\n',
    });
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(
      [
        'argv[0]=echo',
        'argv[1]=one',
        'argv[2]=two words',
        'argv[3]=',
        'env GREETING=hi there',
        'env EMPTY=',
        'stdin:',
        'first line',
        'second line',
        '',
      ].join('\n'),
    );
    expect(r.stderr).toBe('echo done\n');
    expect(listing(r.jobDir)).toEqual(['out.txt']);
    expect(read(r.jobDir, 'out.txt')).toBe('hello from echo\n');
  });

  it('echo with no env and empty stdin prints only argv and the stdin marker', async () => {
    const r = await run('echo', ['echo']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('argv[0]=echo\nstdin:\n');
  });

  it('exit-code exits 3 by default and with argv[1] otherwise, saying so on stderr', async () => {
    const byDefault = await run('exit-code', ['exit-code']);
    expect(byDefault).toMatchObject({ error: undefined, exitCode: 3, stdout: '', stderr: 'exiting with 3\n' });

    const zero = await run('exit-code', ['exit-code', '0']);
    expect(zero).toMatchObject({ error: undefined, exitCode: 0, stderr: 'exiting with 0\n' });

    const given = await run('exit-code', ['exit-code', '42']);
    expect(given).toMatchObject({ error: undefined, exitCode: 42, stderr: 'exiting with 42\n' });
  });

  it('trap makes wasi.start throw a WebAssembly.RuntimeError after flushing its line', async () => {
    const r = await run('trap', ['trap']);
    expect(r.exitCode).toBeUndefined();
    expect(r.error).toBeInstanceOf(WebAssembly.RuntimeError);
    expect(r.stdout).toBe('about to trap\n');
  });

  it('spin compiles (it never returns, so it is not run)', async () => {
    const mod = await compile('spin');
    expect(WebAssembly.Module.exports(mod).map((e) => e.name)).toContain('_start');
  });

  it('spin-for busy-loops for argv[1] ms, then reports and writes result.txt', async () => {
    const started = performance.now();
    const r = await run('spin-for', ['spin-for', '60']);
    const elapsed = performance.now() - started;
    expect(r).toMatchObject({ error: undefined, exitCode: 0, stdout: 'spun 60 ms\n', stderr: '' });
    expect(read(r.jobDir, 'result.txt')).toBe('spun 60\n');
    expect(elapsed).toBeGreaterThanOrEqual(55);
  });

  it('memory-hog allocates and touches argv[1] MiB, reporting every 16 MiB', async () => {
    const r = await run('memory-hog', ['memory-hog', '32']);
    expect(r).toMatchObject({ error: undefined, exitCode: 0, stderr: '' });
    expect(r.stdout).toBe('allocated 16 MiB\nallocated 32 MiB\n');
  });

  it('big-output writes xorshift32 files of the given sizes, and with --tag one random tag at the start of each', async () => {
    const plain = await run('big-output', ['big-output', 'a.bin', '70001', 'b.bin', '5']);
    expect(plain).toMatchObject({ error: undefined, exitCode: 0, stdout: 'wrote a.bin 70001\nwrote b.bin 5\n' });
    expect(readFileSync(join(plain.jobDir, 'a.bin'))).toEqual(bigOutputBytes(0, 70_001));
    expect(readFileSync(join(plain.jobDir, 'b.bin'))).toEqual(bigOutputBytes(1, 5));
    const tagged = await run('big-output', ['big-output', '--wait-ms', '1', '--tag', 'a.bin', '100', 'b.bin', '40']);
    expect(tagged).toMatchObject({ error: undefined, exitCode: 0 });
    const [a, b] = ['a.bin', 'b.bin'].map((f) => readFileSync(join(tagged.jobDir, f)));
    expect(a!.subarray(16)).toEqual(bigOutputBytes(0, 100).subarray(16));
    expect(b!.subarray(16)).toEqual(bigOutputBytes(1, 40).subarray(16));
    expect(a!.subarray(0, 16)).toEqual(b!.subarray(0, 16));
    expect(a!.subarray(0, 16)).not.toEqual(bigOutputBytes(0, 16));
    expect((await run('big-output', ['big-output', 'a.bin'])).exitCode).toBe(2);
  });

  it('read-input counts bytes and lines of input/data.txt into output/summary.txt', async () => {
    const r = await run('read-input', ['read-input'], {
      setup: (dir) => {
        mkdirSync(join(dir, 'input'));
        mkdirSync(join(dir, 'output'));
        writeFileSync(join(dir, 'input', 'data.txt'), 'alpha\nbeta\ngamma\nno newline');
      },
    });
    expect(r).toMatchObject({ error: undefined, exitCode: 0, stdout: 'bytes=27 lines=3\n', stderr: '' });
    expect(read(r.jobDir, 'output/summary.txt')).toBe('bytes=27 lines=3\n');
  });

  it('read-input exits 2 with a message when input/data.txt is missing', async () => {
    const r = await run('read-input', ['read-input'], { setup: (dir) => mkdirSync(join(dir, 'output')) });
    expect(r).toMatchObject({ error: undefined, exitCode: 2, stdout: '' });
    expect(r.stderr).toContain('input/data.txt');
    expect(listing(r.jobDir)).toEqual(['output']);
  });

  it('sum adds the integers of argv[1] into argv[2], and its output chains into another sum', async () => {
    const first = await run('sum', ['sum', 'numbers.txt', 'total.txt'], {
      setup: (dir) => writeFileSync(join(dir, 'numbers.txt'), ' 1 2\n-3\t40\n\n100 '),
    });
    expect(first).toMatchObject({ error: undefined, exitCode: 0, stdout: 'sum=140\n', stderr: '' });
    expect(read(first.jobDir, 'total.txt')).toBe('140\n');

    const second = await run('sum', ['sum', '/in/total.txt', '/out/total.txt'], {
      setup: (dir) => {
        mkdirSync(join(dir, 'in'));
        mkdirSync(join(dir, 'out'));
        writeFileSync(join(dir, 'in', 'total.txt'), read(first.jobDir, 'total.txt') + '60\n');
      },
    });
    expect(second).toMatchObject({ error: undefined, exitCode: 0, stdout: 'sum=200\n' });
    expect(read(second.jobDir, 'out/total.txt')).toBe('200\n');
  });
});
