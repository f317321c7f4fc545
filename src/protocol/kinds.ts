import { arrayOf, bool, bytes, either, literal, num, object, optional, record, str, tuple, uint, type Infer, type Schema } from './schema.js';
import { messageId, nodeId, ROLES } from './names.js';
import { capabilitiesSchema } from './capabilities.js';
import { dataName, jobId, jobPath, JOB_STATES, jobSpecSchema, jobViewSchema, PRIORITIES, RUN_OUTCOMES } from './job.js';
/** HLC time of a write, [wall ms, logical]: the version last-write-wins compares. */
const writtenAt = () => tuple(uint({ max: 2 ** 48 }), uint({ max: 2 ** 32 }));
/**
 * What a broker adds to a write or deletion on its way to a datastore (PROTOCOL.md, "Data versions and
 * owners"): the version the cluster gives it, from the broker's clock; who asked; who owns the name
 * afterwards; and whether it may replace a name someone else owns (an operator, or the broker for a
 * job's own `<jobId>/` tree). A writer never chooses it: a broker refuses a request that carries one.
 */
const writeStamp = () => object({ at: writtenAt(), writer: nodeId(), owner: nodeId(), replace: bool() });
/** The most objects one data reply carries; larger answers are paged. */
const MAX_PAGE = 1_000;
/** The largest object the wire can carry in one message; protocol.max_message_bytes bounds it further. */
const MAX_OBJECT_BYTES = 64 * 1_048_576;
/**
 * Objects larger than one message travel in chunks of at most this many bytes (senders use CHUNK_BYTES);
 * the whole object's SHA-256 is checked at the end.
 */
export const MAX_CHUNK_BYTES = 1_048_576;
/** The chunk size senders use: well below protocol.max_message_bytes with room for the envelope. */
export const CHUNK_BYTES = 262_144;
/** An upload, named by its writer: unique per writer. */
const uploadId = () => str({ pattern: /^[A-Za-z0-9._:-]{1,64}$/ });
/** SHA-256 of a whole object, lowercase hex. */
const digest = () => str({ pattern: /^[0-9a-f]{64}$/ });
/**
 * A result object an executor staged as named data instead of sending it inline (job_result): where, how
 * large and its SHA-256, which the broker has the datastore check before publishing it.
 */
const stagedObject = () => object({ name: dataName(), size: uint(), digest: digest() });
/** A result's bytes: inline, or staged (too large for the job_result message). */
const resultContent = () => either(bytes({ max: MAX_OBJECT_BYTES }), stagedObject());
/** The most objects one result publishes: its archive and up to 1,024 named results. */
export const MAX_RESULT_OBJECTS = 1_025;
/** Records one append carries at most, over all its series. */
export const MAX_APPEND_RECORDS = 20_000;
/** Series in one `data_append` at most. */
export const MAX_APPEND_SERIES = 1_000;
/** A vector clock in a sync record: broker id -> counter, as in the envelope. */
const vectorClock = () => record(nodeId(), uint({ min: 1, max: 2 ** 48 }), { max: 1_024 });
/** Per origin broker, the highest sequence number a broker holds. */
const versionVector = () => record(nodeId(), uint(), { max: 1_024 });
/** A job as brokers replicate it: what clients see plus what it takes to run it again. */
const syncedJob = () => object({ ...jobViewSchema.shape, spec: jobSpecSchema, digest: str({ max: 128 }), after: arrayOf(jobId(), { max: MAX_AFTER }) });
/** The most jobs of its plan one job may wait for. */
export const MAX_AFTER = 1_024;
/** The most changes one sync message carries; more are sent in several. */
export const MAX_SYNC_CHANGES = 500;
/** The most jobs one listing reply carries. */
const MAX_JOB_PAGE = 500;
/**
 * Where a job listing goes on: the `next` of the previous page, opaque to clients. The broker writes
 * `a` (unfinished) or `f` (finished), a 15-digit time and a job id.
 */
const pageCursor = () => str({ pattern: /^[af][0-9]{15}:[A-Za-z0-9._-]{1,128}$/, rule: 'a page cursor is the `next` of the previous job listing' });

const text = (max: number) => str({ max });
const bridgeStatus = object({
  field_connected: bool(),
  buffer: object({ records: uint(), bytes: uint(), backlog: uint(), oldest_ms: optional(uint()), dropped_bytes: uint(), dropped_age: uint() }),
  forwarded: object({ stored: uint(), duplicate: uint(), outside_retention: uint(), batches: uint(), failures: uint(), drained: uint(), drain_ms: uint() }),
  bad_payloads: arrayOf(object({ device: text(512), topic: text(1_024), reason: text(32), count: uint(), last: text(256) }), { max: 1_000 }),
  edge_nodes: arrayOf(
    object({ group: text(256), node: text(256), state: literal('online', 'offline'), bd_seq: optional(uint()), seq_gaps: uint(), stale_deaths_ignored: uint(), rebirths_requested: uint(), offline_devices: arrayOf(text(256), { max: 1_000 }) }),
    { max: 1_000 },
  ),
  commands: arrayOf(
    object({ job_id: text(128), device: text(512), topic: text(1_024), state: literal('published', 'acked', 'timed_out', 'failed'), at: uint(), ms: optional(uint()), detail: optional(text(256)) }),
    { max: 100 },
  ),
});
export type BridgeStatus = Infer<typeof bridgeStatus>;

/**
 * Every message kind and the shape of its body. Adding a kind here is the only way to put a new message on
 * the wire: the decoder refuses kinds it does not know.
 */
export const BODY_SCHEMAS = {
  /** Retained on ucp/<c>/presence/<node> when a node connects. */
  birth: object({
    software: str({ max: 64 }),
    host: str({ max: 255 }),
    pid: uint(),
    /** Milliseconds between heartbeats, so observers know how soon silence means loss. */
    heartbeat_interval_ms: uint({ min: 1 }),
  }),
  /** The MQTT last will (graceful: false) or a clean shutdown (graceful: true); same topic as the birth. */
  death: object({
    graceful: bool(),
  }),
  heartbeat: object({
    seq: uint(),
    uptime_ms: uint(),
    rss_bytes: uint(),
    /** One-minute load average divided by cores: 1.0 means every core is busy. */
    load: num({ min: 0, max: 1_000 }),
    outbox_pending: uint(),
    /** Executors: what they offer now. */
    capabilities: optional(capabilitiesSchema),
    /** Executors: the jobs they are running. */
    running_jobs: optional(arrayOf(jobId(), { max: 4_096 })),
    /** Executors: jobs whose result they sent and the broker has not acknowledged yet. */
    reporting_jobs: optional(arrayOf(jobId(), { max: 4_096 })),
    /** Executors: how many jobs they run at once. */
    job_slots: optional(uint({ max: 4_096 })),
    /** Datastores: bytes free for data. */
    free_bytes: optional(uint()),
  }),
  /** Application-level acknowledgement of a message sent with `ack: true`. */
  ack: object({
    of: messageId(),
  }),
  ping: object({
    data: optional(bytes({ max: 1 << 20 })),
  }),
  pong: object({
    data: optional(bytes({ max: 1 << 20 })),
  }),
  status_request: object({}),
  status: object({
    software: str({ max: 64 }),
    uptime_ms: uint(),
    outbox_pending: uint(),
    peers: arrayOf(
      object({ id: nodeId(), role: literal(...ROLES), incarnation: uint(), alive: bool() }),
      { max: 10_000 },
    ),
    counters: record(str({ max: 64 }), uint(), { max: 256 }),
    /** How long recent operations took, per kind: brokers time their result decisions, commit included. */
    timings: optional(record(str({ max: 64 }), object({ count: uint(), p50_ms: num({ min: 0 }), p99_ms: num({ min: 0 }), max_ms: num({ min: 0 }) }), { max: 32 })),
    /** Firmware bridges: their field side, buffer, bad device payloads, Sparkplug edge nodes, commands. */
    bridge: optional(bridgeStatus),
  }),
  /** An operator notice, delivered durably: e.g. "evacuate sector 4, move units to depot B". */
  notice: object({
    severity: literal('info', 'warning', 'critical'),
    text: str({ min: 1, max: 4_096 }),
  }),
  /**
   * Named data. Clients and executors send these to a broker, which routes them to a datastore; brokers
   * send the same kinds on to datastores.
   */
  data_put: object({
    name: dataName(),
    bytes: bytes({ max: MAX_OBJECT_BYTES }),
    /** Broker -> datastore only. */
    stamp: optional(writeStamp()),
  }),
  data_put_result: object({
    name: dataName(),
    outcome: literal('stored', 'unchanged', 'stale'),
    store: nodeId(),
  }),
  /** One name, or with `prefix` the name and everything below it, a page at a time. */
  data_get: object({
    name: dataName(),
    prefix: bool(),
    limit: uint({ min: 1, max: MAX_PAGE }),
    after: optional(dataName()),
  }),
  /**
   * With `size`, the object is larger than one message: `bytes` is empty and the object is read with
   * data_read.
   */
  data_items: object({
    items: arrayOf(object({ name: dataName(), bytes: bytes({ max: MAX_OBJECT_BYTES }), at: writtenAt(), writer: nodeId(), size: optional(uint()) }), { max: MAX_PAGE }),
    next: optional(dataName()),
  }),
  /**
   * One chunk of an upload, in order from index 0. The last chunk carries the whole object's size, its
   * SHA-256 and the version of the write; only then is the object stored, replacing the name atomically.
   */
  data_write: object({
    upload: uploadId(),
    name: dataName(),
    index: uint({ max: 2 ** 32 }),
    bytes: bytes({ max: MAX_CHUNK_BYTES }),
    last: optional(object({ size: uint(), digest: digest(), stamp: optional(writeStamp()) })),
  }),
  /** Reply to a chunk that was not the last: received and kept. */
  data_written: object({
    upload: uploadId(),
    index: uint({ max: 2 ** 32 }),
  }),
  /**
   * A piece of a name from position `from`: a byte offset into an object, a record sequence number into
   * a series. The reply is a data_chunk with at most `max_bytes` (a series: at least one record).
   */
  data_read: object({
    name: dataName(),
    from: uint(),
    max_bytes: uint({ min: 1, max: MAX_CHUNK_BYTES }),
  }),
  /**
   * `next` is where to read on from, absent at the end. `digest` (objects, not series) is the SHA-256 of
   * the whole object; a reader seeing another `at`/`writer` than before knows the object was replaced.
   */
  data_chunk: object({
    name: dataName(),
    at: writtenAt(),
    writer: nodeId(),
    size: uint(),
    series: bool(),
    digest: optional(digest()),
    from: uint(),
    bytes: bytes({ max: MAX_CHUNK_BYTES }),
    next: optional(uint()),
  }),
  /**
   * Records appended to series (a name whose content is its records in sequence order). A record whose
   * sequence number is already stored, or falls outside the series' retention, is skipped: a repeated
   * append stores nothing twice, in whatever order appends arrive. `keep_last` and `before_t` (drop
   * records whose time `t` is older, ms) are the retention the writer wants applied.
   */
  data_append: object({
    series: arrayOf(
      object({
        name: dataName(),
        records: arrayOf(object({ seq: uint(), t: uint({ max: 2 ** 48 }), line: bytes({ max: 65_536 }) }), { max: MAX_APPEND_RECORDS }),
        keep_last: optional(uint({ min: 1 })),
        before_t: optional(uint({ max: 2 ** 48 })),
      }),
      { max: MAX_APPEND_SERIES },
    ),
    /** Broker -> datastore only. */
    stamp: optional(writeStamp()),
  }),
  data_appended: object({
    results: arrayOf(
      object({
        name: dataName(),
        /** not_owner: the series belongs to another node; nothing was stored. */
        outcome: literal('appended', 'not_series', 'not_owner'),
        stored: uint(),
        duplicate: uint(),
        outside_retention: uint(),
        size: uint(),
        store: nodeId(),
      }),
      { max: 1_000 },
    ),
  }),
  /**
   * Broker -> datastore: rename objects held here (a job's staged results to their published names),
   * each only if it is `size` bytes with SHA-256 `digest`. Every move is checked before any is made, and
   * all are made in one transaction at version (`at`, `writer`). A move whose source is gone but whose
   * target already holds that content was made before (a repeated request): it is `unchanged`.
   */
  data_move: object({
    moves: arrayOf(object({ from: dataName(), to: dataName(), size: uint(), digest: digest() }), { min: 1, max: MAX_RESULT_OBJECTS }),
    at: writtenAt(),
    writer: nodeId(),
    /** Whose the published names are (the job's submitter); absent: the writer's. */
    owner: optional(nodeId()),
  }),
  data_moved: object({
    results: arrayOf(object({ to: dataName(), outcome: literal('stored', 'unchanged', 'stale') }), { max: MAX_RESULT_OBJECTS }),
    store: nodeId(),
  }),
  /** Names (not bytes) at or below `prefix`, or all names. */
  data_list: object({
    prefix: optional(dataName()),
    limit: uint({ min: 1, max: MAX_PAGE }),
    after: optional(dataName()),
  }),
  data_listing: object({
    items: arrayOf(object({ name: dataName(), size: uint(), store: nodeId(), at: writtenAt(), owner: optional(nodeId()) }), { max: MAX_PAGE }),
    next: optional(dataName()),
  }),
  /** Deletes one name, or (with job_id) a job's data except its result archive. */
  data_delete: object({
    name: optional(dataName()),
    job_id: optional(jobId()),
    /** Broker -> datastore only. */
    stamp: optional(writeStamp()),
  }),
  data_deleted: object({
    count: uint(),
  }),
  /**
   * Jobs. A client submits each job to a broker with a request; the reply comes once the broker has
   * recorded it durably. The broker assigns it to an executor (durable), the executor reports that it
   * started and then its result (durable), and the broker decides which result is accepted.
   */
  job_submit: object({
    spec: jobSpecSchema,
    /**
     * Jobs of the same plan whose named results this job reads: it waits for their accepted results (of
     * this run, not whatever version of the names exists), and fails if one of them fails.
     */
    after: arrayOf(jobId(), { max: MAX_AFTER }),
  }),
  /** Reply to job_submit. `created` is false when the same job was already known (a retried submit). */
  job_accepted: object({
    job: jobViewSchema,
    created: bool(),
  }),
  /** Broker -> executor, durable: run this attempt of the job. */
  job_assign: object({
    attempt: uint({ min: 1 }),
    spec: jobSpecSchema,
    /** The version of each input the broker knows, so an executor can reuse a copy it already holds. */
    versions: record(dataName(), writtenAt(), { max: 1_100 }),
  }),
  /** Executor -> broker: the attempt is staged and running. */
  job_started: object({
    job_id: jobId(),
    attempt: uint({ min: 1 }),
  }),
  /**
   * Executor -> broker, durable: how the attempt ended, with its result archive and named results, each
   * inline or, when the whole would not fit in one message, staged under the attempt's staging prefix.
   */
  job_result: object({
    job_id: jobId(),
    attempt: uint({ min: 1 }),
    outcome: literal(...RUN_OUTCOMES),
    exit_code: optional(uint({ max: 2 ** 32 })),
    message: str({ max: 2_048 }),
    duration_ms: uint(),
    archive: resultContent(),
    files: arrayOf(jobPath(), { max: 4_096 }),
    missing: arrayOf(jobPath(), { max: 1_024 }),
    named: arrayOf(object({ path: jobPath(), name: dataName(), bytes: resultContent() }), { max: MAX_RESULT_OBJECTS - 1 }),
  }),
  /**
   * Broker -> executor: a job_result was rejected (another attempt was first, or the sender was never
   * assigned it). An accepted result needs no verdict: its acknowledgement says so.
   */
  job_verdict: object({
    job_id: jobId(),
    attempt: uint({ min: 1 }),
    verdict: literal('rejected'),
    accepted_attempt: optional(uint({ min: 1 })),
    reason: str({ max: 1_024 }),
  }),
  /** Broker -> executor: stop this attempt (another attempt's result was accepted); no result is wanted. */
  job_cancel: object({
    job_id: jobId(),
    attempt: uint({ min: 1 }),
    reason: str({ max: 1_024 }),
  }),
  /** Broker -> owning client: the job changed state. Final updates of small results carry the archive. */
  job_update: object({
    job: jobViewSchema,
    archive: optional(bytes({ max: MAX_OBJECT_BYTES })),
  }),
  job_query: object({
    job_id: jobId(),
  }),
  /** Client -> broker: the submitter cancels its job, queued or running. The reply is job_info. */
  job_withdraw: object({
    job_id: jobId(),
  }),
  job_info: object({
    job: jobViewSchema,
  }),
  /**
   * Client -> broker: remove a job, or every job of `owner`, from the cluster: an unfinished one is stopped
   * first. Its submitter may remove its own jobs; an operator anyone's. The reply is job_removed.
   */
  job_remove: object({
    job_id: optional(jobId()),
    owner: optional(nodeId()),
  }),
  job_removed: object({
    count: uint(),
  }),
  /**
   * Jobs a page at a time, newest first: the unfinished ones (newest submitted first), then the finished
   * ones (latest finished first). With `owner`, only that client's; with `receiver`, only those whose result
   * goes to that client (it submitted them, or is one of their receivers); with `states`, only jobs in one
   * of them; with `since` (ms since the epoch, broker time), only jobs not yet finished at that time. A page
   * may hold fewer than `limit` items and still carry `next`: the broker bounds the work of one page.
   */
  job_list: object({
    limit: uint({ min: 1, max: MAX_JOB_PAGE }),
    after: optional(pageCursor()),
    owner: optional(nodeId()),
    receiver: optional(nodeId()),
    states: optional(arrayOf(literal(...JOB_STATES), { min: 1, max: JOB_STATES.length })),
    since: optional(uint({ max: 2 ** 48 })),
  }),
  job_listing: object({
    items: arrayOf(
      object({
        job_id: jobId(),
        state: literal(...JOB_STATES),
        priority: literal(...PRIORITIES),
        owner: nodeId(),
        attempts: uint(),
        executor: optional(nodeId()),
        updated_at: uint({ max: 2 ** 48 }),
        reason: optional(str({ max: 2_048 })),
      }),
      { max: MAX_JOB_PAGE },
    ),
    next: optional(pageCursor()),
  }),
  /**
   * Broker metadata sync. Every change to a replicated record (a job, a name's location) is stamped with
   * its origin broker, that broker's sequence number, its vector clock and HLC time. Changes are pushed
   * to peer brokers at once; `sync_digest` asks a peer for whatever the asker's version vector lacks,
   * and is answered with a `sync_delta`.
   */
  sync_delta: object({
    changes: arrayOf(
      object({
        table: literal('jobs', 'names', 'nodes'),
        key: str({ min: 1, max: 512 }),
        origin: nodeId(),
        seq: uint({ min: 1 }),
        vc: vectorClock(),
        hlc: writtenAt(),
        /** jobs: the record. */
        job: optional(syncedJob()),
        /**
         * names: where the data is; absent when the name was deleted. `inline`: the bytes are not on a
         * datastore but in the record of the job the name belongs to (a small result archive).
         */
        location: optional(object({ store: nodeId(), size: uint(), at: writtenAt(), owner: optional(nodeId()), inline: optional(bool()) })),
        /** nodes (key `<origin broker>/<node>`): an executor or datastore as the origin broker sees it. */
        peer: optional(
          object({
            node_id: nodeId(),
            role: literal('executor', 'datastore'),
            alive: bool(),
            capabilities: optional(capabilitiesSchema),
            job_slots: optional(uint({ max: 4_096 })),
          }),
        ),
      }),
      { max: MAX_SYNC_CHANGES },
    ),
    /** The sender's version vector: with `complete`, the asker holds everything up to it afterwards. */
    versions: versionVector(),
    complete: bool(),
  }),
  sync_digest: object({
    versions: versionVector(),
  }),
  /**
   * Broker -> broker: take over this job, which no executor the sender can reach is able to run. The
   * receiver takes it (reply job_accepted) if an executor it sees satisfies the job, or refuses (error).
   */
  job_delegate: object({
    job: syncedJob(),
  }),
  /** The reply to a request that could not be served. */
  error: object({
    code: str({ max: 64 }),
    message: str({ max: 1_024 }),
  }),
} satisfies Record<string, Schema<unknown>>;

export type Kind = keyof typeof BODY_SCHEMAS;
export type StagedObject = Infer<ReturnType<typeof stagedObject>>;
export type BodyOf<K extends Kind> = Infer<(typeof BODY_SCHEMAS)[K]>;
export const KINDS = Object.keys(BODY_SCHEMAS) as Kind[];

export function isKind(value: unknown): value is Kind {
  return typeof value === 'string' && Object.hasOwn(BODY_SCHEMAS, value);
}
