import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { stagingName, type BodyOf, type JobSpec, type StagedObject } from '../protocol/index.js';
import type { Table } from '../store/index.js';
import { RemoteError, TransportError, type DataTransfer, type NodeRuntime } from '../transport/index.js';

export type RunReport = Omit<BodyOf<'job_result'>, 'job_id' | 'attempt'>;

/** Who assigned an attempt and what it runs: enough to report it, after a restart too. */
export interface AttemptRef {
  readonly broker: string;
  readonly attempt: number;
  readonly spec: JobSpec;
  readonly versions: Record<string, [number, number]>;
}

/**
 * A finished attempt whose result is too large for one message, kept until its report is in the durable
 * outbox: the report refers to its large objects by staging name, size and SHA-256, and their bytes wait
 * in files (`files[i]` holds `report`'s staged object `objects[i]`). After a crash the upload starts again
 * from here, so a result that was produced is never lost to a restart, nor run again.
 */
export interface StagedRecord extends AttemptRef {
  readonly report: RunReport;
  readonly objects: readonly StagedObject[];
  readonly files: readonly string[];
}

/** Which of a result's objects leave the message: `undefined` is the archive, a number a named result. */
export type ObjectRef = number | undefined;

/**
 * The objects to stage so that the rest travels inline: none if the whole fits, else the largest first
 * (the fewest uploads), until what is left fits in `inlineBytes`.
 */
export function chooseStaged(report: RunReport, inlineBytes: number): Array<{ ref: ObjectRef; bytes: Uint8Array }> {
  const items: Array<{ ref: ObjectRef; bytes: Uint8Array }> = [];
  if (report.archive instanceof Uint8Array) items.push({ ref: undefined, bytes: report.archive });
  report.named.forEach((n, i) => {
    if (n.bytes instanceof Uint8Array) items.push({ ref: i, bytes: n.bytes });
  });
  let inline = items.reduce((sum, item) => sum + item.bytes.byteLength, 0);
  const staged: typeof items = [];
  for (const item of items.sort((x, y) => y.bytes.byteLength - x.bytes.byteLength)) {
    if (inline <= inlineBytes) break;
    staged.push(item);
    inline -= item.bytes.byteLength;
  }
  return staged;
}

/**
 * The executor's durable outbox for large results (PROTOCOL.md, "Results larger than one message"): the
 * bytes of staged objects in files under `dir`, the report that refers to them in LMDB. A record is
 * written together with the removal of its assignment, and removed together with the report's entry into
 * the message outbox, so after a crash an attempt is exactly one of: still assigned (it died while
 * running), staged (its upload starts over), or reported.
 */
export class ResultStaging {
  private readonly records: Table<StagedRecord>;
  private readonly fsync: boolean;

  constructor(
    private readonly node: NodeRuntime,
    private readonly dir: string,
  ) {
    this.records = node.store.table<StagedRecord>('staged_results');
    this.fsync = node.store.sync === 'flush';
    mkdirSync(dir, { recursive: true });
    // Files written before a crash that came before their record: nothing refers to them.
    const kept = new Set([...this.records.getRange()].map(({ key }) => folderOf(String(key))));
    for (const entry of readdirSync(dir)) if (!kept.has(entry)) rmSync(join(dir, entry), { recursive: true, force: true });
  }

  get(id: string): StagedRecord | undefined {
    return this.records.get(id);
  }

  /** Every staged attempt left by a previous run of this executor. */
  pending(): Array<{ id: string; record: StagedRecord }> {
    return [...this.records.getRange()].map(({ key, value }) => ({ id: String(key), record: value }));
  }

  /**
   * Writes the chosen objects to files and records the report that refers to them. `removeAssignment`
   * is given the record's write and runs in the same turn, so what it writes lands in the same LMDB batch.
   */
  async keep(id: string, a: AttemptRef, report: RunReport, chosen: ReadonlyArray<{ ref: ObjectRef; bytes: Uint8Array }>, removeAssignment: (kept: Promise<unknown>) => Promise<unknown>): Promise<StagedRecord> {
    const folder = join(this.dir, folderOf(id));
    await mkdir(folder, { recursive: true });
    const objects: StagedObject[] = [];
    const files: string[] = [];
    const refs = new Map<ObjectRef, StagedObject>();
    for (const [i, { ref, bytes }] of chosen.entries()) {
      const file = join(folder, String(i));
      await writeWhole(file, bytes, this.fsync);
      const object = { name: stagingName(a.spec.job_id, a.attempt, ref), size: bytes.byteLength, digest: createHash('sha256').update(bytes).digest('hex') };
      objects.push(object);
      files.push(file);
      refs.set(ref, object);
    }
    const record: StagedRecord = {
      broker: a.broker,
      attempt: a.attempt,
      spec: a.spec,
      versions: a.versions,
      report: { ...report, archive: refs.get(undefined) ?? report.archive, named: report.named.map((n, i) => ({ ...n, bytes: refs.get(i) ?? n.bytes })) },
      objects,
      files,
    };
    if (this.fsync) {
      // The files' names are on disk before the record that names them is written.
      await syncDir(folder);
      await syncDir(this.dir);
    }
    const kept = this.records.put(id, record);
    await Promise.all([kept, removeAssignment(kept)]);
    return record;
  }

  /** Forgets a staged attempt: `alongside` (the report's entry into the outbox) commits with it. */
  async forget(id: string, alongside?: Promise<unknown>): Promise<void> {
    await Promise.all([this.records.remove(id), alongside]);
    rmSync(join(this.dir, folderOf(id)), { recursive: true, force: true });
  }
}

/**
 * Writes a file whole or not at all: under a temporary name, then renamed. With `fsync` (store.sync =
 * "flush", for units that lose power) it is on disk before the rename, and the caller fsyncs the
 * directory: the OS writes pages back in its own order, so otherwise a power cut could keep the report
 * that names a staged file (in LMDB, fsynced) and lose the file's tail. In "commit" mode nothing is
 * fsynced, as everywhere else; a torn file would upload with another digest, which the datastore refuses
 * to publish, and the job runs again.
 */
async function writeWhole(file: string, bytes: Uint8Array, fsync: boolean): Promise<void> {
  const tmp = `${file}.tmp`;
  const handle = await open(tmp, 'w');
  try {
    await handle.writeFile(bytes);
    if (fsync) await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A file-system-safe folder per attempt (`<job>#<attempt>`; job ids never hold '/'). */
function folderOf(id: string): string {
  return id.replace('#', '-');
}

/** Staged uploads of one result in flight at once. */
const STAGE_PARALLEL = 2;
/** How long staging a result keeps trying through a broker or datastore that is out of reach. */
const STAGE_PATIENCE_MS = 60_000;
/** Refusals that no retry changes: the result cannot be staged at all. */
const STAGE_REFUSALS = new Set(['reserved_name', 'object_too_large', 'bad_request', 'over_budget']);

export type UploadOutcome = { kind: 'staged' } | { kind: 'stopped' } | { kind: 'cancelled' } | { kind: 'refused'; message: string } | { kind: 'unreachable'; message: string };

export interface UploadControl {
  stopped(): boolean;
  /** Why the attempt was cancelled, if it was. */
  cancelled(): string | undefined;
  retrying(name: string, err: Error): void;
}

/**
 * Uploads every staged object of `record` from its file, streamed in chunks, trying again while the
 * broker or datastore is out of reach (the broker may be replaced by its adopter meanwhile) for up to
 * STAGE_PATIENCE_MS. Each upload is whole: a repeat after a crash or a lost store writes the object again.
 */
export async function uploadStaged(record: StagedRecord, transfer: DataTransfer, control: UploadControl): Promise<UploadOutcome> {
  let next = 0;
  let ended: UploadOutcome | undefined;
  const one = async (i: number): Promise<UploadOutcome | undefined> => {
    const object = record.objects[i]!;
    const giveUpAt = performance.now() + STAGE_PATIENCE_MS;
    for (let wait = 500; ; wait = Math.min(wait * 2, 8_000)) {
      if (ended !== undefined) return undefined;
      if (control.stopped()) return { kind: 'stopped' };
      if (control.cancelled() !== undefined) return { kind: 'cancelled' };
      try {
        const put = await transfer.putFile(object.name, record.files[i]!);
        // The file is not what was recorded (lost to a power cut): the broker would refuse it anyway.
        if (put.size !== object.size) return { kind: 'refused', message: `the staged file of "${object.name}" is ${put.size} bytes, not ${object.size}` };
        return undefined;
      } catch (err) {
        if (err instanceof RemoteError && STAGE_REFUSALS.has(err.code)) return { kind: 'refused', message: err.message };
        if (!(err instanceof RemoteError || err instanceof TransportError)) return { kind: 'refused', message: (err as Error).message };
        if (performance.now() + wait > giveUpAt) return { kind: 'unreachable', message: err.message };
        control.retrying(object.name, err);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  };
  const worker = async () => {
    while (ended === undefined && next < record.objects.length) ended = (await one(next++)) ?? ended;
  };
  await Promise.all(Array.from({ length: Math.min(STAGE_PARALLEL, record.objects.length) }, worker));
  return ended ?? { kind: 'staged' };
}
