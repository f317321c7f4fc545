import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { delimiter, dirname, join, relative, sep } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, Proc, removeDir, ROOT, tempDir } from '../helpers/processes.js';

/**
 * The production install as a field unit gets it, on a machine without TypeScript:
 * - `npm ci --omit=dev` in a clean copy of the source exits 0, and `ucp` then says in one line how to get
 *   a build;
 * - a tarball made by `npm pack` (which builds dist/ in prepack) installs with `npm install -g --omit=dev`
 *   into a fresh prefix, and the installed `ucp` answers --version and runs `ucp up` and a plan.
 *
 * It installs from the npm registry twice and builds once, which takes minutes, so it runs only when asked:
 * UCP_TEST_INSTALL=1, or under CI (CI=true). `.ci/run` sets UCP_TEST_INSTALL=1.
 */
const RUN = process.env['UCP_TEST_INSTALL'] === '1' || process.env['CI'] === 'true';

/** What a clean clone does not have (.gitignore's build and run output). */
const NOT_IN_A_CLONE = new Set(['node_modules', 'dist', '.git', 'bench-results', 'results', 'ucp-data', '.ucp', '.scratch']);
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], opts: { cwd?: string; env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Outcome> {
  return new Promise((resolveRun) => {
    execFile(command, args, { cwd: opts.cwd, env: opts.env, timeout: opts.timeoutMs ?? 600_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      // A non-zero exit gives its code; a spawn failure or a timeout gives none.
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolveRun({ code, stdout, stderr });
    });
  });
}

function show(o: Outcome): string {
  return `exit ${o.code}\nstdout:\n${o.stdout.slice(-4000)}\nstderr:\n${o.stderr.slice(-4000)}`;
}

function hasTsc(dir: string): boolean {
  return existsSync(join(dir, 'tsc'));
}

/**
 * An environment with no trace of this checkout: no npm_* variables of the `npm test` that runs us, and a
 * PATH without any directory that holds a `tsc` (npm puts the checkout's node_modules/.bin there).
 */
function bareEnv(first: string[] = []): NodeJS.ProcessEnv {
  const env = cleanEnv();
  for (const key of Object.keys(env)) if (/^npm_/i.test(key) || key === 'INIT_CWD' || key === 'NODE_PATH' || key === 'NODE_ENV') delete env[key];
  const path = (process.env['PATH'] ?? '').split(delimiter).filter((d) => d !== '' && !hasTsc(d));
  env['PATH'] = [...first, dirname(process.execPath), ...path].join(delimiter);
  return env;
}

function copySource(to: string): void {
  cpSync(ROOT, to, {
    recursive: true,
    filter: (src) => {
      const rel = relative(ROOT, src);
      const top = rel.split(sep)[0] ?? '';
      return !NOT_IN_A_CLONE.has(top) && !rel.endsWith('.tgz') && !rel.endsWith('.log');
    },
  });
}

describe.skipIf(!RUN)('production install without TypeScript', { timeout: 180_000 }, () => {
  let dir: string;
  const clone = () => join(dir, 'clone');
  const prefix = () => join(dir, 'prefix');
  const installed = () => join(prefix(), 'lib', 'node_modules', 'ucp-edge');
  let ci: Outcome;
  let pack: Outcome;
  let tarball = '';
  let globalInstall: Outcome;
  const procs: Proc[] = [];

  beforeAll(async () => {
    dir = tempDir('ucp-install-test-');
    copySource(clone());
    // The tarball is packed from its own copy: prepack empties dist/, which the other tests are using here.
    const source = join(dir, 'source');
    copySource(source);
    symlinkSync(join(ROOT, 'node_modules'), join(source, 'node_modules'), 'dir');
    const packed = join(dir, 'packed');
    mkdirSync(packed);
    [ci, pack] = await Promise.all([
      run('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund'], { cwd: clone(), env: bareEnv() }),
      run('npm', ['pack', '--pack-destination', packed], { cwd: source, env: bareEnv() }),
    ]);
    tarball = readdirSync(packed).filter((f) => f.endsWith('.tgz')).map((f) => join(packed, f))[0] ?? '';
    if (tarball !== '') {
      globalInstall = await run('npm', ['install', '-g', '--prefix', prefix(), '--omit=dev', '--no-audit', '--no-fund', tarball], { cwd: dir, env: bareEnv() });
    }
  }, 900_000);

  afterEach(async () => {
    for (const p of procs.splice(0)) await p.stop();
  });

  afterAll(() => {
    if (dir !== undefined) removeDir(dir);
  });

  it('npm ci --omit=dev in a clean clone exits 0, and ucp says in one line how to get a build', async () => {
    expect(ci.code, show(ci)).toBe(0);
    expect(existsSync(join(clone(), 'node_modules', 'typescript'))).toBe(false);
    expect(existsSync(join(clone(), 'dist'))).toBe(false);
    const result = await run(process.execPath, [join(clone(), 'bin', 'ucp.js'), '--version'], { cwd: clone(), env: bareEnv() });
    expect(result.code, show(result)).toBe(1);
    expect(result.stdout).toBe('');
    const lines = result.stderr.trim().split('\n');
    expect(lines, show(result)).toHaveLength(1);
    expect(lines[0]).toMatch(/^ucp: .*not built.*npm run build.*npm install -g/);
  });

  it('the packed tarball holds the build, the defaults, the systemd units and the examples, and no sources, tests or source maps', async () => {
    expect(pack.code, show(pack)).toBe(0);
    expect(tarball).not.toBe('');
    const listing = await run('tar', ['-tzf', tarball], { env: bareEnv() });
    expect(listing.code, show(listing)).toBe(0);
    const files = listing.stdout.split('\n').filter((f) => f !== '');
    for (const needed of ['package/bin/ucp.js', 'package/dist/src/cli/main.js', 'package/dist/src/executor/sandbox/sandbox-process.js', 'package/config/default.toml', 'package/examples/fire-watch/plan.toml', 'package/config/systemd/ucp-executor.service']) {
      expect(files).toContain(needed);
    }
    expect(files.filter((f) => f.endsWith('.map') || f.startsWith('package/src/') || f.startsWith('package/test/') || f.startsWith('package/scripts/'))).toEqual([]);
  });

  it('npm install -g of the tarball gives a ucp that runs `ucp up` and a plan, without TypeScript', async () => {
    expect(globalInstall?.code, globalInstall ? show(globalInstall) : 'not packed').toBe(0);
    for (const dev of ['typescript', 'vitest', 'tsx', 'fast-check']) expect(existsSync(join(installed(), 'node_modules', dev)), dev).toBe(false);
    const env = bareEnv([join(prefix(), 'bin')]);
    const ucpBin = join(prefix(), 'bin', 'ucp');

    const version = await run(ucpBin, ['--version'], { cwd: dir, env });
    expect(version.code, show(version)).toBe(0);
    expect(version.stdout.trim()).toBe(VERSION);

    const up = new Proc(ucpBin, ['up', '--port', '0', '--executors', '1', '--data-dir', join(dir, 'state')], env);
    procs.push(up);
    const listening = await up.waitForLine(/^hub listening on mqtt:\/\/\S+;/, 30_000);
    const url = /mqtt:\/\/[^;]+/.exec(listening)![0];
    const results = join(dir, 'results');
    const plan = join(installed(), 'examples', 'fire-watch', 'plan.toml');
    const jobRun = await run(ucpBin, ['run', plan, '--hub', url, '--results', results, '--data-dir', join(dir, 'client')], { cwd: dir, env, timeoutMs: 120_000 });
    expect(jobRun.code, show(jobRun)).toBe(0);
    expect(readdirSync(results).sort()).toEqual(['fw-alert_result.zip', 'fw-stats_result.zip']);
    await up.stop();
    expect((await up.exited).code, up.stderr).toBe(0);
  });
});
