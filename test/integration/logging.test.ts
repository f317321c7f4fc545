import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, Proc, removeDir, ROOT, tempDir, ucpRun, UCP_BIN } from '../helpers/processes.js';

/**
 * A node that is not on a terminal (a systemd service writing to journald, or any pipe) logs at warn by
 * default, so a unit that runs jobs for months writes no line per job; --log-level still asks for more.
 */

const PLAN = join(ROOT, 'examples', 'fire-watch', 'plan.toml');
const JOBS = ['fw-stats', 'fw-alert'];

let dir: string;
const procs: Proc[] = [];

beforeAll(() => {
  if (!existsSync(UCP_BIN)) throw new Error(`${UCP_BIN} is missing; run npm run build first`);
  dir = tempDir('ucp-logging-test-');
});

afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop();
});

afterAll(() => {
  removeDir(dir);
});

/** `ucp up` with stdout on a pipe and no log level set anywhere (the tests' default of info removed). */
async function up(name: string, extra: string[]): Promise<{ proc: Proc; url: string }> {
  const env = cleanEnv();
  delete env['UCP_LOG_LEVEL'];
  const proc = new Proc(process.execPath, [UCP_BIN, 'up', '--port', '0', '--executors', '1', '--data-dir', join(dir, name), ...extra], env);
  procs.push(proc);
  const listening = await proc.waitForLine(/^hub listening on mqtt:\/\/\S+;/, 20_000);
  return { proc, url: /mqtt:\/\/[^;]+/.exec(listening)![0] };
}

async function runPlan(url: string, name: string): Promise<void> {
  const result = await ucpRun(['run', PLAN, '--hub', url, '--results', join(dir, `${name}-results`), '--data-dir', join(dir, `${name}-client`)], {}, 60_000);
  expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
}

describe('log level of a node that is not on a terminal', { timeout: 120_000 }, () => {
  it('is warn by default: jobs run and leave no line in the log; --log-level info brings the job lines back', async () => {
    const [quiet, loud] = await Promise.all([up('quiet', []), up('loud', ['--log-level', 'info'])]);
    await Promise.all([runPlan(quiet.url, 'quiet'), runPlan(loud.url, 'loud')]);
    for (const { proc } of [quiet, loud]) {
      await proc.stop();
      expect((await proc.exited).code, proc.stderr).toBe(0);
    }

    const perJob = (p: Proc) => p.lines.filter((line) => JOBS.some((job) => line.includes(job)));
    expect(perJob(quiet.proc)).toEqual([]);
    expect(quiet.proc.logs.filter((l) => l.level < 40)).toEqual([]);
    // The same jobs through a node told to log at info: each accepted result is a line, so the quiet
    // node's silence is its level, not jobs that never ran.
    for (const job of JOBS) expect(loud.proc.logs.some((l) => l.msg === 'result accepted' && l.job === job), loud.proc.lines.join('\n')).toBe(true);
    expect(loud.proc.logs.some((l) => l.level === 30)).toBe(true);
  });
});
