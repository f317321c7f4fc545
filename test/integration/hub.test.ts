import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedHub, hashPassword, writeCredentialsFile, type Credential } from '../../src/hub/index.js';
import { createLogger } from '../../src/log/index.js';
import type { Role } from '../../src/protocol/index.js';
import { removeDir, tempDir } from '../helpers/processes.js';

const logger = createLogger({ level: 'silent', format: 'json' });
const until = async (what: string, ok: () => boolean, timeoutMs = 5_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

/** The embedded hub's identity checks, exercised by real MQTT clients over TCP. */
describe('embedded hub with per-node credentials', () => {
  let dir: string;
  let file: string;
  let hub: EmbeddedHub;
  const clients: mqtt.MqttClient[] = [];
  const passwords = new Map<string, string>();
  const creds = new Map<string, Credential>();

  async function issue(node: string, role: Role): Promise<void> {
    const password = `pw-${node}`;
    passwords.set(node, password);
    creds.set(node, { node, role, certificate: false, ...(await hashPassword(password)) });
    writeCredentialsFile(file, creds);
  }

  async function connect(opts: mqtt.IClientOptions): Promise<mqtt.MqttClient> {
    const client = await mqtt.connectAsync(hub.url, { reconnectPeriod: 0, connectTimeout: 3_000, ...opts });
    clients.push(client);
    return client;
  }
  const login = (node: string) => connect({ clientId: node, username: node, password: passwords.get(node)! });

  beforeAll(async () => {
    dir = tempDir();
    file = join(dir, 'credentials.toml');
    await issue('br-1', 'broker');
    await issue('exec-1', 'executor');
    await issue('mallory', 'client');
    hub = await EmbeddedHub.start({ host: '127.0.0.1', port: 0, logger, credentialsFile: file, loginLimits: { freeFailures: 50, baseLockMs: 1_000, maxLockMs: 1_000, capacity: 100, forgetAfterMs: 60_000 } });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true);
  });

  afterAll(async () => {
    await hub.stop();
    removeDir(dir);
  });

  it('admits a node with its own password and refuses a wrong one, a missing one, and an unknown node', async () => {
    expect((await login('br-1')).connected).toBe(true);
    await expect(connect({ clientId: 'br-1', username: 'br-1', password: 'guess' })).rejects.toThrow(/Bad username or password/i);
    await expect(connect({ clientId: 'br-1' })).rejects.toThrow(/Bad username or password/i);
    await expect(connect({ clientId: 'ghost', username: 'ghost', password: 'x' })).rejects.toThrow(/Bad username or password/i);
    expect(hub.counters.get('login_refused_bad_password')).toBeGreaterThanOrEqual(3);
  });

  it('binds client id = user name, so nobody can take over another node\'s id', async () => {
    const victim = await login('exec-1');
    let victimClosed = false;
    victim.on('close', () => (victimClosed = true));
    await expect(connect({ clientId: 'exec-1', username: 'mallory', password: passwords.get('mallory')! })).rejects.toThrow(/Not authorized/i);
    await new Promise((r) => setTimeout(r, 200));
    expect(victimClosed).toBe(false);
    expect(hub.counters.get('login_refused_client_id')).toBe(1);
  });

  it('refuses subscriptions to other inboxes, and publishes as another node or role', async () => {
    const mallory = await login('mallory');
    // SUBACK 0x80: mqtt.js turns a refused subscription into an error.
    await expect(mallory.subscribeAsync('ucp/c/inbox/#', { qos: 1 })).rejects.toThrow(/Subscribe error/);
    expect(mallory.connected).toBe(true);
    expect((await mallory.subscribeAsync('ucp/c/inbox/mallory/+/+', { qos: 1 })).map((g) => g.qos)).toEqual([1]);
    const watcher = await login('exec-1');
    const received: string[] = [];
    watcher.on('message', (topic) => received.push(topic));
    await watcher.subscribeAsync('ucp/c/inbox/exec-1/+/+', { qos: 1 });
    // Posing as a broker: the hub drops the publish and the connection.
    mallory.publish('ucp/c/inbox/exec-1/broker/br-1', 'forged', { qos: 1 });
    await until('mallory to be disconnected', () => !mallory.connected);
    const honest = await login('br-1');
    await honest.publishAsync('ucp/c/inbox/exec-1/broker/br-1', 'genuine', { qos: 1 });
    await until('the genuine message', () => received.length === 1);
    expect(received).toEqual(['ucp/c/inbox/exec-1/broker/br-1']);
    expect(hub.counters.get('subscribe_refused')).toBe(1);
    expect(hub.counters.get('publish_refused_topic')).toBe(1);
  });

  it('rereads the credentials file without a restart: a new node gets in, a removed one is disconnected', async () => {
    await expect(connect({ clientId: 'late', username: 'late', password: 'pw-late' })).rejects.toThrow();
    await issue('late', 'datastore');
    expect((await login('late')).connected).toBe(true);
    const removed = await login('exec-1');
    creds.delete('exec-1');
    writeCredentialsFile(file, creds);
    await until('exec-1 to be disconnected', () => !removed.connected);
    expect(hub.counters.get('logins_revoked')).toBe(1);
    await expect(login('exec-1')).rejects.toThrow(/Bad username or password/i);
  });
});
