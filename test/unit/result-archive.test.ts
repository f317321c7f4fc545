import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildResultArchive, ResultTooLargeError } from '../../src/executor/result-archive.js';
import { removeDir, tempDir } from '../helpers/processes.js';

describe('result archive', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
    mkdirSync(join(dir, 'output', 'logs'), { recursive: true });
    writeFileSync(join(dir, 'out.txt'), 'hello from echo\n');
    writeFileSync(join(dir, 'output', 'stdout'), 'argv[0]=x\n');
    writeFileSync(join(dir, 'output', 'logs', 'stderr'), 'done\n');
    writeFileSync(join(dir, 'scratch.bin'), 'not a result');
  });
  afterEach(() => removeDir(dir));

  it('zips the listed files and whole directories, and reports what is missing', () => {
    const archive = buildResultArchive(dir, ['out.txt', 'output', 'never-written.txt'], 1_000_000);
    expect(archive.files).toEqual(['out.txt', 'output/logs/stderr', 'output/stdout']);
    expect(archive.missing).toEqual(['never-written.txt']);
    const unzipped = unzipSync(archive.zip);
    expect(Object.keys(unzipped).sort()).toEqual(['out.txt', 'output/logs/stderr', 'output/stdout']);
    expect(new TextDecoder().decode(unzipped['out.txt'])).toBe('hello from echo\n');
  });

  it('never follows links or paths out of the job directory', () => {
    symlinkSync('/etc/hostname', join(dir, 'output', 'stolen'));
    writeFileSync(join(dir, '..', `outside-${process.pid}.txt`), 'host file');
    const archive = buildResultArchive(dir, ['output', `../outside-${process.pid}.txt`], 1_000_000);
    expect(archive.files).toEqual(['output/logs/stderr', 'output/stdout']);
    removeDir(join(dir, '..', `outside-${process.pid}.txt`));
  });

  it('is byte-identical for identical results, and refuses results over the limit', () => {
    const a = buildResultArchive(dir, ['out.txt', 'output'], 1_000_000);
    const b = buildResultArchive(dir, ['out.txt', 'output'], 1_000_000);
    expect(Buffer.from(a.zip).equals(Buffer.from(b.zip))).toBe(true);
    expect(() => buildResultArchive(dir, ['out.txt', 'output'], 10)).toThrow(ResultTooLargeError);
  });
});
