import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/processes.js';

/**
 * A real Node process that works (allocating, so V8 grows its young generation), then goes quiet, with or
 * without the quiet-spell trim every long-running command runs. Prints the young generation's size in
 * MiB after the work and after a quiet spell long enough for two quiet checks 6 s apart (V8 judges the allocation
 * rate over its last 5 s of collections, so the checks must be further apart than that, as a command's are).
 */
async function youngGeneration(trim: boolean): Promise<{ busy: number; quiet: number }> {
  const script = `
    import { getHeapSpaceStatistics } from 'node:v8';
    import { trimWhenQuiet } from ${JSON.stringify(join(ROOT, 'dist', 'src', 'cli', 'idle-trim.js'))};
    const young = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 1048576;
    ${trim ? 'trimWhenQuiet(6000);' : ''}
    const kept = [];
    const end = Date.now() + 1500;
    const work = () => {
      for (let i = 0; i < 100000; i++) { const o = { i, s: 'x' + i }; if (i % 5000 === 0) kept.push(o); }
      if (Date.now() < end) setImmediate(work);
      else { const busy = young(); setTimeout(() => { console.log(JSON.stringify({ busy, quiet: young() })); process.exit(0); }, 19500); }
    };
    work();
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(stdout) as { busy: number; quiet: number };
}

describe('memory handed back once quiet', () => {
  it('a quiet process shrinks the young generation V8 grew under load, which it otherwise keeps', async () => {
    const [without, withTrim] = await Promise.all([youngGeneration(false), youngGeneration(true)]);
    // Under load V8 grows it well past its 1 MiB start, and on its own keeps it.
    expect(without.busy).toBeGreaterThanOrEqual(8);
    expect(without.quiet).toBe(without.busy);
    expect(withTrim.busy).toBeGreaterThanOrEqual(8);
    expect(withTrim.quiet).toBeLessThanOrEqual(2);
  }, 60_000);
});
