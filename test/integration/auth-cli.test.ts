import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, removeDir, tempDir, ucp, ucpRun, type Proc } from '../helpers/processes.js';

/**
 * `ucp auth` and a hub that enforces its file, as an operator would use them: real processes, a real
 * credentials file, nodes logging in with their own passwords.
 */
describe('ucp auth and a hub with per-node credentials', () => {
  let dir: string;
  let file: string;
  let port: number;
  const procs: Proc[] = [];
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'auth'];

  async function add(node: string, role: string, force = false): Promise<string> {
    const r = await ucpRun(['auth', 'add', node, '--role', role, '--file', file, '--json', ...(force ? ['--force'] : [])]);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { password: string }).password;
  }

  beforeAll(() => {
    dir = tempDir();
    file = join(dir, 'credentials.toml');
  });

  afterAll(async () => {
    for (const p of procs) await p.stop();
    removeDir(dir);
  });

  it('adds, lists and removes credentials, keeping only hashes in a file only its owner can read', async () => {
    const password = await add('br-1', 'broker');
    expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
    await add('ops-1', 'operator');
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(password);
    expect(text).toMatch(/scrypt = "scrypt\$16384\$8\$1\$/);
    expect(statSync(file).mode & 0o077).toBe(0);
    const ls = await ucpRun(['auth', 'ls', '--file', file, '--json']);
    expect(JSON.parse(ls.stdout)).toEqual([
      { node: 'br-1', role: 'broker', password: true, certificate: false },
      { node: 'ops-1', role: 'operator', password: true, certificate: false },
    ]);
    const again = await ucpRun(['auth', 'add', 'br-1', '--role', 'broker', '--file', file]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^ucp: br-1 already has a credential in .*; pass --force to replace it\n$/);
    const bad = await ucpRun(['auth', 'add', 'x', '--role', 'king', '--file', file]);
    expect(bad.code).toBe(2);
    expect((await ucpRun(['auth', 'rm', 'ops-1', '--file', file])).code).toBe(0);
    expect((await ucpRun(['auth', 'rm', 'ops-1', '--file', file])).code).toBe(2);
    // Seven processes, each hashing or reading: a loaded machine needs more than the default minute's half.
  }, 120_000);

  it('a hub with the file admits a node with its password, refuses a wrong one, and reports it in ucp status', async () => {
    port = await freePort();
    const brokerPassword = await add('br-1', 'broker', true);
    const opsPassword = await add('ops-1', 'operator', true);
    const hub = ucp(['hub', '--port', String(port), '--node-id', 'hub-1', '--cluster', 'auth', '--set', `hub.credentials_file=${file}`, '--set', 'log.format=json']);
    procs.push(hub);
    await hub.waitForLine(/hub listening on/);
    const intruder = ucp(['broker', '--node-id', 'br-1', '--data-dir', join(dir, 'intruder'), ...common()], { UCP_HUB_PASSWORD: 'guess' });
    procs.push(intruder);
    await hub.waitForLog({ counter: 'login_refused_bad_password' }, 15_000);
    const broker = ucp(['broker', '--node-id', 'br-1', '--data-dir', join(dir, 'br-1'), ...common()], { UCP_HUB_PASSWORD: brokerPassword });
    procs.push(broker);
    await broker.waitForLog({ msg: 'connected' }, 15_000);
    await intruder.stop();
    const status = await ucpRun(['status', 'hub-1', '--json', '--node-id', 'ops-1', ...common()], { UCP_HUB_PASSWORD: opsPassword, UCP_CLIENT_OPERATOR: 'true' });
    expect(status.code, status.stderr).toBe(0);
    const counters = (JSON.parse(status.stdout) as { counters: Record<string, number> }).counters;
    expect(counters.login_refused_bad_password).toBeGreaterThanOrEqual(1);
    expect(counters.logins).toBeGreaterThanOrEqual(2);
    // The password is never logged, by the hub or by the node.
    for (const p of [hub, broker]) expect(p.lines.join('\n')).not.toContain(brokerPassword);
  }, 120_000);

  it('refuses to run a hub that admits anyone on a non-loopback address, unless --insecure', async () => {
    const refused = await ucpRun(['hub', '--host', '0.0.0.0', '--port', '0']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^ucp: refusing to run a hub on 0\.0\.0\.0 that admits anyone: set hub\.credentials_file/);
    const insecure = ucp(['hub', '--host', '0.0.0.0', '--port', '0', '--insecure', '--set', 'log.format=json']);
    procs.push(insecure);
    await insecure.waitForLine(/hub listening on/);
    expect(insecure.logs.some((l) => /admits anyone/.test(l.msg))).toBe(true);
  });

  it('a node warns when it connects without TLS to a hub on another machine', async () => {
    const r = await ucpRun(['ping', 'nobody', '--hub', 'mqtt://192.0.2.1:1883', '--set', 'transport.connect_timeout_ms=300', '--set', 'log.format=json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/without TLS: anyone on the network can read and alter the traffic/);
  });
});
