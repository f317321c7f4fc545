import { unzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { JobTree } from '../../src/executor/sandbox/job-tree.js';
import { collectResults } from '../../src/executor/sandbox/result-collection.js';

const bytes = (s: string) => new TextEncoder().encode(s);
const limits = { maxBytes: 1_000_000, maxFiles: 4_096 };

function tree(): JobTree {
  const t = new JobTree({ outputBytes: 1_000_000, maxNodes: 10_000 });
  t.stage('out.txt', bytes('hello from echo\n'));
  t.stage('output/stdout', bytes('argv[0]=x\n'));
  t.stage('output/logs/stderr', bytes('done\n'));
  t.stage('scratch.bin', bytes('not a result'));
  return t;
}

describe('result collection', () => {
  it('zips the listed files and whole directories, and reports what is missing', () => {
    const r = collectResults(tree(), ['out.txt', 'output', 'never-written.txt'], [], limits);
    if ('outcome' in r) throw new Error(r.message);
    expect(r.files).toEqual(['out.txt', 'output/logs/stderr', 'output/stdout']);
    expect(r.missing).toEqual(['never-written.txt']);
    const unzipped = unzipSync(r.archive);
    expect(Object.keys(unzipped).sort()).toEqual(['out.txt', 'output/logs/stderr', 'output/stdout']);
    expect(new TextDecoder().decode(unzipped['out.txt'])).toBe('hello from echo\n');
  });

  it('is byte-identical for identical results', () => {
    const a = collectResults(tree(), ['out.txt', 'output'], [], limits);
    const b = collectResults(tree(), ['out.txt', 'output'], [], limits);
    if ('outcome' in a || 'outcome' in b) throw new Error('undeliverable');
    expect(Buffer.from(a.archive).equals(Buffer.from(b.archive))).toBe(true);
  });

  it('refuses results over the limit, naming the limit', () => {
    expect(collectResults(tree(), ['out.txt', 'output'], [], { ...limits, maxBytes: 10 })).toEqual({ outcome: 'result_too_large', message: "the job's results exceed 10 bytes, the most this unit delivers for one job (executor.max_result_mb)" });
  });

  it('refuses a file name a result cannot carry, and more files than a result can list', () => {
    const t = tree();
    t.stage('output/a b.txt', bytes('x'));
    const spaced = collectResults(t, ['output'], [], limits);
    expect(spaced).toMatchObject({ outcome: 'result_undeliverable' });
    expect((spaced as { message: string }).message).toMatch(/"output\/a b.txt" has a name a result cannot carry/);
    const many = new JobTree({ outputBytes: 1_000_000, maxNodes: 10_000 });
    for (let i = 0; i < 20; i++) many.stage(`out/f${i}.txt`, bytes('x'));
    expect(collectResults(many, ['out'], [], { ...limits, maxFiles: 10 })).toMatchObject({ outcome: 'result_undeliverable', message: expect.stringMatching(/more than 10 files/) });
  });

  it('publishes a named directory as a zip of its contents, as REC does', () => {
    const r = collectResults(tree(), [], [['output', 'district-3/output'], ['out.txt', 'district-3/out']], limits);
    if ('outcome' in r) throw new Error(r.message);
    const [dir, file] = r.named;
    expect(dir!.name).toBe('district-3/output');
    expect(Object.keys(unzipSync(dir!.bytes)).sort()).toEqual(['logs/stderr', 'stdout']);
    expect(new TextDecoder().decode(file!.bytes)).toBe('hello from echo\n');
  });

  it('walks directories nested deeper than the call stack', () => {
    const t = new JobTree({ outputBytes: 1_000_000, maxNodes: 100_000 });
    t.stage(`${Array.from({ length: 20_000 }, () => 'd').join('/')}/leaf.txt`, bytes('deep'));
    const r = collectResults(t, [], [['d', 'deep']], limits);
    if ('outcome' in r) throw new Error(r.message);
    expect(r.named[0]!.bytes.byteLength).toBeGreaterThan(0);
  });
});
