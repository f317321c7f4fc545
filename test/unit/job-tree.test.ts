import { describe, expect, it } from 'vitest';
import { Errno, JobTree, OutputLimitError, TreeError } from '../../src/executor/sandbox/job-tree.js';
import { StreamSink, Wasi } from '../../src/executor/sandbox/wasi-preview1.js';
import { WASI_PREVIEW1_FUNCTIONS } from '../../src/executor/sandbox/wasi-functions.js';

const errno = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    if (err instanceof TreeError) return err.errno;
    throw err;
  }
  return Errno.SUCCESS;
};

describe('job tree', () => {
  const tree = () => new JobTree({ outputBytes: 1_024, maxNodes: 8 });

  it('resolves paths inside the tree and never above its root', () => {
    const t = tree();
    t.stage('a/b/c.txt', new Uint8Array([1]));
    const a = t.lookup(t.root, 'a');
    expect(a.kind).toBe('dir');
    expect(t.lookup(a as never, '../a/b/c.txt').kind).toBe('file');
    for (const path of ['..', '../etc/passwd', 'a/../../etc', 'a/b/../../..', '/etc/passwd', '//etc']) {
      expect(errno(() => t.lookup(t.root, path))).toBe(Errno.NOTCAPABLE);
    }
    expect(errno(() => t.lookup(t.root, 'a/b/c.txt/x'))).toBe(Errno.NOTDIR);
    expect(errno(() => t.lookup(t.root, 'a/b/c.txt/'))).toBe(Errno.NOTDIR);
    expect(errno(() => t.lookup(t.root, 'nul\0byte'))).toBe(Errno.INVAL);
  });

  it('moves a directory, but never into itself', () => {
    const t = tree();
    t.mkdirs('x/y');
    const x = t.lookup(t.root, 'x');
    expect(errno(() => t.rename(t.root, 'x', t.lookup(t.root, 'x/y') as never, 'z'))).toBe(Errno.INVAL);
    t.rename(t.root, 'x', t.root, 'w');
    expect(t.lookup(t.root, 'w')).toBe(x);
    expect(errno(() => t.lookup(t.root, 'x'))).toBe(Errno.NOENT);
  });

  it('counts every byte written, ends the job past its budget, and refuses nodes past its quota', () => {
    const t = tree();
    const f = t.create(t.root, 'f', 'file');
    t.write(f, 0, new Uint8Array(1_000));
    expect(() => t.write(f, 0, new Uint8Array(100))).toThrow(OutputLimitError);
    // A sparse write is growth too.
    const g = new JobTree({ outputBytes: 1_024, maxNodes: 8 });
    expect(() => g.write(g.create(g.root, 'g', 'file'), 1_000_000, new Uint8Array(1))).toThrow(OutputLimitError);
    for (let i = 0; i < 6; i++) t.create(t.root, `n${i}`, 'dir');
    expect(errno(() => t.create(t.root, 'one-too-many', 'file'))).toBe(Errno.DQUOT);
  });
});

describe('WASI layer', () => {
  it('provides exactly the functions the module check allows', () => {
    const t = new JobTree({ outputBytes: 1, maxNodes: 1 });
    const wasi = new Wasi({ args: [], env: {}, tree: t, stdin: new Uint8Array(0), stdout: new StreamSink(0), stderr: new StreamSink(0) });
    expect(new Set(Object.keys(wasi.imports()))).toEqual(WASI_PREVIEW1_FUNCTIONS);
  });

  it('a stream sink keeps only its last bytes', () => {
    const sink = new StreamSink(8);
    sink.write(new TextEncoder().encode('hello '));
    sink.write(new TextEncoder().encode('world, again'));
    expect(sink.text()).toBe('d, again');
  });
});
