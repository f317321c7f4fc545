/**
 * The configuration schema: one declarative table of every key, its type and its constraints.
 *
 * Defaults deliberately do not live here. They are read from `config/default.toml`, which is also
 * the user-facing documentation, so the two cannot drift apart; a unit test checks that this table
 * and that file name exactly the same keys.
 *
 * To add a key: add it to CONFIG_SCHEMA below, add it with a comment (meaning and unit) to
 * `config/default.toml`, and add it to the matching interface further down. The compile-time check
 * at the bottom of this file fails if the interface and the table disagree.
 */
import { CLUSTER_PATTERN, NODE_ID_PATTERN } from '../protocol/names.js';
import { MAX_METADATA_ARCHIVE_BYTES } from '../protocol/job.js';

/** Value types a key can have. `string[]` is a TOML array of strings (comma-separated in env/flags). */
export type KeyType = 'string' | 'integer' | 'number' | 'boolean' | 'string[]';

interface BaseSpec {
  /** Optional short description; when absent, tools use the comment above the key in default.toml. */
  readonly doc?: string;
  /** Never echo the value in error messages (passwords, tokens). */
  readonly secret?: boolean;
}

/**
 * "Must be >= factor * <other key>", checked after all layers are merged, because either side may
 * come from a different layer.
 */
export interface AtLeastRef {
  readonly key: string;
  readonly factor?: number;
}

export interface StringSpec extends BaseSpec {
  readonly type: 'string';
  readonly enum?: readonly string[];
  readonly pattern?: RegExp;
  /** How to phrase `pattern`/`check` in an error ("must be <hint>"). */
  readonly hint?: string;
  /** For rules a regex cannot express; returns why the value is invalid, or undefined if it is fine. */
  readonly check?: (value: string) => string | undefined;
}

export interface IntegerSpec extends BaseSpec {
  readonly type: 'integer';
  readonly min?: number;
  readonly max?: number;
  readonly atLeast?: AtLeastRef;
}

export interface NumberSpec extends BaseSpec {
  readonly type: 'number';
  readonly min?: number;
  readonly max?: number;
  readonly atLeast?: AtLeastRef;
}

export interface BooleanSpec extends BaseSpec {
  readonly type: 'boolean';
}

export interface StringArraySpec extends BaseSpec {
  readonly type: 'string[]';
  /** Every item must match. */
  readonly itemPattern?: RegExp;
  /** How to phrase `itemPattern` in an error ("each <hint>"). */
  readonly hint?: string;
  readonly minItems?: number;
  readonly maxItems?: number;
}

export type KeySpec = StringSpec | IntegerSpec | NumberSpec | BooleanSpec | StringArraySpec;

export type ConfigSchema = Readonly<Record<string, Readonly<Record<string, KeySpec>>>>;

function mqttUrlProblem(value: string): string | undefined {
  try {
    const url = new URL(value);
    return url.hostname === '' ? 'the URL has no host' : undefined;
  } catch {
    return 'not a valid URL';
  }
}

export const CONFIG_SCHEMA = {
  node: {
    id: {
      type: 'string',
      // The wire's own rule, so an id the config accepts is never refused by the protocol.
      check: (value: string) => (value === '' || NODE_ID_PATTERN.test(value) ? undefined : 'not a valid node id'),
      hint: 'empty or 1-64 characters from A-Z a-z 0-9 . _ -, not starting with "__"',
    },
    cluster: {
      type: 'string',
      pattern: CLUSTER_PATTERN,
      hint: '1-64 characters from A-Z a-z 0-9 _ -',
    },
    broker: { type: 'string', pattern: /^$|^(?!__)[A-Za-z0-9._-]{1,128}$/, hint: 'empty, or a broker node id' },
    broker_eligible: { type: 'boolean' },
    data_dir: { type: 'string' },
  },
  hub: {
    url: {
      type: 'string',
      pattern: /^mqtts?:\/\/\S+$/,
      hint: 'a URL starting with mqtt:// or mqtts://, e.g. mqtt://127.0.0.1:1883',
      check: mqttUrlProblem,
    },
    listen_host: {
      type: 'string',
      pattern: /^\S+$/,
      hint: 'a non-empty host name or IP address',
    },
    port: { type: 'integer', min: 0, max: 65535 },
    password: { type: 'string', secret: true },
    credentials_file: { type: 'string' },
    max_retained_bytes: { type: 'integer', min: 256, max: 1048576 },
    tls_cert_file: { type: 'string' },
    tls_key_file: { type: 'string' },
    tls_client_ca_file: { type: 'string' },
  },
  tls: {
    ca_file: { type: 'string' },
    cert_file: { type: 'string' },
    key_file: { type: 'string' },
  },
  log: {
    level: { type: 'string', enum: ['auto', 'trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] },
    format: { type: 'string', enum: ['auto', 'json', 'pretty'] },
  },
  protocol: {
    max_message_bytes: { type: 'integer', min: 256, max: 67108864 },
    max_depth: { type: 'integer', min: 4, max: 256 },
    max_clock_offset_ms: { type: 'integer', min: 0 },
  },
  transport: {
    keepalive_s: { type: 'integer', min: 1, max: 3600 },
    connect_timeout_ms: { type: 'integer', min: 100 },
    reconnect_min_ms: { type: 'integer', min: 10 },
    reconnect_max_ms: { type: 'integer', min: 10, atLeast: { key: 'transport.reconnect_min_ms' } },
    request_timeout_ms: { type: 'integer', min: 10 },
    dedup_window: { type: 'integer', min: 100, max: 10000000 },
    dedup_ttl_s: { type: 'integer', min: 60 },
  },
  outbox: {
    retry_initial_ms: { type: 'integer', min: 10 },
    retry_max_ms: { type: 'integer', min: 10, atLeast: { key: 'outbox.retry_initial_ms' } },
  },
  store: {
    sync: { type: 'string', enum: ['commit', 'flush'] },
  },
  datastore: {
    max_object_bytes: { type: 'integer', min: 1, max: 1099511627776 },
  },
  executor: {
    tags: { type: 'string[]', itemPattern: /^[A-Za-z0-9._:-]{1,64}$/, hint: '1-64 characters from A-Z a-z 0-9 . _ : -', maxItems: 64 },
    slots: { type: 'integer', min: 0, max: 256 },
    keep_job_dirs: { type: 'boolean' },
    max_memory_mb: { type: 'integer', min: 1, max: 4096 },
    max_output_mb: { type: 'integer', min: 1, max: 65536 },
    max_result_mb: { type: 'integer', min: 1, max: 65536 },
    max_job_seconds: { type: 'integer', min: 1, max: 604800 },
    max_files: { type: 'integer', min: 16, max: 10000000 },
    sandbox_idle_s: { type: 'integer', min: 0, max: 86400 },
  },
  jobs: {
    retention_s: { type: 'integer', min: 1, max: 31536000 },
    retention_count: { type: 'integer', min: 1, max: 100000000 },
  },
  scheduler: {
    aging_s: { type: 'integer', min: 1 },
    inline_result_bytes: { type: 'integer', min: 0, max: 67108864 },
    metadata_archive_bytes: { type: 'integer', min: 0, max: MAX_METADATA_ARCHIVE_BYTES },
    max_redeploy_attempts: { type: 'integer', min: 0, max: 100 },
    redeploy_delay_ms: { type: 'integer', min: 0 },
    delegate_after_ms: { type: 'integer', min: 0 },
    deadline_margin_s: { type: 'integer', min: 0, max: 86400 },
  },
  metadata_sync: {
    interval_s: { type: 'integer', min: 1, max: 86400 },
    retry_on_failure: { type: 'boolean' },
    failure_retry_interval_s: { type: 'integer', min: 1, max: 86400 },
  },
  client: {
    priority: { type: 'string', enum: ['low', 'normal', 'high', 'critical'] },
    timeout_s: { type: 'integer', min: 1, max: 604800 },
    max_memory_mb: { type: 'integer', min: 1, max: 4096 },
    broker_wait_s: { type: 'integer', min: 0, max: 86400 },
    operator: { type: 'boolean' },
  },
  bridge: {
    field_url: {
      type: 'string',
      pattern: /^mqtts?:\/\/\S+$/,
      hint: 'a URL starting with mqtt:// or mqtts://, e.g. mqtt://127.0.0.1:1884',
      check: mqttUrlProblem,
    },
    field_username: { type: 'string' },
    field_password: { type: 'string', secret: true },
    field_client_id: {
      type: 'string',
      pattern: /^[^\s+#/]{0,128}$/,
      hint: 'at most 128 characters without spaces, "+", "#" or "/" (empty: "<node id>.field")',
    },
    field_mqtt_version: { type: 'string', enum: ['3.1.1', '5'] },
    field_session_expiry_s: { type: 'integer', min: 0, max: 4294967295 },
    max_payload_bytes: { type: 'integer', min: 16, max: 67108864 },
    buffer_max_bytes: { type: 'integer', min: 65536, max: 1099511627776 },
    buffer_max_age_s: { type: 'integer', min: 1 },
    batch_records: { type: 'integer', min: 1, max: 20000 },
    batch_bytes: { type: 'integer', min: 1024, max: 67108864 },
    appends_in_flight: { type: 'integer', min: 1, max: 64 },
    drain_rate: { type: 'integer', min: 1 },
    rebirth_interval_s: { type: 'integer', min: 0, max: 86400 },
  },
  budgets: {
    max_jobs_per_client: { type: 'integer', min: 1, max: 1000000 },
    max_bytes_per_client: { type: 'integer', min: 1 },
  },
  liveness: {
    heartbeat_interval_ms: { type: 'integer', min: 50 },
    // Two intervals: one missed heartbeat (a GC pause, a slow link) must not declare a node dead.
    dead_after_ms: {
      type: 'integer',
      min: 100,
      atLeast: { key: 'liveness.heartbeat_interval_ms', factor: 2 },
    },
    promote_after_ms: { type: 'integer', min: 0 },
  },
} as const satisfies ConfigSchema;

export type Schema = typeof CONFIG_SCHEMA;
export type SectionName = keyof Schema & string;

/** Every key in dotted form, e.g. "hub.url". */
export type ConfigKey = {
  [S in SectionName]: `${S}.${keyof Schema[S] & string}`;
}[SectionName];

/**
 * Short env names kept for convenience and compatibility with the CLI docs; the long
 * UCP_<SECTION>_<KEY> names always work too.
 */
export const ENV_ALIASES: Readonly<Record<string, ConfigKey>> = {
  UCP_HUB: 'hub.url',
  UCP_CLUSTER: 'node.cluster',
  UCP_DATA_DIR: 'node.data_dir',
  UCP_NODE_ID: 'node.id',
  UCP_LOG_LEVEL: 'log.level',
};

/**
 * UCP_* variables that are not config keys but are legitimately set. Everything else starting with
 * UCP_ must map to a key, so that a typo fails loudly instead of silently using a default.
 */
export const NON_CONFIG_ENV_VARS: ReadonlySet<string> = new Set(['UCP_CONFIG']);

/** The long env variable name for a key: hub.url -> UCP_HUB_URL. */
export function envVarName(key: string): string {
  return `UCP_${key.replace('.', '_').toUpperCase()}`;
}

// ---------------------------------------------------------------------------------------------
// Typed view of the loaded configuration.

export type LogLevel = Schema['log']['level']['enum'][number];
export type LogFormat = Schema['log']['format']['enum'][number];
export type StoreSyncMode = Schema['store']['sync']['enum'][number];

export interface NodeConfig {
  readonly id: string;
  readonly cluster: string;
  readonly broker: string;
  readonly broker_eligible: boolean;
  readonly data_dir: string;
}

export interface HubConfig {
  readonly url: string;
  readonly listen_host: string;
  readonly port: number;
  readonly password: string;
  readonly credentials_file: string;
  readonly max_retained_bytes: number;
  readonly tls_cert_file: string;
  readonly tls_key_file: string;
  readonly tls_client_ca_file: string;
}

export interface TlsConfig {
  readonly ca_file: string;
  readonly cert_file: string;
  readonly key_file: string;
}

export interface LogConfig {
  readonly level: LogLevel;
  readonly format: LogFormat;
}

export interface ProtocolConfig {
  readonly max_message_bytes: number;
  readonly max_depth: number;
  readonly max_clock_offset_ms: number;
}

export interface TransportConfig {
  readonly keepalive_s: number;
  readonly connect_timeout_ms: number;
  readonly reconnect_min_ms: number;
  readonly reconnect_max_ms: number;
  readonly request_timeout_ms: number;
  readonly dedup_window: number;
  readonly dedup_ttl_s: number;
}

export interface OutboxConfig {
  readonly retry_initial_ms: number;
  readonly retry_max_ms: number;
}

export interface ExecutorConfig {
  readonly tags: readonly string[];
  readonly slots: number;
  readonly keep_job_dirs: boolean;
  readonly max_memory_mb: number;
  readonly max_output_mb: number;
  readonly max_result_mb: number;
  readonly max_job_seconds: number;
  readonly max_files: number;
  readonly sandbox_idle_s: number;
}

export interface JobsConfig {
  readonly retention_s: number;
  readonly retention_count: number;
}

export interface SchedulerConfig {
  readonly aging_s: number;
  readonly inline_result_bytes: number;
  readonly metadata_archive_bytes: number;
  readonly max_redeploy_attempts: number;
  readonly redeploy_delay_ms: number;
  readonly delegate_after_ms: number;
  readonly deadline_margin_s: number;
}

export interface MetadataSyncConfig {
  readonly interval_s: number;
  readonly retry_on_failure: boolean;
  readonly failure_retry_interval_s: number;
}

export interface ClientConfig {
  readonly priority: 'low' | 'normal' | 'high' | 'critical';
  readonly timeout_s: number;
  readonly max_memory_mb: number;
  readonly broker_wait_s: number;
  readonly operator: boolean;
}

export interface DatastoreConfig {
  readonly max_object_bytes: number;
}

export interface StoreConfig {
  readonly sync: StoreSyncMode;
}

export interface BridgeConfig {
  readonly field_url: string;
  readonly field_username: string;
  readonly field_password: string;
  readonly field_client_id: string;
  readonly field_mqtt_version: '3.1.1' | '5';
  readonly field_session_expiry_s: number;
  readonly max_payload_bytes: number;
  readonly buffer_max_bytes: number;
  readonly buffer_max_age_s: number;
  readonly batch_records: number;
  readonly batch_bytes: number;
  readonly appends_in_flight: number;
  readonly drain_rate: number;
  readonly rebirth_interval_s: number;
}

export interface BudgetsConfig {
  readonly max_jobs_per_client: number;
  readonly max_bytes_per_client: number;
}

export interface LivenessConfig {
  readonly heartbeat_interval_ms: number;
  readonly dead_after_ms: number;
  readonly promote_after_ms: number;
}

/** The merged, validated, deeply frozen configuration. Keys are snake_case exactly as in TOML. */
export interface UcpConfig {
  readonly node: NodeConfig;
  readonly hub: HubConfig;
  readonly tls: TlsConfig;
  readonly log: LogConfig;
  readonly protocol: ProtocolConfig;
  readonly transport: TransportConfig;
  readonly outbox: OutboxConfig;
  readonly store: StoreConfig;
  readonly datastore: DatastoreConfig;
  readonly executor: ExecutorConfig;
  readonly jobs: JobsConfig;
  readonly scheduler: SchedulerConfig;
  readonly metadata_sync: MetadataSyncConfig;
  readonly client: ClientConfig;
  readonly bridge: BridgeConfig;
  readonly budgets: BudgetsConfig;
  readonly liveness: LivenessConfig;
}

/** The value type a spec describes. */
export type ValueOfSpec<S> = S extends { readonly type: 'string'; readonly enum: readonly (infer E)[] }
  ? E
  : S extends { readonly type: 'string' }
    ? string
    : S extends { readonly type: 'integer' | 'number' }
      ? number
      : S extends { readonly type: 'boolean' }
        ? boolean
        : S extends { readonly type: 'string[]' }
          ? readonly string[]
          : never;

/** The configuration type implied by a schema table. */
export type ConfigFromSchema<T> = {
  readonly [S in keyof T]: { readonly [K in keyof T[S]]: ValueOfSpec<T[S][K]> };
};

// Compile-time guard: the hand-written interfaces (kept for readable hovers and docs) must match the
// table exactly, so adding a key in one place and forgetting the other fails `tsc`.
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Flatten<T> = { [S in keyof T]: { [K in keyof T[S]]: T[S][K] } };
const schemaMatchesInterface: Equals<Flatten<UcpConfig>, Flatten<ConfigFromSchema<Schema>>> = true;
void schemaMatchesInterface;
