import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { CHUNK_BYTES, DATA_NAME_RULE, isDataName, quote, type AnyEnvelope, type BodyOf, type Kind } from '../protocol/index.js';
import { RemoteError, TransportError } from './errors.js';
import type { NodeLink } from './node-link.js';

export type PutResult = BodyOf<'data_put_result'>;

/** What a reader learns about a name with its first piece. */
export interface ReadHead {
  readonly name: string;
  readonly size: number;
  readonly at: [number, number];
  readonly writer: string;
  readonly series: boolean;
  readonly digest?: string;
}

export class DataTransferError extends Error {
  constructor(
    readonly code: 'digest_mismatch' | 'changed_while_read' | 'bad_reply' | 'not_found',
    message: string,
  ) {
    super(message);
    this.name = 'DataTransferError';
  }
}

/** Reads of one object kept in flight at once: enough to hide the round trip, bounded in memory. */
const READ_WINDOW = 4;
/**
 * Chunks of one upload sent and not yet acknowledged, at most: the round trip is hidden, and the order
 * holds (one hub connection, relayed by the broker as received, taken by the datastore as they come).
 */
const WRITE_WINDOW = 4;
/** A chunk whose request timed out is sent again this many times (the store acknowledges a repeat). */
const CHUNK_TRIES = 3;
/** An upload the store lost track of (it restarted) is started over this many times. */
const UPLOAD_TRIES = 3;
/** A read that found the object replaced mid-way starts over this many times. */
const READ_TRIES = 3;
const RESTART_CODES = new Set(['upload_unknown', 'upload_out_of_order', 'store_unavailable']);

/** Refuses a bad name here, with a reason, rather than letting every receiver drop the message. */
export function checkDataName(name: string): string {
  if (!isDataName(name)) throw new Error(`${quote(name)} is not a data name: ${DATA_NAME_RULE}`);
  return name;
}

/**
 * Named data of any size through a broker, with bounded memory: objects larger than one message are
 * uploaded and read in chunks, streamed from and to files, and the whole object's SHA-256 is checked
 * on both ends. Clients, executors and the firmware bridge all move data through this one helper.
 */
export class DataTransfer {
  constructor(
    private readonly link: NodeLink,
    /** The broker to ask, chosen anew for every operation (the previous one may be gone). */
    private readonly broker: () => Promise<string>,
  ) {}

  /** Stores bytes held in memory: in one message when they fit, else in chunks. */
  async putBytes(name: string, bytes: Uint8Array): Promise<PutResult> {
    checkDataName(name);
    if (bytes.byteLength <= CHUNK_BYTES) {
      // No version: the broker gives the write one from the cluster's clock.
      const reply = await this.link.request(await this.broker(), 'data_put', { name, bytes });
      return expect(reply, 'data_put_result');
    }
    return this.upload(name, bytes.byteLength, async function* () {
      for (let off = 0; off < bytes.byteLength; off += CHUNK_BYTES) yield bytes.subarray(off, off + CHUNK_BYTES);
    });
  }

  /** Stores a file, reading it a chunk at a time. */
  async putFile(name: string, path: string): Promise<PutResult & { size: number }> {
    checkDataName(name);
    const handle = await open(path, 'r');
    try {
      const size = (await handle.stat()).size;
      if (size <= CHUNK_BYTES) {
        const { buffer } = await handle.read({ buffer: Buffer.alloc(size), position: 0 });
        return { ...(await this.putBytes(name, buffer)), size };
      }
      const result = await this.upload(name, size, async function* () {
        for (let off = 0; off < size; off += CHUNK_BYTES) {
          const { buffer, bytesRead } = await handle.read({ buffer: Buffer.alloc(Math.min(CHUNK_BYTES, size - off)), position: off });
          if (bytesRead === 0) throw new Error(`${path} shrank while it was being stored`);
          yield buffer.subarray(0, bytesRead);
        }
      });
      return { ...result, size };
    } finally {
      await handle.close();
    }
  }

  /**
   * Sends chunks in order, one request each, up to WRITE_WINDOW awaiting their acknowledgement; the last
   * carries the size and the digest and goes once the others are acknowledged. An upload the store or
   * broker lost (a restart), or that lost a chunk with others behind it (out of order), starts over,
   * since `chunks` can be read again.
   */
  private async upload(name: string, size: number, chunks: () => AsyncGenerator<Uint8Array>): Promise<PutResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.uploadOnce(name, size, chunks());
      } catch (err) {
        if (!(err instanceof RemoteError && RESTART_CODES.has(err.code)) || attempt >= UPLOAD_TRIES) throw err;
      }
    }
  }

  private async uploadOnce(name: string, size: number, chunks: AsyncGenerator<Uint8Array>): Promise<PutResult> {
    const upload = randomBytes(16).toString('hex');
    const broker = await this.broker();
    const hash = createHash('sha256');
    const window: Array<Promise<void>> = [];
    let index = 0;
    let sent = 0;
    try {
      // One chunk is read ahead, so the last one is known as it is sent.
      let current = await chunks.next();
      while (!current.done) {
        const bytes = current.value;
        hash.update(bytes);
        sent += bytes.byteLength;
        const following = await chunks.next();
        if (following.done) {
          if (sent !== size) throw new Error(`"${name}" was ${sent} bytes, not the ${size} expected; it changed while it was being stored`);
          // The last chunk stores the object: only once every chunk before it is acknowledged.
          await Promise.all(window);
          const reply = await this.requestTrying(broker, 'data_write', { upload, name, index, bytes, last: { size, digest: hash.digest('hex') } });
          return expect(reply, 'data_put_result');
        }
        const acked = this.requestTrying(broker, 'data_write', { upload, name, index, bytes }).then((reply) => void expect(reply, 'data_written'));
        // Awaited in order below; a failure further along must not go unhandled meanwhile.
        acked.catch(() => undefined);
        window.push(acked);
        if (window.length >= WRITE_WINDOW) await window.shift();
        index++;
        current = following;
      }
      throw new Error(`"${name}" had no bytes to send`);
    } finally {
      // Leaving early (a refusal, a changed file): what is still in flight ends on its own.
      await Promise.allSettled(window);
    }
  }

  /** A request sent again after a timeout: every kind used here is safe to repeat. */
  private async requestTrying<K extends Kind>(to: string, kind: K, body: BodyOf<K>): Promise<AnyEnvelope> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.link.request(to, kind, body);
      } catch (err) {
        if (!(err instanceof TransportError && err.code === 'request_timeout') || attempt >= CHUNK_TRIES) throw err;
      }
    }
  }

  /**
   * The name's content, a piece at a time, in order. Objects are read several pieces at once and their
   * digest checked at the end; a series is read record range by record range. `onHead` hears the size
   * and version first.
   */
  async *read(name: string, onHead?: (head: ReadHead) => void): AsyncGenerator<Uint8Array> {
    checkDataName(name);
    for (let attempt = 1; ; attempt++) {
      let yielded = false;
      try {
        for await (const piece of this.readOnce(name, onHead)) {
          yielded = true;
          yield piece;
        }
        return;
      } catch (err) {
        // Once bytes went out they cannot be taken back: only a read that yielded nothing starts over.
        if (!(err instanceof DataTransferError && err.code === 'changed_while_read') || yielded || attempt >= READ_TRIES) throw err;
      }
    }
  }

  private async *readOnce(name: string, onHead?: (head: ReadHead) => void): AsyncGenerator<Uint8Array> {
    const broker = await this.broker();
    const first = expect(await this.requestTrying(broker, 'data_read', { name, from: 0, max_bytes: CHUNK_BYTES }), 'data_chunk');
    const head: ReadHead = { name, size: first.size, at: first.at, writer: first.writer, series: first.series, ...(first.digest !== undefined ? { digest: first.digest } : {}) };
    onHead?.(head);
    const same = (c: BodyOf<'data_chunk'>) => c.at[0] === head.at[0] && c.at[1] === head.at[1] && c.writer === head.writer;
    if (head.series) {
      // A series grows while it is read; its records are read on until the end seen now.
      yield first.bytes;
      let next = first.next;
      while (next !== undefined) {
        const piece = expect(await this.requestTrying(broker, 'data_read', { name, from: next, max_bytes: CHUNK_BYTES }), 'data_chunk');
        yield piece.bytes;
        next = piece.next;
      }
      return;
    }
    const hash = createHash('sha256');
    hash.update(first.bytes);
    yield first.bytes;
    let received = first.bytes.byteLength;
    const inFlight: Array<Promise<BodyOf<'data_chunk'>>> = [];
    let offset = first.next;
    const issue = () => {
      if (offset === undefined || offset >= head.size) return;
      const from = offset;
      offset += CHUNK_BYTES;
      inFlight.push(this.requestTrying(broker, 'data_read', { name, from, max_bytes: CHUNK_BYTES }).then((r) => expect(r, 'data_chunk')));
    };
    for (let i = 0; i < READ_WINDOW; i++) issue();
    while (inFlight.length > 0) {
      const piece = await inFlight.shift()!;
      if (!same(piece) || piece.size !== head.size) {
        await Promise.allSettled(inFlight);
        throw new DataTransferError('changed_while_read', `"${name}" was replaced while it was being read`);
      }
      hash.update(piece.bytes);
      received += piece.bytes.byteLength;
      issue();
      yield piece.bytes;
    }
    if (received !== head.size) throw new DataTransferError('bad_reply', `"${name}" should be ${head.size} bytes, ${received} arrived`);
    const digest = hash.digest('hex');
    if (head.digest !== undefined && digest !== head.digest) {
      throw new DataTransferError('digest_mismatch', `"${name}" arrived with SHA-256 ${digest}, not the stored ${head.digest}; fetch it again`);
    }
  }

  /** The whole content in memory; for names known to be small (modules, readings, results). */
  async readAll(name: string): Promise<{ bytes: Uint8Array; head: ReadHead }> {
    let head: ReadHead | undefined;
    // An object's size is known from its first piece: its pieces are copied into one buffer of that
    // size, so the content is held once, not once in pieces and again joined.
    let whole: Buffer | undefined;
    let filled = 0;
    const parts: Uint8Array[] = [];
    for await (const piece of this.read(name, (h) => (head = h))) {
      if (head !== undefined && !head.series && whole === undefined && head.size > piece.byteLength) whole = Buffer.allocUnsafe(head.size);
      if (whole !== undefined) {
        whole.set(piece, filled);
        filled += piece.byteLength;
      } else parts.push(piece);
    }
    const bytes = whole ?? (parts.length === 1 ? parts[0]! : Buffer.concat(parts));
    return { bytes, head: head! };
  }

  /** Writes the content to a file (through a temporary beside it, renamed once complete and checked). */
  async readToFile(name: string, path: string): Promise<ReadHead> {
    const partial = `${path}.part-${randomBytes(4).toString('hex')}`;
    let head: ReadHead | undefined;
    const out = createWriteStream(partial);
    try {
      for await (const piece of this.read(name, (h) => (head = h))) {
        if (!out.write(piece)) await new Promise<void>((resolve) => out.once('drain', resolve));
      }
      await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
      await rename(partial, path);
      return head!;
    } catch (err) {
      out.destroy();
      await rm(partial, { force: true });
      throw err;
    }
  }

  /** Appends records to series (see data_append); resolves with what each series stored. */
  async append(series: BodyOf<'data_append'>['series'], timeoutMs?: number): Promise<BodyOf<'data_appended'>['results']> {
    const reply = await this.link.request(await this.broker(), 'data_append', { series }, timeoutMs);
    return expect(reply, 'data_appended').results;
  }
}

function expect<K extends Kind>(reply: AnyEnvelope, kind: K): BodyOf<K> {
  if (reply.kind !== kind) throw new DataTransferError('bad_reply', `${reply.from} answered ${reply.kind} where ${kind} was expected`);
  return reply.body as BodyOf<K>;
}
