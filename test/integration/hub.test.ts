import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedHub, sharedCredentials, type HubAccessControl } from '../../src/hub/index.js';
import { createLogger } from '../../src/log/index.js';

const logger = createLogger({ level: 'silent', format: 'json' });

/** The embedded hub's authentication and ACL hooks, exercised by real MQTT clients over TCP. */
describe('embedded hub access control', () => {
  let hub: EmbeddedHub | undefined;
  const clients: mqtt.MqttClient[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true);
    await hub?.stop();
    hub = undefined;
  });

  async function start(access?: HubAccessControl): Promise<EmbeddedHub> {
    hub = await EmbeddedHub.start({ host: '127.0.0.1', port: 0, logger, ...(access !== undefined ? { access } : {}) });
    return hub;
  }

  async function connect(url: string, opts: mqtt.IClientOptions): Promise<mqtt.MqttClient> {
    const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, ...opts });
    clients.push(client);
    return client;
  }

  it('with shared credentials, refuses a wrong password and admits the right one', async () => {
    const h = await start(sharedCredentials('field', 's3cret'));
    await expect(connect(h.url, { clientId: 'intruder', username: 'field', password: 'guess' })).rejects.toThrow(/Bad username or password|Not authorized/i);
    await expect(connect(h.url, { clientId: 'anonymous' })).rejects.toThrow(/Bad username or password|Not authorized/i);
    const ok = await connect(h.url, { clientId: 'unit-1', username: 'field', password: 's3cret' });
    expect(ok.connected).toBe(true);
    expect(h.connectedClients).toBe(1);
  });

  it('an ACL hook keeps a client from publishing on another node\'s presence topic', async () => {
    const h = await start({
      authorizePublish: (clientId, topic) => {
        const m = /^ucp\/[^/]+\/presence\/([^/]+)$/.exec(topic);
        return m === null || m[1] === clientId;
      },
    });
    const watcher = await connect(h.url, { clientId: 'watcher' });
    const received: string[] = [];
    watcher.on('message', (topic) => received.push(topic));
    await watcher.subscribeAsync('ucp/c/presence/+', { qos: 1 });

    const forger = await connect(h.url, { clientId: 'node-x' });
    forger.publish('ucp/c/presence/node-y', 'forged', { qos: 1 });
    const honest = await connect(h.url, { clientId: 'node-z' });
    await honest.publishAsync('ucp/c/presence/node-z', 'own', { qos: 1 });
    await new Promise((r) => setTimeout(r, 200));
    expect(received).toContain('ucp/c/presence/node-z');
    expect(received).not.toContain('ucp/c/presence/node-y');
  });

  it('reports the port it picked and stops accepting connections when stopped', async () => {
    const h = await start();
    expect(h.port).toBeGreaterThan(0);
    const url = h.url;
    await connect(url, { clientId: 'c1' });
    await h.stop();
    hub = undefined;
    await expect(mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 1_000 })).rejects.toThrow();
  });
});
