/**
 * The baseline's responder: a bare mqtt.js client that answers every request on bench/req with the same
 * payload on the requester's reply topic. No envelope, no validation, no clocks: the floor that the
 * project's transport is compared against. Nagle is off here too, so the comparison is fair.
 */
import mqtt from 'mqtt';

const url = process.argv[2];
if (url === undefined) throw new Error('usage: bare-echo.ts <hub url>');
const client = mqtt.connect(url, { clientId: `bare-echo-${process.pid}`, clean: true, protocolVersion: 4 });
client.on('connect', () => {
  (client.stream as unknown as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  client.subscribe('bench/req', { qos: 1 }, () => process.stdout.write('ready\n'));
});
client.on('message', (_topic, payload) => {
  // The first 16 bytes name the requester's reply topic suffix.
  const replyTo = payload.subarray(0, 16).toString('latin1');
  client.publish(`bench/rep/${replyTo}`, payload, { qos: 1 });
});
process.on('SIGTERM', () => client.end(true, () => process.exit(0)));
