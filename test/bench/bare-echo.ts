/**
 * The baseline's responder: a bare mqtt.js client that answers every request with the same payload on the
 * requester's inbox topic. No envelope, no validation, no clocks: the floor that the project's transport is
 * compared against. It publishes at QoS 0, as the project's links do. Nagle is off here too, and the topics follow the ucp scheme, so that a hub with
 * credentials and topic ACLs checks both sides alike.
 *
 * usage: bare-echo.ts <hub url> <cluster> [password]
 */
import mqtt from 'mqtt';

const [url, cluster, password] = process.argv.slice(2);
if (url === undefined || cluster === undefined) throw new Error('usage: bare-echo.ts <hub url> <cluster> [password]');
const client = mqtt.connect(url, { clientId: 'bare-echo', clean: true, protocolVersion: 4, ...(password !== undefined ? { username: 'bare-echo', password } : {}) });
client.on('connect', () => {
  (client.stream as unknown as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  client.subscribe(`ucp/${cluster}/inbox/bare-echo/+/+`, { qos: 1 }, () => process.stdout.write('ready\n'));
});
client.on('message', (topic, payload) => {
  // Answer whoever the topic names as the sender.
  const from = topic.slice(topic.lastIndexOf('/') + 1);
  client.publish(`ucp/${cluster}/inbox/${from}/executor/bare-echo`, payload, { qos: 0 });
});
process.on('SIGTERM', () => client.end(true, () => process.exit(0)));
