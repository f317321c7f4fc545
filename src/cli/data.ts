import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import type { UcpConfig } from '../config/index.js';
import { DataClient } from '../client/index.js';
import type { Logger } from '../log/index.js';
import { RemoteError, TransportError } from '../transport/index.js';
import { EXIT_FAILED, EXIT_OK } from './exit-codes.js';
import { table, type Output } from './inspect.js';
import { waits, withTool } from './settings.js';

function withData<T>(config: UcpConfig, logger: Logger, work: (data: DataClient) => Promise<T>): Promise<T> {
  return withTool(config, logger, (link) => work(new DataClient(link, config.client.broker_wait_s * 1_000, config.node.broker, (what) => waits.begin(what))));
}

/**
 * Where a data name is written under `root`, or undefined when the name is no safe relative path (data
 * names are free text: "../x", "/etc/x" or "a//b" must not write outside the folder or clash).
 */
function fileFor(root: string, name: string): string | undefined {
  const parts = name.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\\'))) return undefined;
  const path = resolve(root, ...parts);
  const inside = relative(root, path);
  return inside !== '' && !inside.startsWith(`..${sep}`) && inside !== '..' && !isAbsolute(inside) ? path : undefined;
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

/** `ucp data get NAME [--out FILE] [--prefix --out-dir DIR]`; exit 1 when --prefix finds nothing. */
export async function dataGet(config: UcpConfig, logger: Logger, out: Output, name: string, opts: { out?: string; prefix?: boolean; outDir?: string }): Promise<number> {
  return withData(config, logger, async (data) => {
    if (opts.prefix === true) {
      // Each name becomes a file under the output directory, at its own path.
      const root = resolve(opts.outDir ?? '.');
      let n = 0;
      const skipped: string[] = [];
      for await (const item of data.getPrefix(name)) {
        const path = fileFor(root, item.name);
        if (path === undefined) {
          skipped.push(item.name);
          if (!out.json) out.print(`${JSON.stringify(item.name)}: skipped, the name is not a path that stays inside ${root}`);
          continue;
        }
        let size: number;
        try {
          mkdirSync(dirname(path), { recursive: true });
          // An object too large for one message comes without its bytes: it is read in chunks.
          size = item.size !== undefined ? (await data.getToFile(item.name, path)).size : (writeFileSync(path, item.bytes), item.bytes.byteLength);
        } catch (err) {
          if (err instanceof RemoteError || err instanceof TransportError) throw err;
          // "a" and "a/b" are both names, but a path cannot be a file and a folder at once.
          skipped.push(item.name);
          if (!out.json) out.print(`${JSON.stringify(item.name)}: skipped, cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
          continue;
        }
        n++;
        if (!out.json) out.print(`${item.name} -> ${path} (${size} bytes)`);
      }
      if (out.json) out.print(JSON.stringify({ name, written: n, dir: root, ...(skipped.length > 0 ? { skipped } : {}) }));
      else if (n === 0 && skipped.length === 0) throw new Error(`no data at or below ${JSON.stringify(name)}; \`ucp data ls\` lists what there is`);
      return n > 0 ? EXIT_OK : EXIT_FAILED;
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
    return EXIT_OK;
  });
}

/** `ucp data ls [PREFIX]` */
export async function dataLs(config: UcpConfig, logger: Logger, out: Output, prefix: string | undefined): Promise<void> {
  const items = await withData(config, logger, (data) => data.list(prefix));
  if (out.json) {
    out.print(JSON.stringify(items.map((i) => ({ name: i.name, size: i.size, owner: i.owner ?? null, store: i.store, writtenAt: i.at }))));
    return;
  }
  if (items.length === 0) {
    out.print(prefix === undefined ? 'no data' : `no data at or below "${prefix}"`);
    return;
  }
  // A name nobody owns (written before names had owners, or by a node's own role) shows '-'.
  out.print(table(['NAME', 'SIZE', 'OWNER', 'DATASTORE'], items.map((i) => [i.name, String(i.size), i.owner ?? '-', i.store])));
}

/** `ucp data rm NAME` or `ucp data rm --job ID` */
export async function dataRm(config: UcpConfig, logger: Logger, out: Output, target: { name: string } | { jobId: string }): Promise<void> {
  const count = await withData(config, logger, (data) => data.delete(target));
  if (out.json) out.print(JSON.stringify({ deleted: count }));
  else out.print(`${count} name${count === 1 ? '' : 's'} deleted`);
}
