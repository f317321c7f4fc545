import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, createReadStream, mkdirSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Proc, ROOT, UCP_BIN, cleanEnv, freePort, removeDir, startHubProcess, tempDir, ucp, ucpRun } from '../helpers/processes.js';

const MB = 1_048_576;

/** A file of pseudo-random bytes written a megabyte at a time, so the test itself stays small. */
function writeNoise(path: string, size: number): void {
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(MB);
  let x = 0x9e3779b9;
  for (let written = 0; written < size; written += MB) {
    for (let i = 0; i < MB; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      block.writeUInt32LE(x >>> 0, i);
    }
    writeSync(fd, block, 0, Math.min(MB, size - written));
  }
  closeSync(fd);
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Peak resident memory of a live process, from the kernel. */
function peakRssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'))!;
  return Number(/(\d+)/.exec(line)![1]) / 1024;
}

/** Resident memory of one kind now: RssAnon is the heap, RssFile includes LMDB's mapped file pages. */
function rssMb(pid: number, field: 'RssAnon' | 'RssFile'): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`))!;
  return Number(/(\d+)/.exec(line)![1]) / 1024;
}

/** Runs a `ucp` command under GNU time and returns its output with its peak resident memory. */
async function measured(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; peakMb: number }> {
  const proc = new Proc('/usr/bin/time', ['-f', 'peak_rss_kb=%M', process.execPath, UCP_BIN, ...args], cleanEnv());
  const { code } = await proc.exited;
  const kb = Number(/peak_rss_kb=(\d+)/.exec(proc.stderr)?.[1] ?? NaN);
  return { code, stdout: proc.lines.join('\n'), stderr: proc.stderr, peakMb: kb / 1024 };
}

/**
 * A 50 MB object through real processes (hub, broker, datastore and the `ucp data` commands): stored and
 * read back in chunks, byte for byte, with every process's memory staying far below the object's size
 * held twice.
 */
describe('named data larger than one message', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  let broker: Proc;
  let store: Proc;
  let executor: Proc;
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'big', '--log-level', 'warn'];

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
    broker = ucp(['broker', '--node-id', 'br', '--data-dir', join(dir, 'br'), ...common(), '--log-level', 'info']);
    store = ucp(['datastore', '--node-id', 'ds', '--data-dir', join(dir, 'ds'), ...common()]);
    executor = ucp(['executor', '--node-id', 'ex', '--data-dir', join(dir, 'ex'), ...common()]);
    procs.push(broker, store, executor);
    await broker.waitForLog({ msg: 'peer up', peer: 'ds' }, 30_000);
    await broker.waitForLog({ msg: 'peer up', peer: 'ex' }, 30_000);
  });

  afterAll(async () => {
    for (const p of procs) await p.stop();
    removeDir(dir);
  });

  it('round-trips 50 MB through ucp data put/get with bounded memory and the digest checked', async () => {
    const small = join(dir, 'small.bin');
    writeNoise(small, 1_000);
    const baseline = await measured(['data', 'put', 'big/small', small, ...common()]);
    expect(baseline.code, baseline.stderr).toBe(0);

    const file = join(dir, 'recording.bin');
    writeNoise(file, Number(process.env.BIG_MB ?? 50) * MB);
    const putStarted = performance.now();
    const put = await measured(['data', 'put', 'big/recording', file, ...common(), '--json']);
    const putSeconds = (performance.now() - putStarted) / 1_000;
    expect(put.code, put.stderr).toBe(0);
    expect(JSON.parse(put.stdout)).toMatchObject({ outcome: 'stored', store: 'ds', size: Number(process.env.BIG_MB ?? 50) * MB });

    const out = join(dir, 'fetched.bin');
    const get = await measured(['data', 'get', 'big/recording', '--out', out, ...common()]);
    expect(get.code, get.stderr).toBe(0);
    const peaks = { baseline: baseline.peakMb, put: put.peakMb, get: get.peakMb, broker: peakRssMb(broker.pid), datastore: peakRssMb(store.pid), datastoreAnon: rssMb(store.pid, 'RssAnon') };
    process.stdout.write(`peak RSS (MB) for a 50 MB object: ${JSON.stringify(Object.fromEntries(Object.entries(peaks).map(([k, v]) => [k, Math.round(v)])))}; put ${putSeconds.toFixed(2)} s (command start included)\n`);
    expect(statSync(out).size).toBe(50 * MB);
    expect(await sha256File(out)).toBe(await sha256File(file));

    const ls = await ucpRun(['data', 'ls', 'big', ...common(), '--json']);
    expect(JSON.parse(ls.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'big/recording', size: 50 * MB, store: 'ds' })]));

    // Holding the object twice would add 100 MB. What each process adds is garbage from the chunks it
    // passed on, which V8 collects once it reaches its external-memory threshold (64 MB), whatever the
    // object's size.
    expect(put.peakMb - baseline.peakMb).toBeLessThan(64);
    expect(get.peakMb - baseline.peakMb).toBeLessThan(64);
    expect(peaks.broker).toBeLessThan(baseline.peakMb + 64);
    // The datastore's peak includes LMDB's memory-mapped file pages (page cache); its own heap is bounded.
    expect(peaks.datastoreAnon).toBeLessThan(baseline.peakMb + 64);
  }, 240_000);

  it('a name listed with --prefix that is too large for one message is fetched in chunks', async () => {
    const out = join(dir, 'tree');
    const got = await ucpRun(['data', 'get', 'big', '--prefix', '--out-dir', out, ...common()], {}, 90_000);
    expect(got.code, got.stderr).toBe(0);
    expect(statSync(join(out, 'big', 'recording')).size).toBe(50 * MB);
    expect(await sha256File(join(out, 'big', 'recording'))).toBe(await sha256File(join(dir, 'recording.bin')));
    expect(statSync(join(out, 'big', 'small')).size).toBe(1_000);
  }, 120_000);

  it('a 50 MB object is a job input: fetched in chunks by the executor, read whole by the job', async () => {
    const folder = join(dir, 'plan');
    mkdirSync(folder);
    copyFileSync(join(ROOT, 'test', 'fixtures', 'wasm', 'read-input.wasm'), join(folder, 'read-input.wasm'));
    writeFileSync(
      join(folder, 'plan.toml'),
      `[[jobs]]\n[jobs.metadata]\njob_id = "big-input"\nwasm_module = "big/read-input.wasm"\nargv = ["read-input"]\ndirs = ["output"]\nresults = ["output"]\ntimeout_s = 120\nmax_memory_mb = 256\n[jobs.metadata.data]\n"input/data.txt" = "big/recording"\n[jobs.metadata.named_results]\n"output/summary.txt" = "big/summary"\n[jobs.data]\n"big/read-input.wasm" = "read-input.wasm"\n`,
    );
    const run = await ucpRun(['run', join(folder, 'plan.toml'), '--results', join(dir, 'results'), '--node-id', 'big-client', '--data-dir', join(dir, 'big-client'), ...common()], {}, 200_000);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    const summary = await ucpRun(['data', 'get', 'big/summary', ...common()]);
    expect(summary.stdout).toMatch(new RegExp(`^bytes=${50 * MB} lines=\\d+`));
    const executorPeak = peakRssMb(executor.pid);
    process.stdout.write(`peak RSS (MB) of the executor running a job on a 50 MB input: ${Math.round(executorPeak)}\n`);
    // The executor holds the fetched input once and hands it to the sandbox process a piece at a time, so
    // no second, serialized copy of it exists; the rest is the fetch's garbage (see the first test).
    expect(executorPeak).toBeLessThan(100 + 50 + 64);
  }, 240_000);
});
