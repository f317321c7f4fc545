import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, removeDir, ROOT, tempDir, ucp, ucpRun, UCP_BIN, type Proc } from '../helpers/processes.js';

/**
 * The `ucp` command as a user meets it: real processes, real exit codes, and the one line on stderr
 * that has to say what went wrong without a stack trace.
 */

type Result = Awaited<ReturnType<typeof ucpRun>>;

const COMMANDS = ['hub', 'up', 'broker', 'executor', 'datastore', 'nodes', 'ping', 'status', 'notice', 'outbox', 'demo'];

/**
 * Stderr without the JSON log lines that query commands write there (their answer owns stdout) and
 * without the notes that say what a command is waiting for.
 */
function messageLines(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('{') && !/^waiting for .*\.\.\.$/.test(line));
}

/** The command failed with `code` and said so in exactly one `ucp: ` line, with no stack trace. */
function expectOneError(result: Result, code: number): string {
  const context = `exit ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
  expect(result.code, context).toBe(code);
  expect(result.stderr, context).not.toContain('    at ');
  expect(result.stdout, context).not.toContain('    at ');
  const lines = messageLines(result.stderr);
  expect(lines, context).toHaveLength(1);
  const line = lines[0] ?? '';
  expect(line.startsWith('ucp: '), context).toBe(true);
  return line;
}

let dir: string;
const procs: Proc[] = [];

beforeAll(() => {
  if (!existsSync(UCP_BIN)) throw new Error(`${UCP_BIN} is missing; run npx tsc -p tsconfig.json first`);
  dir = tempDir('ucp-cli-test-');
});

afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop();
});

afterAll(() => {
  removeDir(dir);
});

function start(args: string[], env: Record<string, string> = {}): Proc {
  const proc = ucp(args, env);
  procs.push(proc);
  return proc;
}

describe('ucp --help and --version', { timeout: 60_000 }, () => {
  it('--help exits 0 and lists every command', async () => {
    const result = await ucpRun(['--help']);
    expect(result.code, result.stderr).toBe(0);
    const section = result.stdout.split(/^Commands:$/m)[1] ?? '';
    const listed = section
      .split('\n')
      .map((line) => /^ {2}([a-z]+)\b/.exec(line)?.[1])
      .filter((name): name is string => name !== undefined);
    for (const command of COMMANDS) expect(listed, result.stdout).toContain(command);
  });

  it('--version prints the package.json version', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const result = await ucpRun(['--version']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe(pkg.version);
  });
});

describe('configuration errors exit 2 with one line', { timeout: 60_000 }, () => {
  let closedPort: number;
  // Were validation to let the value through, the command fails fast on the closed port with exit 1.
  const query = () => ['nodes', '--hub', `mqtt://127.0.0.1:${closedPort}`, '--set', 'transport.connect_timeout_ms=500'];

  beforeAll(async () => {
    closedPort = await freePort();
  });

  it('an unknown key given with --set names the key', async () => {
    const line = expectOneError(await ucpRun([...query(), '--set', 'liveness.dead_after=5']), 2);
    expect(line).toContain('liveness.dead_after');
    expect(line).toContain('unknown');
  });

  it('an unknown UCP_* environment variable names the variable', async () => {
    const line = expectOneError(await ucpRun(query(), { UCP_LIVENES_DEAD_AFTER_MS: '1' }), 2);
    expect(line).toContain('UCP_LIVENES_DEAD_AFTER_MS');
    // The typo is close enough to the real name to be suggested.
    expect(line).toContain('UCP_LIVENESS_DEAD_AFTER_MS');
  });

  it('a bad value names the key, the value and where it came from', async () => {
    const line = expectOneError(await ucpRun([...query(), '--set', 'liveness.dead_after_ms=abc']), 2);
    expect(line).toContain('liveness.dead_after_ms');
    expect(line).toContain('"abc"');
    expect(line).toContain('--set liveness.dead_after_ms');
  });

  it('an unknown key in a config file names the key and the file', async () => {
    const file = join(dir, 'unknown-key.toml');
    writeFileSync(file, '[liveness]\ndead_after = 5\n');
    const line = expectOneError(await ucpRun([...query(), '--config', file]), 2);
    expect(line).toContain('liveness.dead_after');
    expect(line).toContain(file);
  });

  it('a TOML syntax error names the file and the line', async () => {
    const file = join(dir, 'broken.toml');
    writeFileSync(file, '[liveness]\ndead_after_ms = = 5\n');
    const line = expectOneError(await ucpRun([...query(), '--config', file]), 2);
    expect(line).toContain(file);
    expect(line).toContain('line 2');
  });
});

describe('data directory ownership and locking', { timeout: 90_000 }, () => {
  let unusedHub: string;

  beforeAll(async () => {
    // Nobody listens here: an executor keeps retrying the hub, which is all these tests need of it.
    unusedHub = `mqtt://127.0.0.1:${await freePort()}`;
  });

  const executor = (nodeId: string, dataDir: string) => ['executor', '--node-id', nodeId, '--data-dir', dataDir, '--hub', unusedHub];

  it('a node started on a data directory that belongs to another node id exits 1 in one line', async () => {
    const dataDir = join(dir, 'owned');
    const first = start(executor('x', dataDir));
    // The store is claimed before the node logs that it is starting; its first failed connection attempt
    // comes after its signal handlers are in place, so SIGTERM then means a clean stop.
    await first.waitForLog({ msg: 'starting executor' }, 20_000);
    await first.waitForLog({ msg: 'hub connection error' }, 20_000);
    await first.stop();
    expect(await first.exited, `${first.lines.join('\n')}\n${first.stderr}`).toEqual({ code: 0, signal: null });

    const line = expectOneError(await ucpRun(executor('y', dataDir)), 1);
    expect(line).toMatch(/^ucp: data directory .* belongs to node /);
    expect(line).toContain(dataDir);
    expect(line).toContain('"x"');
    expect(line).toContain('"y"');
  });

  it('a second node on a data directory in use exits 1 naming the running process, which keeps running', async () => {
    const dataDir = join(dir, 'shared');
    const first = start(executor('x', dataDir));
    await first.waitForLog({ msg: 'starting executor' }, 20_000);
    await first.waitForLog({ msg: 'hub connection error' }, 20_000);

    const line = expectOneError(await ucpRun(executor('x', dataDir)), 1);
    expect(line).toContain('in use by process');
    expect(line).toContain(`process ${first.pid}`);
    expect(line).toContain(dataDir);

    // The refused start touched neither the running node nor its lock.
    expect(first.child.exitCode).toBeNull();
    expect(JSON.parse(readFileSync(join(dataDir, 'node.lock'), 'utf8'))).toMatchObject({ pid: first.pid, nodeId: 'x' });
    await first.stop();
    expect(await first.exited, `${first.lines.join('\n')}\n${first.stderr}`).toEqual({ code: 0, signal: null });
    // A clean stop releases the directory.
    expect(existsSync(join(dataDir, 'node.lock'))).toBe(false);
  });
});

describe('query commands that cannot get an answer', { timeout: 90_000 }, () => {
  it('`ucp status` of a node nobody runs exits 1 saying there was no reply', async () => {
    const hub = start(['hub', '--port', '0', '--log-level', 'warn']);
    const listening = await hub.waitForLine(/^hub listening on mqtt:\/\/127\.0\.0\.1:\d+$/, 20_000);
    const url = listening.replace('hub listening on ', '');

    const result = await ucpRun(['status', 'nobody', '--hub', url, '--set', 'transport.request_timeout_ms=300', '--log-level', 'info']);
    const exitedAt = Date.now();
    const line = expectOneError(result, 1);
    expect(line).toContain('no reply');
    expect(line).toContain('nobody');
    expect(result.stdout).toBe('');
    // It gave up on the configured 300 ms, not on the 5 s default: measured from when it reached the hub,
    // so a slow process start on a loaded machine does not count.
    const connected = result.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg?: string; time?: number })
      .find((l) => l.msg === 'connected');
    expect(connected?.time, result.stderr).toBeTypeOf('number');
    expect(exitedAt - (connected?.time ?? 0)).toBeLessThan(3_000);
  });

  it('`ucp nodes` against a closed port exits 1 saying the hub cannot be reached', async () => {
    const port = await freePort();
    const result = await ucpRun(['nodes', '--hub', `mqtt://127.0.0.1:${port}`, '--set', 'transport.connect_timeout_ms=500']);
    const line = expectOneError(result, 1);
    expect(line).toContain('cannot reach the hub');
    expect(line).toContain(`mqtt://127.0.0.1:${port}`);
    expect(result.stdout).toBe('');
  });

  it('`ucp notice` with the hub unreachable keeps the notice queued and exits 3 at its timeout', async () => {
    const port = await freePort();
    const result = await ucpRun(['notice', 'nobody', 'hold this', '--timeout', '1', '--node-id', 'ops-q', '--data-dir', join(dir, 'ops-q'), '--hub', `mqtt://127.0.0.1:${port}`]);
    expect(result.code, result.stderr).toBe(3);
    expect(result.stdout).toMatch(/queued for nobody/);
    // The notice survived the exit: the next run still has it.
    const again = await ucpRun(['outbox', '--wait', '0', '--json', '--node-id', 'ops-q', '--data-dir', join(dir, 'ops-q'), '--hub', `mqtt://127.0.0.1:${port}`]);
    expect(again.code).toBe(3);
    expect(JSON.parse(again.stdout)).toMatchObject({ pending: 1, delivered: 0 });
  });
});

describe('npm start', () => {
  it('`ucp demo` exits 0, ends with "all checks passed" and removes its data', async () => {
    const result = await ucpRun(['demo'], {}, 120_000);
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(result.stdout.trimEnd().endsWith('all checks passed'), result.stdout).toBe(true);
    expect(result.stdout).not.toMatch(/check\(s\) failed/);
    expect(result.stderr).not.toContain('    at ');
    const dataRoot = /\(data in (.+)\)$/m.exec(result.stdout)?.[1];
    expect(dataRoot, result.stdout).toBeDefined();
    expect(existsSync(dataRoot ?? '')).toBe(false);
  }, 150_000);
});
