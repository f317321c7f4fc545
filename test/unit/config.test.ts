import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { parse } from 'smol-toml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CONFIG_SCHEMA,
  ConfigError,
  DEFAULT_CONFIG_FILE,
  ENV_ALIASES,
  configFileFromEnv,
  describeConfig,
  envVarName,
  loadConfig,
  validateConfigValue,
  type KeySpec,
  type UcpConfig,
} from '../../src/config/index.js';

const EXPECTED_DEFAULTS: UcpConfig = {
  node: { id: '', cluster: 'default', broker: '', broker_eligible: false, data_dir: '' },
  hub: {
    url: 'mqtt://127.0.0.1:1883',
    listen_host: '127.0.0.1',
    port: 1883,
    password: '',
    credentials_file: '',
    max_retained_bytes: 4096,
    tls_cert_file: '',
    tls_key_file: '',
    tls_client_ca_file: '',
  },
  tls: { ca_file: '', cert_file: '', key_file: '' },
  log: { level: 'auto', format: 'auto' },
  protocol: { max_message_bytes: 1048576, max_depth: 32, max_clock_offset_ms: 300000 },
  transport: {
    keepalive_s: 5,
    connect_timeout_ms: 5000,
    reconnect_min_ms: 100,
    reconnect_max_ms: 5000,
    request_timeout_ms: 5000,
    dedup_window: 10000,
    dedup_ttl_s: 86400,
  },
  outbox: { retry_initial_ms: 500, retry_max_ms: 30000 },
  store: { sync: 'commit' },
  datastore: { max_object_bytes: 268435456 },
  executor: { tags: [], slots: 0, keep_job_dirs: false, max_memory_mb: 1024, max_output_mb: 64, max_result_mb: 64, max_job_seconds: 86400, max_files: 10000, sandbox_idle_s: 60 },
  jobs: { retention_s: 86400, retention_count: 10000 },
  scheduler: { aging_s: 60, inline_result_bytes: 65536, metadata_archive_bytes: 1024, max_redeploy_attempts: 3, redeploy_delay_ms: 0, delegate_after_ms: 2000, deadline_margin_s: 60 },
  metadata_sync: { interval_s: 5, retry_on_failure: true, failure_retry_interval_s: 2 },
  client: { priority: 'normal', timeout_s: 300, max_memory_mb: 256, broker_wait_s: 30, operator: false },
  bridge: {
    field_url: 'mqtt://127.0.0.1:1884',
    field_username: '',
    field_password: '',
    field_client_id: '',
    field_mqtt_version: '3.1.1',
    field_session_expiry_s: 86400,
    max_payload_bytes: 65536,
    buffer_max_bytes: 268435456,
    buffer_max_age_s: 86400,
    batch_records: 20000,
    batch_bytes: 524288,
    appends_in_flight: 4,
    drain_rate: 100000,
    rebirth_interval_s: 5,
  },
  budgets: { max_jobs_per_client: 1000, max_bytes_per_client: 1073741824 },
  liveness: { heartbeat_interval_ms: 1000, dead_after_ms: 4000, promote_after_ms: 10000 },
};

let dir: string;
let counter = 0;

function tomlFile(text: string): string {
  const path = join(dir, `cfg-${++counter}.toml`);
  writeFileSync(path, text);
  return path;
}

/** Runs fn, asserts it throws a ConfigError, and returns it for message checks. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const error = err as ConfigError;
    expect(error.code).toBe('config_invalid');
    expect(error.message).not.toContain('\n');
    return error;
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ucp-config-test-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('defaults', () => {
  it('come from config/default.toml and match the documented table', () => {
    expect(isAbsolute(DEFAULT_CONFIG_FILE)).toBe(true);
    expect(DEFAULT_CONFIG_FILE.endsWith(join('config', 'default.toml'))).toBe(true);
    expect(existsSync(DEFAULT_CONFIG_FILE)).toBe(true);
    expect(loadConfig({ env: {} })).toEqual(EXPECTED_DEFAULTS);
  });

  it('ignore non-UCP environment variables', () => {
    expect(loadConfig({ env: { PATH: '/bin', HOME: '/root', ucp_hub_url: 'x' } })).toEqual(EXPECTED_DEFAULTS);
  });
});

describe('schema and default.toml agree', () => {
  const tomlText = readFileSync(DEFAULT_CONFIG_FILE, 'utf8');
  const toml = parse(tomlText) as Record<string, Record<string, unknown>>;
  const tomlKeys = Object.entries(toml)
    .flatMap(([section, keys]) => Object.keys(keys).map((key) => `${section}.${key}`))
    .sort();
  const schemaKeys = Object.entries(CONFIG_SCHEMA)
    .flatMap(([section, keys]) => Object.keys(keys).map((key) => `${section}.${key}`))
    .sort();

  it('name exactly the same keys', () => {
    expect(schemaKeys.length).toBeGreaterThan(20);
    expect(tomlKeys).toEqual(schemaKeys);
  });

  it('every key in default.toml has a doc comment', () => {
    const rows = describeConfig();
    expect(rows.map((r) => r.key).sort()).toEqual(schemaKeys);
    for (const row of rows) {
      expect(row.doc.length, `doc comment for ${row.key}`).toBeGreaterThan(10);
    }
  });

  it('describeConfig reports types, defaults and env names', () => {
    const rows = new Map(describeConfig().map((r) => [r.key, r]));
    expect(rows.get('hub.port')).toMatchObject({
      type: 'integer',
      default: 1883,
      env: ['UCP_HUB_PORT'],
      constraint: 'an integer in 0..65535',
    });
    expect(rows.get('hub.url')?.env).toEqual(['UCP_HUB_URL', 'UCP_HUB']);
    expect(rows.get('node.id')?.env).toEqual(['UCP_NODE_ID']);
    expect(rows.get('log.level')?.constraint).toBe('one of auto, trace, debug, info, warn, error, fatal, silent');
    expect(rows.get('liveness.dead_after_ms')?.doc).toMatch(/milliseconds/);
  });
});

describe('layering', () => {
  it('a file overrides defaults and leaves other keys alone', () => {
    const file = tomlFile('[hub]\nurl = "mqtts://hub.example:8883"\n[liveness]\nheartbeat_interval_ms = 200\ndead_after_ms = 800\n');
    const config = loadConfig({ file, env: {} });
    expect(config.hub.url).toBe('mqtts://hub.example:8883');
    expect(config.liveness).toEqual({ heartbeat_interval_ms: 200, dead_after_ms: 800, promote_after_ms: 10000 });
    expect(config.hub.port).toBe(1883);
    expect(config.transport).toEqual(EXPECTED_DEFAULTS.transport);
  });

  it('env overrides the file', () => {
    const file = tomlFile('[hub]\nport = 1999\n[log]\nlevel = "debug"\n');
    const config = loadConfig({ file, env: { UCP_HUB_PORT: '2001' } });
    expect(config.hub.port).toBe(2001);
    expect(config.log.level).toBe('debug');
  });

  it('overrides win over env, coercing strings like env values', () => {
    const file = tomlFile('[hub]\nport = 1999\n');
    const config = loadConfig({
      file,
      env: { UCP_HUB_PORT: '2001', UCP_HUB_URL: 'mqtt://env:1' },
      overrides: { 'hub.port': '2002', 'hub.url': 'mqtt://flag:2', 'transport.keepalive_s': 7, 'node.id': undefined },
    });
    expect(config.hub.port).toBe(2002);
    expect(config.hub.url).toBe('mqtt://flag:2');
    expect(config.transport.keepalive_s).toBe(7);
    // An unset flag (undefined) must not clobber lower layers.
    expect(config.node.id).toBe('');
  });

  it('reads UCP_CONFIG when no file is given, and an explicit file wins over it', () => {
    const fromEnv = tomlFile('[node]\ncluster = "from-env-file"\n');
    const explicit = tomlFile('[node]\ncluster = "explicit"\n');
    expect(configFileFromEnv({ UCP_CONFIG: fromEnv })).toBe(fromEnv);
    expect(configFileFromEnv({ UCP_CONFIG: '' })).toBeUndefined();
    expect(configFileFromEnv({})).toBeUndefined();
    expect(loadConfig({ env: { UCP_CONFIG: fromEnv } }).node.cluster).toBe('from-env-file');
    expect(loadConfig({ file: explicit, env: { UCP_CONFIG: fromEnv } }).node.cluster).toBe('explicit');
  });

  it('aliases set their keys', () => {
    const config = loadConfig({
      env: {
        UCP_HUB: 'mqtt://alias:1884',
        UCP_CLUSTER: 'west',
        UCP_DATA_DIR: '/var/lib/ucp',
        UCP_NODE_ID: 'exec-1',
        UCP_LOG_LEVEL: 'warn',
      },
    });
    expect(config.hub.url).toBe('mqtt://alias:1884');
    expect(config.node).toEqual({ id: 'exec-1', cluster: 'west', broker: '', broker_eligible: false, data_dir: '/var/lib/ucp' });
    expect(config.log.level).toBe('warn');
    expect(Object.keys(ENV_ALIASES).sort()).toEqual(['UCP_CLUSTER', 'UCP_DATA_DIR', 'UCP_HUB', 'UCP_LOG_LEVEL', 'UCP_NODE_ID']);
  });

  it('an alias and its long name must agree', () => {
    expect(loadConfig({ env: { UCP_HUB: 'mqtt://a:1', UCP_HUB_URL: 'mqtt://a:1' } }).hub.url).toBe('mqtt://a:1');
    const error = configError(() => loadConfig({ env: { UCP_HUB: 'mqtt://a:1', UCP_HUB_URL: 'mqtt://b:2' } }));
    expect(error.message).toContain('UCP_HUB and UCP_HUB_URL');
    expect(error.message).toContain('"hub.url"');
  });

  it('every key can be set through its long env name', () => {
    for (const row of describeConfig()) {
      expect(envVarName(row.key)).toBe(`UCP_${row.key.replace('.', '_').toUpperCase()}`);
    }
    const config = loadConfig({ env: { UCP_LIVENESS_DEAD_AFTER_MS: '9000', UCP_TRANSPORT_DEDUP_TTL_S: ' 120 ' } });
    expect(config.liveness.dead_after_ms).toBe(9000);
    expect(config.transport.dedup_ttl_s).toBe(120);
  });
});

describe('unknown keys', () => {
  it('an unknown key in a file names the key, the file and the known keys', () => {
    const file = tomlFile('[liveness]\ndead_after = 10\n');
    const error = configError(() => loadConfig({ file, env: {} }));
    expect(error.message).toBe(
      `unknown config key "liveness.dead_after" in ${file}; known keys in [liveness]: heartbeat_interval_ms, dead_after_ms, promote_after_ms`,
    );
    expect(error.key).toBe('liveness.dead_after');
  });

  it('an unknown section or a key outside any section is an error', () => {
    const section = configError(() => loadConfig({ file: tomlFile('[livenes]\ndead_after_ms = 10\n'), env: {} }));
    expect(section.message).toMatch(/^unknown config section \[livenes\] in .*known sections: node, hub, tls, log/);
    const topLevel = configError(() => loadConfig({ file: tomlFile('port = 1\n'), env: {} }));
    expect(topLevel.message).toMatch(/^unknown config key "port" in .*every key belongs to a section/);
    const nested = configError(() => loadConfig({ file: tomlFile('[hub.tls]\ncert = "x"\n'), env: {} }));
    expect(nested.message).toContain('unknown config key "hub.tls"');
  });

  it('an unknown UCP_ variable names the variable and suggests the right one', () => {
    const error = configError(() => loadConfig({ env: { UCP_HUB_ULR: 'mqtt://x:1' } }));
    expect(error.message).toContain('UCP_HUB_ULR');
    expect(error.message).toContain('did you mean UCP_HUB_URL?');
    expect(error.source).toBe('UCP_HUB_ULR');
    const far = configError(() => loadConfig({ env: { UCP_SOMETHING_ELSE_ENTIRELY: '1' } }));
    expect(far.message).toContain('UCP_SOMETHING_ELSE_ENTIRELY');
  });

  it('an unknown override key names it', () => {
    const error = configError(() => loadConfig({ env: {}, overrides: { 'hub.ulr': 'mqtt://x:1' } }));
    expect(error.message).toBe(
      'unknown config key "hub.ulr" given by override hub.ulr; known keys in [hub]: url, listen_host, port, password, credentials_file, max_retained_bytes, tls_cert_file, tls_key_file, tls_client_ca_file',
    );
    const labelled = configError(() =>
      loadConfig({ env: {}, overrides: { nope: 1 }, overrideSources: { nope: '--nope' } }),
    );
    expect(labelled.message).toMatch(/^unknown config key "nope" given by --nope; keys are written section\.key/);
  });
});

describe('validation', () => {
  it('a bad integer from env names the key, the value and the variable', () => {
    const error = configError(() => loadConfig({ env: { UCP_LIVENESS_DEAD_AFTER_MS: 'abc' } }));
    expect(error.message).toBe(
      'config key "liveness.dead_after_ms" must be an integer >= 100 (got "abc" from UCP_LIVENESS_DEAD_AFTER_MS)',
    );
    expect(error.source).toBe('UCP_LIVENESS_DEAD_AFTER_MS');
    for (const bad of ['12abc', '1.5', '', '0x10', '1e3']) {
      const e = configError(() => loadConfig({ env: { UCP_HUB_PORT: bad } }));
      expect(e.message).toContain(`got ${JSON.stringify(bad)} from UCP_HUB_PORT`);
    }
  });

  it('ranges, enums and patterns are enforced with the source named', () => {
    expect(configError(() => loadConfig({ env: { UCP_HUB_PORT: '65536' } })).message).toBe(
      'config key "hub.port" must be an integer in 0..65535 (got "65536" from UCP_HUB_PORT)',
    );
    expect(loadConfig({ env: { UCP_HUB_PORT: '0' } }).hub.port).toBe(0);
    expect(configError(() => loadConfig({ env: { UCP_LOG_LEVEL: 'loud' } })).message).toBe(
      'config key "log.level" must be one of auto, trace, debug, info, warn, error, fatal, silent (got "loud" from UCP_LOG_LEVEL)',
    );
    expect(configError(() => loadConfig({ env: {}, overrides: { 'log.format': 'xml' } })).message).toContain(
      'one of auto, json, pretty (got "xml" from override log.format)',
    );
    expect(configError(() => loadConfig({ env: { UCP_NODE_ID: 'a/b' } })).message).toContain('"node.id"');
    expect(configError(() => loadConfig({ env: { UCP_NODE_ID: 'x'.repeat(65) } })).message).toContain('1-64');
    expect(loadConfig({ env: { UCP_NODE_ID: 'x'.repeat(64) } }).node.id).toHaveLength(64);
    expect(configError(() => loadConfig({ env: { UCP_CLUSTER: '' } })).message).toContain('"node.cluster"');
    expect(configError(() => loadConfig({ env: { UCP_CLUSTER: 'a.b' } })).message).toContain('from UCP_CLUSTER');
    expect(configError(() => loadConfig({ env: { UCP_HUB: 'http://x:1' } })).message).toContain(
      'must be a URL starting with mqtt:// or mqtts://',
    );
    expect(configError(() => loadConfig({ env: { UCP_HUB_URL: 'mqtt://h:99999' } })).message).toContain(
      'not a valid URL',
    );
    expect(configError(() => loadConfig({ env: { UCP_PROTOCOL_MAX_DEPTH: '3' } })).message).toContain('in 4..256');
    const flag = configError(() =>
      loadConfig({ env: {}, overrides: { 'hub.port': 'x' }, overrideSources: { 'hub.port': '--port' } }),
    );
    expect(flag.message).toBe('config key "hub.port" must be an integer in 0..65535 (got "x" from --port)');
  });

  it('wrong TOML types in a file are errors naming the file', () => {
    const file = tomlFile('[hub]\nport = "1883"\n');
    expect(configError(() => loadConfig({ file, env: {} })).message).toBe(
      `config key "hub.port" must be an integer in 0..65535 (got "1883" from ${file})`,
    );
    const float = tomlFile('[liveness]\nheartbeat_interval_ms = 100.5\n');
    expect(configError(() => loadConfig({ file: float, env: {} })).message).toContain('"liveness.heartbeat_interval_ms"');
    const str = tomlFile('[node]\ncluster = 5\n');
    expect(configError(() => loadConfig({ file: str, env: {} })).message).toContain(`got 5 from ${str}`);
    const section = tomlFile('hub = 1\n');
    expect(configError(() => loadConfig({ file: section, env: {} })).message).toContain('[hub]');
  });

  it('override values that are already typed are checked without coercion', () => {
    expect(configError(() => loadConfig({ env: {}, overrides: { 'hub.port': 1.5 } })).message).toContain(
      'got 1.5 from override hub.port',
    );
    expect(configError(() => loadConfig({ env: {}, overrides: { 'node.id': 5 } })).message).toContain('"node.id"');
  });

  it('secrets are not echoed in errors', () => {
    const file = tomlFile('[hub]\npassword = 12345678\n');
    const error = configError(() => loadConfig({ file, env: {} }));
    expect(error.message).toContain('"hub.password"');
    expect(error.message).toContain('<hidden>');
    expect(error.message).not.toContain('12345678');
  });

  it('a TOML syntax error names the file and the line', () => {
    const file = tomlFile('[hub]\nport = 1883\nurl = \n');
    const error = configError(() => loadConfig({ file, env: {} }));
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/at line 3, column \d+/);
  });

  it('a missing file is an error naming it', () => {
    const missing = join(dir, 'does-not-exist.toml');
    const error = configError(() => loadConfig({ file: missing, env: {} }));
    expect(error.message).toContain(missing);
    expect(error.message).toContain('ENOENT');
    const viaEnv = configError(() => loadConfig({ env: { UCP_CONFIG: missing } }));
    expect(viaEnv.message).toContain('named by UCP_CONFIG');
  });
});

describe('cross-field checks', () => {
  it('dead_after_ms must be at least twice heartbeat_interval_ms, even across layers', () => {
    const file = tomlFile('[liveness]\nheartbeat_interval_ms = 1000\n');
    const error = configError(() => loadConfig({ file, env: { UCP_LIVENESS_DEAD_AFTER_MS: '1500' } }));
    expect(error.message).toBe(
      `config key "liveness.dead_after_ms" must be >= 2 * liveness.heartbeat_interval_ms = 2000 (got 1500 from UCP_LIVENESS_DEAD_AFTER_MS; liveness.heartbeat_interval_ms is 1000 from ${file}); raise liveness.dead_after_ms or lower liveness.heartbeat_interval_ms`,
    );
    // Raising the heartbeat alone can break the rule against the default dead_after_ms.
    expect(configError(() => loadConfig({ env: { UCP_LIVENESS_HEARTBEAT_INTERVAL_MS: '2001' } })).key).toBe(
      'liveness.dead_after_ms',
    );
    expect(
      loadConfig({ env: { UCP_LIVENESS_HEARTBEAT_INTERVAL_MS: '2000' } }).liveness.heartbeat_interval_ms,
    ).toBe(2000);
  });

  it('reconnect_max_ms >= reconnect_min_ms and retry_max_ms >= retry_initial_ms', () => {
    expect(
      configError(() => loadConfig({ env: {}, overrides: { 'transport.reconnect_min_ms': 6000 } })).message,
    ).toMatch(/^config key "transport.reconnect_max_ms" must be >= transport.reconnect_min_ms = 6000 \(got 5000 from /);
    const equal = loadConfig({ env: {}, overrides: { 'transport.reconnect_min_ms': 5000 } });
    expect(equal.transport.reconnect_min_ms).toBe(equal.transport.reconnect_max_ms);
    expect(configError(() => loadConfig({ env: { UCP_OUTBOX_RETRY_MAX_MS: '499' } })).key).toBe('outbox.retry_max_ms');
  });
});

describe('result', () => {
  it('is deeply frozen', () => {
    const config = loadConfig({ env: {} });
    expect(Object.isFrozen(config)).toBe(true);
    for (const section of Object.values(config)) expect(Object.isFrozen(section)).toBe(true);
    expect(() => {
      (config.hub as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (config as { hub: unknown }).hub = {};
    }).toThrow(TypeError);
    expect(config.hub.port).toBe(1883);
  });

  it('separate loads do not share state', () => {
    const a = loadConfig({ env: { UCP_HUB_PORT: '1' } });
    const b = loadConfig({ env: {} });
    expect(a.hub.port).toBe(1);
    expect(b.hub.port).toBe(1883);
  });
});

describe('key types for future sections', () => {
  const tags: KeySpec = { type: 'string[]', itemPattern: /^[a-z0-9-]+$/, hint: 'lowercase letters, digits and -' };
  const flag: KeySpec = { type: 'boolean' };
  const ratio: KeySpec = { type: 'number', min: 0, max: 1 };

  it('string arrays accept TOML arrays and comma-separated text', () => {
    expect(validateConfigValue('executor.tags', tags, ['gpu', 'arm64'], 'file')).toEqual(['gpu', 'arm64']);
    expect(validateConfigValue('executor.tags', tags, 'gpu, arm64,', 'UCP_EXECUTOR_TAGS', true)).toEqual(['gpu', 'arm64']);
    expect(validateConfigValue('executor.tags', tags, '', 'UCP_EXECUTOR_TAGS', true)).toEqual([]);
    expect(() => validateConfigValue('executor.tags', tags, ['GPU'], 'file')).toThrow(/item "GPU" does not fit/);
    expect(() => validateConfigValue('executor.tags', tags, [1], 'file')).toThrow(ConfigError);
    expect(() => validateConfigValue('executor.tags', tags, 'gpu', 'file')).toThrow(/an array of strings/);
  });

  it('booleans accept true/false/1/0 from text and only booleans from TOML', () => {
    expect(validateConfigValue('x.on', flag, 'true', 'UCP_X_ON', true)).toBe(true);
    expect(validateConfigValue('x.on', flag, '0', 'UCP_X_ON', true)).toBe(false);
    expect(validateConfigValue('x.on', flag, false, 'file')).toBe(false);
    expect(() => validateConfigValue('x.on', flag, 'yes', 'UCP_X_ON', true)).toThrow(/true, false, 1 or 0/);
    expect(() => validateConfigValue('x.on', flag, 'true', 'file')).toThrow(ConfigError);
  });

  it('numbers accept decimals within range', () => {
    expect(validateConfigValue('x.ratio', ratio, '0.25', 'UCP_X_RATIO', true)).toBe(0.25);
    expect(validateConfigValue('x.ratio', ratio, 1, 'file')).toBe(1);
    expect(() => validateConfigValue('x.ratio', ratio, '1.5', 'UCP_X_RATIO', true)).toThrow(/a number in 0\.\.1/);
    expect(() => validateConfigValue('x.ratio', ratio, 'NaN', 'UCP_X_RATIO', true)).toThrow(ConfigError);
  });
});
