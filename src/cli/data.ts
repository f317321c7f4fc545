import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { UcpConfig } from '../config/index.js';
import { DataClient } from '../client/index.js';
import type { Logger } from '../log/index.js';
import { table, type Output } from './inspect.js';
import { withTool } from './settings.js';

function withData<T>(config: UcpConfig, logger: Logger, work: (data: DataClient) => Promise<T>): Promise<T> {
  return withTool(config, logger, (link) => work(new DataClient(link, config.transport.request_timeout_ms, config.node.broker)));
}

/** `ucp data put NAME FILE` */
export async function dataPut(config: UcpConfig, logger: Logger, out: Output, name: string, file: string): Promise<void> {
  try {
    if (!statSync(file).isFile()) throw new Error('not a regular file');
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  // Streamed a chunk at a time: a file of any size is never held in memory whole.
  const result = await withData(config, logger, (data) => data.putFile(name, file));
  if (out.json) out.print(JSON.stringify(result));
  else if (result.outcome === 'stale') out.print(`${name}: a newer version is already stored on ${result.store}; nothing changed`);
  else out.print(`${name}: ${result.size} bytes ${result.outcome} on ${result.store}`);
}

/** `ucp data get NAME [--out FILE] [--prefix --out-dir DIR]` */
export async function dataGet(config: UcpConfig, logger: Logger, out: Output, name: string, opts: { out?: string; prefix?: boolean; outDir?: string }): Promise<void> {
  await withData(config, logger, async (data) => {
    if (opts.prefix === true) {
      // Each name becomes a file under the output directory, at its own path.
      const root = resolve(opts.outDir ?? '.');
      let n = 0;
      for await (const item of data.getPrefix(name)) {
        const path = join(root, item.name);
        mkdirSync(dirname(path), { recursive: true });
        // An object too large for one message comes without its bytes: it is read in chunks.
        const size = item.size !== undefined ? (await data.getToFile(item.name, path)).size : (writeFileSync(path, item.bytes), item.bytes.byteLength);
        n++;
        if (!out.json) out.print(`${item.name} -> ${path} (${size} bytes)`);
      }
      if (out.json) out.print(JSON.stringify({ name, written: n, dir: root }));
      return;
    }
    if (opts.out !== undefined) {
      const head = await data.getToFile(name, opts.out);
      if (out.json) out.print(JSON.stringify({ name, size: head.size, file: resolve(opts.out) }));
      else out.print(`${name} -> ${opts.out} (${head.size} bytes)`);
    } else {
      for await (const piece of data.transfer.read(name)) {
        if (!process.stdout.write(piece)) await new Promise<void>((r) => process.stdout.once('drain', r));
      }
    }
  });
}

/** `ucp data ls [PREFIX]` */
export async function dataLs(config: UcpConfig, logger: Logger, out: Output, prefix: string | undefined): Promise<void> {
  const items = await withData(config, logger, (data) => data.list(prefix));
  if (out.json) {
    out.print(JSON.stringify(items.map((i) => ({ name: i.name, size: i.size, store: i.store, writtenAt: i.at }))));
    return;
  }
  if (items.length === 0) {
    out.print(prefix === undefined ? 'no data' : `no data at or below "${prefix}"`);
    return;
  }
  out.print(table(['NAME', 'SIZE', 'DATASTORE'], items.map((i) => [i.name, String(i.size), i.store])));
}

/** `ucp data rm NAME` or `ucp data rm --job ID` */
export async function dataRm(config: UcpConfig, logger: Logger, out: Output, target: { name: string } | { jobId: string }): Promise<void> {
  const count = await withData(config, logger, (data) => data.delete(target));
  if (out.json) out.print(JSON.stringify({ deleted: count }));
  else out.print(`${count} name${count === 1 ? '' : 's'} deleted`);
}
