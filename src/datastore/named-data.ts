import { createHash, randomBytes, type Hash } from 'node:crypto';
import { statfsSync } from 'node:fs';
import { compareEvents, type HlcTimestamp } from '../clock/index.js';
import { CHUNK_BYTES, resultArchiveName } from '../protocol/index.js';
import { pageUnder, type NodeStore, type Table } from '../store/index.js';

/** A version of a name: who wrote it, and when in HLC time. Later (HLC, then writer id) wins. */
export interface Version {
  readonly at: HlcTimestamp;
  readonly writer: string;
}

/**
 * A write or deletion as a broker stamped it (PROTOCOL.md, "Data versions and owners"): its version from
 * the cluster's clock, the name's owner afterwards, and whether it may replace a name another node owns.
 */
export interface Stamp extends Version {
  readonly owner: string;
  readonly replace: boolean;
}

export interface DataMeta extends Version {
  readonly name: string;
  readonly size: number;
  readonly owner: string;
}

export interface DataObject extends DataMeta {
  readonly bytes: Uint8Array;
}

export interface Page<T> {
  readonly items: readonly T[];
  /** Pass back to get the next page; absent on the last page. */
  readonly next?: string;
}

export type PutOutcome = 'stored' | 'unchanged' | 'stale';

export type DataStoreErrorCode = 'not_owner' | 'unstamped' | 'version_ahead' | 'not_found' | 'bad_move' | 'object_too_large' | 'upload_unknown' | 'upload_out_of_order' | 'digest_mismatch' | 'size_mismatch' | 'too_large_for_one_message';

export class DataStoreError extends Error {
  constructor(
    readonly code: DataStoreErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'DataStoreError';
  }
}

/** A piece of a stored name, as data_read answers it. */
export interface ReadPiece extends DataMeta {
  readonly series: boolean;
  readonly digest?: string;
  readonly from: number;
  readonly bytes: Uint8Array;
  readonly next?: number;
}

/** One rename: `from` becomes `to`, if it holds exactly `size` bytes with SHA-256 `digest`. */
export interface Move {
  readonly from: string;
  readonly to: string;
  readonly size: number;
  readonly digest: string;
}

export interface AppendRecord {
  readonly seq: number;
  readonly t: number;
  readonly line: Uint8Array;
}

export interface SeriesAppend {
  readonly name: string;
  readonly records: readonly AppendRecord[];
  readonly keep_last?: number;
  readonly before_t?: number;
}

export interface AppendResult {
  readonly name: string;
  readonly outcome: 'appended' | 'not_series' | 'not_owner';
  readonly stored: number;
  readonly duplicate: number;
  readonly outside_retention: number;
  readonly size: number;
}

/**
 * What the store keeps per name. An object's bytes are chunks of its blob (`chunks` of them, with the
 * whole object's digest); a series' content is its records, from sequence `first` up to `next`. Names
 * written before chunking have neither and keep their bytes in the legacy blobs table.
 */
interface StoredMeta {
  size: number;
  at: [number, number];
  writer: string;
  /** Absent on names stored before names had owners: their writer owns them. */
  owner?: string;
  blob?: string;
  chunks?: number;
  digest?: string;
  series?: { first: number; next: number };
}

interface Tombstone {
  at: [number, number];
  writer: string;
}

/** A series record as stored: its time (for retention by age) and its line. */
interface Row {
  t: number;
  b: Uint8Array;
}

/** An upload in progress, kept on disk only to clean its chunks up after a restart. */
interface UploadRecord {
  name: string;
  blob: string;
  startedAt: number;
}

interface LiveUpload extends UploadRecord {
  next: number;
  received: number;
  hash: Hash;
  touched: number;
}

/** An upload that makes no progress for this long is abandoned and its chunks removed. */
const UPLOAD_IDLE_MS = 120_000;
const CHUNK_DIGITS = 10;
const SEQ_DIGITS = 15;
const FLOOR_KEY = 'floor';

const toVersion = (v: { at: [number, number]; writer: string }): Version => ({ at: { wall: v.at[0], logical: v.at[1] }, writer: v.writer });
const ownerOf = (m: StoredMeta): string => m.owner ?? m.writer;
const described = (m: StoredMeta) => ({ ...toVersion(m), owner: ownerOf(m) });

/**
 * Why a stamped write or deletion may not touch a name that exists (undefined: it may). A name is its
 * owner's: another node changes it only with `replace`, which a broker grants operators and itself for a
 * job's own tree.
 */
export function ownershipProblem(name: string, current: { owner?: string; writer: string } | undefined, stamp: Stamp): string | undefined {
  if (current === undefined || stamp.replace) return undefined;
  const owner = current.owner ?? current.writer;
  return owner === stamp.owner ? undefined : `"${name}" is owned by ${owner}; only ${owner} or an operator may change it`;
}
const newer = (a: Version, b: Version) => compareEvents({ hlc: a.at, node: a.writer }, { hlc: b.at, node: b.writer }) > 0;
const chunkKey = (blob: string, index: number) => `${blob}\0${String(index).padStart(CHUNK_DIGITS, '0')}`;
const rowKey = (blob: string, seq: number) => `${blob}\0${String(seq).padStart(SEQ_DIGITS, '0')}`;
const newBlobId = () => `${Date.now().toString(36)}.${randomBytes(6).toString('hex')}`;
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * Named data in LMDB: hierarchical names (`fire/district-3/temps`), last-write-wins by HLC with the writer
 * id as tie-break, and deletions kept as tombstones so a delayed older write cannot bring data back.
 * Metadata and bytes live in separate tables, so listing never reads blobs. Objects of any size are kept
 * in chunks and read a chunk at a time; series (device readings) are kept as records keyed by their
 * sequence number, so appends are idempotent and retention drops whole records from the front.
 */
export class NamedDataStore {
  private readonly meta: Table<StoredMeta>;
  /** Bytes of names stored before chunking, by name. */
  private readonly legacyBlobs: Table<Uint8Array>;
  private readonly chunks: Table<Uint8Array>;
  private readonly rows: Table<Row>;
  private readonly tombstones: Table<Tombstone>;
  /** Holds `floor`: the newest tombstone pruned so far. */
  private readonly prunedTable: Table<Tombstone>;
  /**
   * Every pruned tombstone at once: a name with no record and no tombstone of its own orders as if deleted
   * at this version, so a write older than a pruned deletion still cannot bring its name back.
   */
  private floor: Tombstone | undefined;
  private readonly uploadTable: Table<UploadRecord>;
  /** Uploads by id. Their state (running digest) lives in memory only. */
  private readonly uploads = new Map<string, LiveUpload>();

  constructor(
    private readonly store: NodeStore,
    private readonly maxObjectBytes: number,
  ) {
    this.meta = store.table<StoredMeta>('data_meta');
    this.legacyBlobs = store.table<Uint8Array>('data_blobs');
    this.chunks = store.table<Uint8Array>('data_chunks');
    this.rows = store.table<Row>('data_rows');
    this.tombstones = store.table<Tombstone>('data_tombstones');
    this.prunedTable = store.table<Tombstone>('data_tombstones_pruned');
    this.floor = this.prunedTable.get(FLOOR_KEY);
    this.uploadTable = store.table<UploadRecord>('data_uploads');
    // Uploads cut short by a restart cannot resume (their running digest is gone): drop what they sent.
    for (const { key, value } of this.uploadTable.getRange()) {
      this.removeRange(this.chunks, value.blob);
      void this.uploadTable.remove(key);
    }
  }

  /** Stores `bytes` under `name` unless a newer version (or deletion) is already known or it is not the writer's. */
  async put(name: string, bytes: Uint8Array, version: Stamp): Promise<PutOutcome> {
    this.checkSize(name, bytes.byteLength);
    const blob = newBlobId();
    return this.commit(name, version, { size: bytes.byteLength, blob, digest: sha256(bytes), chunks: Math.max(1, Math.ceil(bytes.byteLength / CHUNK_BYTES)) }, () => {
      for (let i = 0, off = 0; off < bytes.byteLength || i === 0; i++, off += CHUNK_BYTES) this.chunks.put(chunkKey(blob, i), bytes.subarray(off, off + CHUNK_BYTES));
    });
  }

  /**
   * Takes one chunk of an upload. Chunks come in order; one repeated (its acknowledgement was lost) is
   * acknowledged again. The last chunk stores the object if its size and digest match what was received.
   */
  async write(upload: string, name: string, index: number, bytes: Uint8Array, last?: { size: number; digest: string; version: Stamp }): Promise<{ written: number } | { outcome: PutOutcome }> {
    // Upload ids are random (128 bits), so they need no writer to be told apart.
    const key = upload;
    this.expireUploads();
    let live = this.uploads.get(key);
    if (index === 0 && live === undefined) {
      live = { name, blob: newBlobId(), startedAt: Date.now(), next: 0, received: 0, hash: createHash('sha256'), touched: Date.now() };
      this.uploads.set(key, live);
      void this.uploadTable.put(key, { name: live.name, blob: live.blob, startedAt: live.startedAt });
    }
    if (live === undefined || live.name !== name) throw new DataStoreError('upload_unknown', `upload ${upload} of "${name}" is not known here (the datastore restarted or it expired); start it again`);
    if (index === live.next - 1 && last === undefined) return { written: index };
    if (index !== live.next) throw new DataStoreError('upload_out_of_order', `upload ${upload} of "${name}" sent chunk ${index}, expected ${live.next}; start it again`);
    if (live.received + bytes.byteLength > this.maxObjectBytes) {
      await this.abandon(key, live);
      this.checkSize(name, live.received + bytes.byteLength);
    }
    live.hash.update(bytes);
    live.received += bytes.byteLength;
    live.next++;
    live.touched = Date.now();
    if (last === undefined) {
      void this.chunks.put(chunkKey(live.blob, index), bytes);
      return { written: index };
    }
    // The last chunk is written only with the object it completes, once both checks pass.
    this.uploads.delete(key);
    const digest = live.hash.digest('hex');
    if (last.size !== live.received) {
      await this.abandon(key, live);
      throw new DataStoreError('size_mismatch', `upload ${upload} of "${name}" announced ${last.size} bytes but sent ${live.received}; send it again`);
    }
    if (last.digest !== digest) {
      await this.abandon(key, live);
      throw new DataStoreError('digest_mismatch', `upload ${upload} of "${name}" arrived with SHA-256 ${digest}, not the announced ${last.digest}; send it again`);
    }
    const blob = live.blob;
    const outcome = await this.commit(name, last.version, { size: live.received, blob, digest, chunks: live.next }, () => {
      this.chunks.put(chunkKey(blob, index), bytes);
    });
    if (outcome !== 'stored') await this.abandon(key, live);
    else void this.uploadTable.remove(key);
    return { outcome };
  }

  /**
   * Makes a new object version current unless a newer version or deletion is known; the replaced
   * version's chunks or records go in the same transaction.
   */
  private async commit(name: string, version: Stamp, object: { size: number; blob: string; digest: string; chunks: number }, writeChunks: () => void): Promise<PutOutcome> {
    const outcome = await this.meta.transaction((): PutOutcome | { refused: string } => {
      const current = this.meta.get(name);
      const refused = ownershipProblem(name, current, version);
      if (refused !== undefined) return { refused };
      const tomb = this.tombstones.get(name);
      if (current !== undefined) {
        const cur = toVersion(current);
        if (!newer(version, cur)) return newer(cur, version) ? 'stale' : 'unchanged';
      } else if (this.buried(tomb, version)) return 'stale';
      writeChunks();
      if (current !== undefined) this.dropContent(name, current);
      this.meta.put(name, { size: object.size, at: [version.at.wall, version.at.logical], writer: version.writer, owner: version.owner, blob: object.blob, chunks: object.chunks, digest: object.digest });
      if (tomb !== undefined) this.tombstones.remove(name);
      return 'stored';
    });
    if (typeof outcome === 'object') throw new DataStoreError('not_owner', outcome.refused);
    return outcome;
  }

  /**
   * Renames objects (a job's staged results to their published names) in one transaction at `version`,
   * after checking every one: the source must be an object of the given size and digest. The bytes are
   * not copied: the target takes over the source's chunks, and the source becomes a tombstone. A move
   * whose source is gone while its target holds exactly that content was made already (a repeated
   * request after a lost reply or a broker restart): `unchanged`. A target holding a newer version, or a
   * newer deletion, is left alone (`stale`), and so is its source.
   */
  async move(moves: readonly Move[], version: Version & { readonly owner?: string }): Promise<Array<{ to: string; outcome: PutOutcome }>> {
    const at: [number, number] = [version.at.wall, version.at.logical];
    // Each name once: two targets sharing one source would share its chunks.
    const named = new Set<string>();
    for (const { from, to } of moves) {
      for (const name of [from, to]) {
        if (named.has(name)) throw new DataStoreError('bad_move', `"${name}" is named twice in one move`);
        named.add(name);
      }
    }
    return this.meta.transaction(() => {
      const plans = moves.map((m) => {
        const source = this.meta.get(m.from);
        const target = this.meta.get(m.to);
        if (source === undefined) {
          if (target !== undefined && target.digest === m.digest && target.size === m.size) return { move: m, source: undefined };
          throw new DataStoreError('not_found', `no object named "${m.from}" here to publish as "${m.to}"`);
        }
        if (source.series !== undefined || source.blob === undefined || source.digest === undefined) {
          throw new DataStoreError('not_found', `"${m.from}" is not an object that can be published`);
        }
        if (source.size !== m.size) throw new DataStoreError('size_mismatch', `"${m.from}" is ${source.size} bytes, not the ${m.size} its reference says`);
        if (source.digest !== m.digest) throw new DataStoreError('digest_mismatch', `"${m.from}" has SHA-256 ${source.digest}, not the ${m.digest} its reference says`);
        return { move: m, source };
      });
      return plans.map(({ move, source }): { to: string; outcome: PutOutcome } => {
        if (source === undefined) return { to: move.to, outcome: 'unchanged' };
        const current = this.meta.get(move.to);
        const tomb = this.tombstones.get(move.to);
        if (current !== undefined ? !newer(version, toVersion(current)) : this.buried(tomb, version)) return { to: move.to, outcome: 'stale' };
        if (current !== undefined) this.dropContent(move.to, current);
        if (tomb !== undefined) this.tombstones.remove(move.to);
        this.meta.put(move.to, { size: source.size, at, writer: version.writer, owner: version.owner ?? version.writer, blob: source.blob!, chunks: source.chunks!, digest: source.digest! });
        // The source's chunks now belong to the target: only its name goes, leaving a tombstone.
        this.meta.remove(move.from);
        this.tombstones.put(move.from, { at, writer: version.writer });
        return { to: move.to, outcome: 'stored' };
      });
    });
  }

  /** The whole object, if it is small enough to travel in one message; undefined if there is no such name. */
  get(name: string): DataObject | undefined {
    const m = this.meta.get(name);
    if (m === undefined) return undefined;
    if (m.size > CHUNK_BYTES) throw new DataStoreError('too_large_for_one_message', `"${name}" is ${m.size} bytes, more than one message carries; read it in chunks (data_read)`);
    const bytes = this.wholeSmall(name, m);
    if (bytes === undefined) return undefined;
    return { name, size: m.size, ...described(m), bytes };
  }

  private wholeSmall(name: string, m: StoredMeta): Uint8Array | undefined {
    if (m.blob === undefined) return this.legacyBlobs.get(name);
    if (m.size === 0 && m.series === undefined) return new Uint8Array(0);
    const parts: Uint8Array[] = [];
    let next: number | undefined = 0;
    while (next !== undefined) {
      const piece = this.piece(name, m, next, CHUNK_BYTES);
      if (piece === undefined) return undefined;
      parts.push(piece.bytes);
      next = piece.next;
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  /** A piece of `name` from position `from` (byte offset, or record sequence number for a series). */
  read(name: string, from: number, maxBytes: number): ReadPiece | undefined {
    const m = this.meta.get(name);
    if (m === undefined) return undefined;
    const piece = this.piece(name, m, from, maxBytes);
    if (piece === undefined) return undefined;
    return { name, size: m.size, ...described(m), series: m.series !== undefined, ...(m.digest !== undefined ? { digest: m.digest } : {}), from, ...piece };
  }

  private piece(name: string, m: StoredMeta, from: number, maxBytes: number): { bytes: Uint8Array; next?: number } | undefined {
    if (m.series !== undefined) {
      const parts: Uint8Array[] = [];
      let size = 0;
      let next: number | undefined;
      for (const { key, value } of this.rows.getRange({ start: rowKey(m.blob!, Math.max(from, m.series.first)), end: rowKey(m.blob!, m.series.next) })) {
        if (parts.length > 0 && size + value.b.byteLength > maxBytes) {
          next = seqOf(String(key));
          break;
        }
        parts.push(value.b);
        size += value.b.byteLength;
      }
      return { bytes: parts.length === 1 ? parts[0]! : Buffer.concat(parts), ...(next !== undefined ? { next } : {}) };
    }
    // Objects are read by byte offset; a piece never crosses a stored chunk's end.
    if (from >= m.size) return { bytes: new Uint8Array(0) };
    let chunk: Uint8Array | undefined;
    let within: number;
    if (m.blob === undefined) {
      // Stored before chunking, as one blob.
      chunk = this.legacyBlobs.get(name);
      within = from;
    } else {
      chunk = this.chunks.get(chunkKey(m.blob, Math.floor(from / CHUNK_BYTES)));
      within = from % CHUNK_BYTES;
    }
    if (chunk === undefined) return undefined;
    const bytes = chunk.subarray(within, within + maxBytes);
    const end = from + bytes.byteLength;
    return { bytes, ...(end < m.size ? { next: end } : {}) };
  }

  /** The name itself and every name below it (`name/...`), with the bytes of those that fit one message. */
  getPrefix(prefix: string, limit: number, after?: string): Page<DataObject & { whole: boolean }> {
    const page = this.list(prefix, limit, after);
    const items = page.items.flatMap((m) => {
      if (m.size > CHUNK_BYTES) return [{ ...m, bytes: new Uint8Array(0), whole: false }];
      const stored = this.meta.get(m.name);
      const bytes = stored === undefined ? undefined : this.wholeSmall(m.name, stored);
      return bytes === undefined ? [] : [{ ...m, bytes, whole: true }];
    });
    return { items, ...(page.next !== undefined ? { next: page.next } : {}) };
  }

  /** Names at or below `prefix` (all names when empty), in name order, `limit` at a time after `after`. */
  list(prefix: string, limit: number, after?: string): Page<DataMeta> {
    return pageUnder(this.meta, prefix, limit, after, (name, m): DataMeta => ({ name, size: m.size, ...described(m) }));
  }

  /**
   * Appends records to series. Each series is one transaction: records already stored (by sequence
   * number) or outside the requested retention are skipped and counted, so an append repeated after a
   * lost reply, or arriving out of order, stores each record exactly once and in sequence order.
   */
  async append(items: readonly SeriesAppend[], version: Stamp): Promise<AppendResult[]> {
    return Promise.all(items.map((item) => this.appendOne(item, version)));
  }

  private async appendOne(item: SeriesAppend, version: Stamp): Promise<AppendResult> {
    const { name } = item;
    const result = await this.meta.transaction((): AppendResult => {
      let m = this.meta.get(name);
      if (ownershipProblem(name, m, version) !== undefined) return { name, outcome: 'not_owner', stored: 0, duplicate: 0, outside_retention: item.records.length, size: m!.size };
      if (m !== undefined && m.series === undefined) return { name, outcome: 'not_series', stored: 0, duplicate: 0, outside_retention: item.records.length, size: m.size };
      if (m === undefined) {
        // A deleted series comes back only with a newer write, like any other name.
        const tomb = this.tombstones.get(name);
        if (this.buried(tomb, version)) return { name, outcome: 'appended', stored: 0, duplicate: 0, outside_retention: item.records.length, size: 0 };
        if (tomb !== undefined) this.tombstones.remove(name);
        m = { size: 0, at: [version.at.wall, version.at.logical], writer: version.writer, owner: version.owner, blob: newBlobId(), series: { first: 0, next: 0 } };
      }
      const blob = m.blob!;
      const series = { ...m.series! };
      let size = m.size;
      let stored = 0;
      let duplicate = 0;
      let outside = 0;
      let highest = series.next;
      for (const rec of item.records) if (rec.seq + 1 > highest) highest = rec.seq + 1;
      // Retention is decided before records are written: a record it would drop at once is not stored.
      let first = series.first;
      if (item.keep_last !== undefined) first = Math.max(first, highest - item.keep_last);
      // No record at or past `next` was ever stored: a record there, in rising order (the bridge sends them
      // so), is new without a read. Anything else is looked up.
      const unseen = series.next;
      let rising = -1;
      for (const rec of item.records) {
        if (rec.seq < first || (item.before_t !== undefined && rec.t < item.before_t)) {
          outside++;
          continue;
        }
        const key = rowKey(blob, rec.seq);
        const fresh = rec.seq >= unseen && rec.seq > rising;
        if (fresh) rising = rec.seq;
        if (!fresh && this.rows.doesExist(key)) {
          duplicate++;
          continue;
        }
        this.rows.put(key, { t: rec.t, b: rec.line });
        size += rec.line.byteLength;
        stored++;
      }
      series.next = highest;
      // Drop what retention leaves behind: everything before `first`, then the oldest records by age.
      for (const { key, value } of this.rows.getRange({ start: rowKey(blob, series.first), end: rowKey(blob, first) })) {
        size -= value.b.byteLength;
        this.rows.remove(key);
      }
      if (item.before_t !== undefined) {
        for (const { key, value } of this.rows.getRange({ start: rowKey(blob, first), end: rowKey(blob, series.next) })) {
          if (value.t >= item.before_t) break;
          size -= value.b.byteLength;
          this.rows.remove(key);
          first = seqOf(String(key)) + 1;
        }
      }
      series.first = first;
      const at: [number, number] = newer(version, toVersion(m)) ? [version.at.wall, version.at.logical] : m.at;
      const writer = newer(version, toVersion(m)) ? version.writer : m.writer;
      // A write that passed the ownership check leaves the name with the owner it was stamped for.
      this.meta.put(name, { size, at, writer, owner: version.owner, blob, series });
      return { name, outcome: 'appended', stored, duplicate, outside_retention: outside, size };
    });
    return result;
  }

  /**
   * Deletes a name unless a newer version exists; the deletion itself is remembered as a tombstone (which
   * orders versions only: a deleted name is free again). Throws not_owner for another node's name.
   */
  async delete(name: string, version: Stamp): Promise<boolean> {
    const done = await this.meta.transaction((): boolean | { refused: string } => {
      const current = this.meta.get(name);
      const refused = ownershipProblem(name, current, version);
      if (refused !== undefined) return { refused };
      if (current !== undefined && !newer(version, toVersion(current))) return false;
      const tomb = this.tombstones.get(name);
      if (!this.buried(tomb, version)) this.tombstones.put(name, { at: [version.at.wall, version.at.logical], writer: version.writer });
      if (current === undefined) return false;
      this.dropContent(name, current);
      this.meta.remove(name);
      return true;
    });
    if (typeof done === 'object') throw new DataStoreError('not_owner', done.refused);
    return done;
  }

  /** Deletes everything under `<jobId>/` except the job's result archive; returns how many names went. */
  async deleteJobData(jobId: string, version: Stamp): Promise<number> {
    const keep = resultArchiveName(jobId);
    let deleted = 0;
    let after: string | undefined;
    for (;;) {
      const page = this.list(jobId, 500, after);
      for (const item of page.items) {
        if (item.name === keep || item.name === jobId) continue;
        // Without `replace` (a job the broker does not know) only the asker's own names go.
        if (!version.replace && item.owner !== version.owner) continue;
        if (await this.delete(item.name, version)) deleted++;
      }
      if (page.next === undefined) return deleted;
      after = page.next;
    }
  }

  /**
   * Drops tombstones of deletions made before `before` (HLC wall time, ms), at most `budget` of them, and
   * raises the floor to the newest one dropped. The names stay as ordered as before: a name without a
   * tombstone orders against the floor. The price is that a write to a name this store never held, stamped
   * before the floor, is refused as stale too; the caller keeps `before` far enough back (a day by
   * default) that only a message held up that long is. Returns how many went.
   */
  async pruneTombstones(before: number, budget = 10_000): Promise<number> {
    return this.meta.transaction(() => {
      let floor = this.floor;
      let dropped = 0;
      for (const { key, value } of this.tombstones.getRange()) {
        if (dropped === budget) break;
        if (value.at[0] >= before) continue;
        if (floor === undefined || newer(toVersion(value), toVersion(floor))) floor = value;
        this.tombstones.remove(key);
        dropped++;
      }
      if (floor !== this.floor) {
        this.prunedTable.put(FLOOR_KEY, floor!);
        this.floor = floor;
      }
      return dropped;
    });
  }

  /** How many tombstones are held. */
  tombstoneCount(): number {
    return this.tombstones.getCount();
  }

  /** Whether a write at `version` to a name with no record is older than its deletion (or the floor). */
  private buried(tomb: Tombstone | undefined, version: Version): boolean {
    const deleted = tomb ?? this.floor;
    return deleted !== undefined && !newer(version, toVersion(deleted));
  }

  /** Bytes free on the file system that holds this datastore. */
  freeSpace(): number {
    const fs = statfsSync(this.store.dir);
    return fs.bavail * fs.bsize;
  }

  /** Uploads in progress here. */
  get uploadsInProgress(): number {
    return this.uploads.size;
  }

  private checkSize(name: string, size: number): void {
    if (size > this.maxObjectBytes) {
      throw new DataStoreError('object_too_large', `"${name}" is ${size} bytes, over this datastore's ${this.maxObjectBytes}-byte limit`);
    }
  }

  private dropContent(name: string, m: StoredMeta): void {
    if (m.blob === undefined) this.legacyBlobs.remove(name);
    else if (m.series !== undefined) this.removeRange(this.rows, m.blob);
    else this.removeRange(this.chunks, m.blob);
  }

  private removeRange(table: Table<unknown>, blob: string): void {
    for (const key of table.getKeys({ start: `${blob}\0`, end: `${blob}\u0001` })) table.remove(key);
  }

  /** Forgets an upload, and unless it became an object, removes its chunks (once they are written). */
  private async abandon(key: string, live: LiveUpload): Promise<void> {
    this.uploads.delete(key);
    void this.uploadTable.remove(key);
    await this.store.durable();
    this.removeRange(this.chunks, live.blob);
  }

  private expireUploads(): void {
    const cutoff = Date.now() - UPLOAD_IDLE_MS;
    for (const [key, live] of this.uploads) if (live.touched < cutoff) void this.abandon(key, live);
  }
}

function seqOf(key: string): number {
  return Number(key.slice(key.indexOf('\0') + 1));
}
