// The footprint bench's baseline hub: aedes on a TCP server with Nagle off, nothing else (no logger, no
// access hooks, no configuration). Plain JavaScript run by plain node, so that its memory and CPU are not
// inflated by a TypeScript loader and compare fairly with the `ucp hub` process.
// Usage: node bare-aedes.mjs PORT
import { createServer } from 'node:net';
import { Aedes } from 'aedes';

const port = Number(process.argv[2]);
const aedes = await Aedes.createBroker();
const server = createServer((socket) => {
  socket.setNoDelay(true);
  aedes.handle(socket);
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening on ${port}\n`));
process.on('SIGTERM', () => aedes.close(() => server.close(() => process.exit(0))));
