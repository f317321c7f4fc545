import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, ROOT, tempDir } from '../helpers/processes.js';

const hasStrace = spawnSync('strace', ['-V']).status === 0;

/** Counts the fsync and fdatasync calls a real node process makes for 50 acknowledged writes. */
function syncCalls(dir: string, mode: 'commit' | 'flush'): number {
  const script = `
    import { NodeStore } from ${JSON.stringify(join(ROOT, 'dist', 'src', 'store', 'index.js'))};
    const store = NodeStore.open({ dir: ${JSON.stringify(join(dir, mode))}, nodeId: 'n', sync: ${JSON.stringify(mode)} });
    const t = store.table('items');
    for (let i = 0; i < 50; i++) { void t.put('k' + i, { i, pad: 'x'.repeat(200) }); await store.durable(); }
    await store.close();
  `;
  const run = spawnSync('strace', ['-f', '-c', '-e', 'trace=fsync,fdatasync', process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  // strace -c prints a table on stderr: "... calls errors syscall"; sum the calls column of our two.
  let calls = 0;
  for (const line of run.stderr.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.at(-1) === 'fsync' || cols.at(-1) === 'fdatasync') calls += Number(cols[3]);
  }
  return calls;
}

/**
 * store.sync with a real LMDB under strace: "commit" acknowledges after the commit and never fsyncs (the
 * OS writes the pages back; a killed process loses nothing), "flush" fsyncs before acknowledging.
 */
describe.skipIf(!hasStrace && process.env.CI === undefined)('store.sync', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => removeDir(dir));

  it('"commit" never fsyncs; "flush" fsyncs before each acknowledgement', () => {
    expect(syncCalls(dir, 'commit')).toBe(0);
    expect(syncCalls(dir, 'flush')).toBeGreaterThanOrEqual(50);
  });
});
