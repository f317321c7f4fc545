// The jobs bench's baseline worker: a BullMQ worker that runs the same WASM module as the ucp-edge
// executors, with node:wasi, as someone building this on BullMQ would. Plain JavaScript run by plain
// node, so no TypeScript loader weighs on its figures.
// Usage: node bullmq-worker.mjs REDIS_PORT QUEUE CONCURRENCY MODULE_FILE STAGE
//   STAGE "dir": each job gets a temporary directory as its root, removed afterwards; "none": no directory.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WASI } from 'node:wasi';
import { Worker } from 'bullmq';

const [port, queue, concurrency, moduleFile, stage] = process.argv.slice(2);
const module = await WebAssembly.compile(readFileSync(moduleFile));

async function run(job) {
  const dir = stage === 'dir' ? mkdtempSync(join(tmpdir(), 'bullmq-job-')) : undefined;
  try {
    const wasi = new WASI({ version: 'preview1', args: job.data.argv, env: {}, preopens: dir !== undefined ? { '/': dir } : {}, returnOnExit: true });
    const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
    const code = wasi.start(instance);
    if (code !== 0) throw new Error(`exit code ${code}`);
    return { code };
  } finally {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }
}

const worker = new Worker(queue, run, { connection: { host: '127.0.0.1', port: Number(port), maxRetriesPerRequest: null }, concurrency: Number(concurrency) });
await worker.waitUntilReady();
process.stdout.write('worker ready\n');
process.on('SIGTERM', () => void worker.close().then(() => process.exit(0)));
