import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, TomlError } from 'smol-toml';
import {
  CONFIG_SCHEMA,
  ENV_ALIASES,
  NON_CONFIG_ENV_VARS,
  envVarName,
  type ConfigSchema,
  type KeySpec,
  type UcpConfig,
} from './schema.js';

export type { UcpConfig } from './schema.js';

/** Every configuration problem surfaces as this, so commands can print the message and exit cleanly. */
export class ConfigError extends Error {
  readonly code = 'config_invalid';
  override readonly name = 'ConfigError';
  /** Dotted key the problem is about, when there is one. */
  readonly key: string | undefined;
  /** Where the offending value came from: file path, env variable or flag. */
  readonly source: string | undefined;

  constructor(message: string, details: { key?: string; source?: string } = {}) {
    super(message);
    this.key = details.key;
    this.source = details.source;
  }
}

// Widened view: the `as const` table is precise for types, but runtime code iterates it generically.
const SCHEMA: ConfigSchema = CONFIG_SCHEMA;

interface KeyInfo {
  readonly key: string;
  readonly section: string;
  readonly name: string;
  readonly spec: KeySpec;
}

const ALL_KEYS: readonly KeyInfo[] = Object.entries(SCHEMA).flatMap(([section, keys]) =>
  Object.entries(keys).map(([name, spec]) => ({ key: `${section}.${name}`, section, name, spec })),
);
const SPEC_BY_KEY = new Map(ALL_KEYS.map((k) => [k.key, k]));
const SECTION_NAMES = Object.keys(SCHEMA);

/** Maps every accepted UCP_* name (long form and aliases) to its dotted key. */
const ENV_TO_KEY: ReadonlyMap<string, string> = buildEnvMap();

function buildEnvMap(): Map<string, string> {
  const map = new Map<string, string>();
  const claim = (name: string, key: string): void => {
    const previous = map.get(name);
    // Sections and keys may contain '_', so two keys could collapse onto one env name; refuse to start
    // rather than let one silently shadow the other.
    if (previous !== undefined && previous !== key) {
      throw new Error(`config schema bug: ${name} would set both "${previous}" and "${key}"`);
    }
    map.set(name, key);
  };
  for (const { key, spec } of ALL_KEYS) {
    claim(envVarName(key), key);
    if ((spec.type === 'integer' || spec.type === 'number') && spec.atLeast) {
      const ref = SPEC_BY_KEY.get(spec.atLeast.key);
      if (!ref || (ref.spec.type !== 'integer' && ref.spec.type !== 'number')) {
        throw new Error(`config schema bug: "${key}" must be at least "${spec.atLeast.key}", which is not a numeric key`);
      }
    }
  }
  for (const [name, key] of Object.entries(ENV_ALIASES)) {
    if (!SPEC_BY_KEY.has(key)) throw new Error(`config schema bug: alias ${name} names unknown key "${key}"`);
    claim(name, key);
  }
  return map;
}

/**
 * Finds the package root by walking up, because the module runs both from `src/config/` (tests,
 * tsx) and from `dist/src/config/` (built CLI), which sit at different depths.
 */
function findDefaultConfigFile(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; ) {
    const candidate = join(dir, 'config', 'default.toml');
    if (existsSync(candidate) && existsSync(join(dir, 'package.json'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  // Not found: return where it would be in the source layout so the load error names a real place.
  return resolve(start, '..', '..', 'config', 'default.toml');
}

/** Absolute path of the documented defaults file that the runtime reads its defaults from. */
export const DEFAULT_CONFIG_FILE: string = findDefaultConfigFile();

/** The config file named by UCP_CONFIG, if any. Empty counts as unset. */
export function configFileFromEnv(env: Record<string, string | undefined>): string | undefined {
  const value = env['UCP_CONFIG'];
  return value === undefined || value === '' ? undefined : value;
}

/**
 * Arrays of tables a config file may hold besides its sections, and the command that reads them: the
 * bridge's mappings and trigger rules sit in the same file as its settings.
 */
export const DOCUMENT_TABLES: Readonly<Record<string, string>> = { mapping: 'ucp bridge', trigger: 'ucp bridge' };

export interface LoadConfigOptions {
  /** Arrays of tables from DOCUMENT_TABLES that the caller reads itself (readDocumentTables). */
  documentTables?: readonly string[];
  /** TOML file layered over the defaults. When omitted, UCP_CONFIG from `env` is used if set. */
  file?: string;
  /** Environment to read UCP_* variables from. Defaults to process.env. */
  env?: Record<string, string | undefined>;
  /**
   * Highest-precedence values by dotted key ({"hub.url": "mqtt://x:1"}), usually CLI flags.
   * Strings are coerced like env values; undefined entries are skipped so unset flags can be
   * passed straight through.
   */
  overrides?: Record<string, unknown>;
  /** How to name each override in errors, e.g. {"hub.url": "--hub"}. Defaults to "override <key>". */
  overrideSources?: Record<string, string>;
}

interface Entry {
  readonly value: unknown;
  readonly source: string;
}

type Entries = Map<string, Entry>;

/**
 * Loads defaults <- file <- env <- overrides, validating every layer as it is applied and the
 * cross-field rules after merging. Throws ConfigError with a one-line, actionable message.
 */
export function loadConfig(opts: LoadConfigOptions = {}): UcpConfig {
  const env = opts.env ?? process.env;
  const entries: Entries = new Map(defaults().entries);

  const fromEnv = opts.file === undefined;
  const file = opts.file ?? configFileFromEnv(env);
  if (file !== undefined) {
    const path = resolve(file);
    applyTable(readToml(path, fromEnv ? 'UCP_CONFIG' : undefined), path, entries, opts.documentTables ?? []);
  }
  applyEnv(env, entries);
  if (opts.overrides) applyOverrides(opts.overrides, opts.overrideSources ?? {}, entries);
  checkCrossField(entries);
  return freezeConfig(entries);
}

/** The arrays of tables `names` from a config file (empty arrays for those it lacks). */
export function readDocumentTables(file: string, names: readonly string[]): Record<string, Array<Record<string, unknown>>> {
  const path = resolve(file);
  const table = readToml(path, undefined);
  const out: Record<string, Array<Record<string, unknown>>> = {};
  for (const name of names) {
    const value = table[name];
    if (value === undefined) out[name] = [];
    else if (Array.isArray(value) && value.every(isTable)) out[name] = value;
    else throw new ConfigError(`${name} in ${path} must be an array of tables: write each as [[${name}]] followed by its keys`, { key: name, source: path });
  }
  return out;
}

/** One row per key, for `ucp config` output and generated docs. */
export interface ConfigKeyDescription {
  key: string;
  type: string;
  default: unknown;
  /** Env variables that set the key, long form first. */
  env: string[];
  /** What values are accepted, in the same words errors use. */
  constraint: string;
  /** The comment above the key in default.toml (or the schema's `doc`). */
  doc: string;
}

export function describeConfig(): ConfigKeyDescription[] {
  const { entries, docs } = defaults();
  return ALL_KEYS.map(({ key, spec }) => ({
    key,
    type: spec.type,
    default: entries.get(key)?.value,
    // A Set because some aliases (UCP_NODE_ID) coincide with the long name.
    env: [
      ...new Set([
        envVarName(key),
        ...Object.entries(ENV_ALIASES)
          .filter(([, target]) => target === key)
          .map(([name]) => name),
      ]),
    ],
    constraint: describeSpec(spec, false),
    doc: spec.doc ?? docs.get(key) ?? '',
  }));
}

// ---------------------------------------------------------------------------------------------
// Defaults

interface Defaults {
  readonly entries: ReadonlyMap<string, Entry>;
  readonly docs: ReadonlyMap<string, string>;
}

let defaultsCache: Defaults | undefined;

function defaults(): Defaults {
  if (defaultsCache) return defaultsCache;
  const path = DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `cannot read the built-in defaults ${path} (${errorCode(err)}); the installation is incomplete, reinstall ucp-edge`,
      { source: path },
    );
  }
  const entries: Entries = new Map();
  applyTable(parseToml(text, path), path, entries);
  for (const { key, section, name } of ALL_KEYS) {
    if (!entries.has(key)) {
      throw new ConfigError(
        `built-in defaults ${path} lack config key "${key}"; add "${name} = ..." under [${section}] with a comment`,
        { key, source: path },
      );
    }
  }
  defaultsCache = { entries, docs: readDocComments(text) };
  return defaultsCache;
}

/** The comment block directly above each key, which default.toml uses to document it. */
function readDocComments(text: string): Map<string, string> {
  const docs = new Map<string, string>();
  let section = '';
  let pending: string[] = [];
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    const header = /^\[([A-Za-z0-9_.-]+)\]/.exec(line);
    const assignment = /^([A-Za-z0-9_-]+)\s*=/.exec(line);
    if (header) {
      section = header[1] ?? '';
      pending = [];
    } else if (line.startsWith('#')) {
      pending.push(line.replace(/^#+\s?/, ''));
    } else if (assignment) {
      if (pending.length > 0) docs.set(`${section}.${assignment[1] ?? ''}`, pending.join(' '));
      pending = [];
    } else {
      pending = [];
    }
  }
  return docs;
}

// ---------------------------------------------------------------------------------------------
// Layers

function readToml(path: string, namedBy: string | undefined): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const via = namedBy ? ` (named by ${namedBy})` : '';
    throw new ConfigError(`cannot read config file ${path}${via}: ${errorCode(err)}; check the path`, {
      source: path,
    });
  }
  return parseToml(text, path);
}

function parseToml(text: string, path: string): Record<string, unknown> {
  try {
    return parse(text);
  } catch (err) {
    if (err instanceof TomlError) {
      const reason = (err.message.split('\n')[0] ?? '').replace(/^Invalid TOML document:\s*/, '');
      throw new ConfigError(
        `invalid TOML in ${path} at line ${err.line}, column ${err.column}: ${reason}; fix the syntax there`,
        { source: path },
      );
    }
    throw err;
  }
}

function applyTable(table: Record<string, unknown>, source: string, entries: Entries, documentTables: readonly string[] = []): void {
  const sections = SECTION_NAMES.join(', ');
  for (const [section, body] of Object.entries(table)) {
    if (Object.hasOwn(DOCUMENT_TABLES, section)) {
      if (documentTables.includes(section)) continue;
      throw new ConfigError(`[[${section}]] in ${source} is read only by \`${DOCUMENT_TABLES[section]}\`; this command does not use it`, { key: section, source });
    }
    const keys = Object.hasOwn(SCHEMA, section) ? SCHEMA[section] : undefined;
    if (!isTable(body)) {
      if (keys) {
        throw new ConfigError(
          `config section [${section}] in ${source} must be a table (got ${show(body, false)}); write [${section}] on its own line and the keys below it`,
          { key: section, source },
        );
      }
      throw new ConfigError(
        `unknown config key "${section}" in ${source}; every key belongs to a section, known sections: ${sections}`,
        { key: section, source },
      );
    }
    if (!keys) {
      throw new ConfigError(`unknown config section [${section}] in ${source}; known sections: ${sections}`, {
        key: section,
        source,
      });
    }
    for (const [name, value] of Object.entries(body)) {
      const key = `${section}.${name}`;
      const spec = Object.hasOwn(keys, name) ? keys[name] : undefined;
      if (!spec) {
        throw new ConfigError(
          `unknown config key "${key}" in ${source}; known keys in [${section}]: ${Object.keys(keys).join(', ')}`,
          { key, source },
        );
      }
      entries.set(key, { value: convert(key, spec, value, source, false), source });
    }
  }
}

function applyEnv(env: Record<string, string | undefined>, entries: Entries): void {
  const byKey = new Map<string, Array<{ name: string; raw: string }>>();
  for (const name of Object.keys(env).sort()) {
    const raw = env[name];
    if (raw === undefined || !name.startsWith('UCP_') || NON_CONFIG_ENV_VARS.has(name)) continue;
    const key = ENV_TO_KEY.get(name);
    if (key === undefined) {
      const guess = closest(name, [...ENV_TO_KEY.keys(), ...NON_CONFIG_ENV_VARS]);
      const hint = guess ? `did you mean ${guess}? ` : '';
      throw new ConfigError(
        `unknown environment variable ${name}: no config key uses it; ${hint}fix or unset it (names are UCP_<SECTION>_<KEY>, e.g. UCP_HUB_URL)`,
        { source: name },
      );
    }
    const list = byKey.get(key) ?? [];
    list.push({ name, raw });
    byKey.set(key, list);
  }
  for (const [key, list] of byKey) {
    const info = SPEC_BY_KEY.get(key);
    if (!info) continue;
    if (new Set(list.map((e) => e.raw)).size > 1) {
      const names = list.map((e) => e.name).join(' and ');
      throw new ConfigError(`${names} both set config key "${key}" but to different values; unset one of them`, {
        key,
        source: list[0]?.name,
      });
    }
    // Report the canonical long name when both it and an alias agree.
    const chosen = list.find((e) => e.name === envVarName(key)) ?? list[0];
    if (!chosen) continue;
    entries.set(key, { value: convert(key, info.spec, chosen.raw, chosen.name, true), source: chosen.name });
  }
}

function applyOverrides(overrides: Record<string, unknown>, labels: Record<string, string>, entries: Entries): void {
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    const source = (Object.hasOwn(labels, key) ? labels[key] : undefined) ?? `override ${key}`;
    const info = SPEC_BY_KEY.get(key);
    if (!info) {
      const dot = key.indexOf('.');
      const section = dot < 0 ? '' : key.slice(0, dot);
      const keys = Object.hasOwn(SCHEMA, section) ? SCHEMA[section] : undefined;
      const known = keys
        ? `known keys in [${section}]: ${Object.keys(keys).join(', ')}`
        : `keys are written section.key, known sections: ${SECTION_NAMES.join(', ')}`;
      throw new ConfigError(`unknown config key "${key}" given by ${source}; ${known}`, { key, source });
    }
    // CLI flags arrive as strings; typed values (from code) are checked as they are.
    const fromText = typeof value === 'string' && info.spec.type !== 'string';
    entries.set(key, { value: convert(key, info.spec, value, source, fromText), source });
  }
}

function checkCrossField(entries: Entries): void {
  for (const { key, spec } of ALL_KEYS) {
    if ((spec.type !== 'integer' && spec.type !== 'number') || !spec.atLeast) continue;
    const own = entries.get(key);
    const other = entries.get(spec.atLeast.key);
    if (!own || !other) continue;
    const factor = spec.atLeast.factor ?? 1;
    const bound = factor * (other.value as number);
    if ((own.value as number) >= bound) continue;
    const ref = spec.atLeast.key;
    const rule = factor === 1 ? `${ref} = ${bound}` : `${factor} * ${ref} = ${bound}`;
    throw new ConfigError(
      `config key "${key}" must be >= ${rule} (got ${String(own.value)} from ${own.source}; ${ref} is ${String(other.value)} from ${other.source}); raise ${key} or lower ${ref}`,
      { key, source: own.source },
    );
  }
}

function freezeConfig(entries: Entries): UcpConfig {
  const config: Record<string, Readonly<Record<string, unknown>>> = {};
  for (const [section, keys] of Object.entries(SCHEMA)) {
    const values: Record<string, unknown> = {};
    for (const name of Object.keys(keys)) {
      const value = entries.get(`${section}.${name}`)?.value;
      // Copy arrays so a frozen result never shares storage with the cached defaults.
      values[name] = Array.isArray(value) ? Object.freeze([...(value as unknown[])]) : value;
    }
    config[section] = Object.freeze(values);
  }
  return Object.freeze(config) as unknown as UcpConfig;
}

// ---------------------------------------------------------------------------------------------
// Values

/**
 * Validates one value against a key spec and returns it normalised, throwing ConfigError otherwise.
 * `fromText` means it came from an env variable or a string flag and must first be parsed to the
 * key's type; TOML and typed values must already have it. Exported so key types that the current
 * schema does not use yet (boolean, number, string[]) stay tested.
 */
export function validateConfigValue(
  key: string,
  spec: KeySpec,
  raw: unknown,
  source: string,
  fromText = false,
): unknown {
  return convert(key, spec, raw, source, fromText);
}

function convert(key: string, spec: KeySpec, raw: unknown, source: string, fromText: boolean): unknown {
  const fail = (reason?: string): never => {
    const why = reason ? `; ${reason}` : '';
    throw new ConfigError(
      `config key "${key}" must be ${describeSpec(spec, fromText)} (got ${show(raw, spec.secret === true)} from ${source}${why})`,
      { key, source },
    );
  };
  const value = fromText && typeof raw === 'string' ? parseText(spec, raw) : raw;
  switch (spec.type) {
    case 'string': {
      if (typeof value !== 'string') return fail();
      if (spec.enum && !spec.enum.includes(value)) return fail();
      if (spec.pattern && !spec.pattern.test(value)) return fail();
      const problem = spec.check?.(value);
      if (problem !== undefined) return fail(problem);
      return value;
    }
    case 'integer':
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return fail();
      if (spec.type === 'integer' && !Number.isSafeInteger(value)) return fail();
      if (spec.min !== undefined && value < spec.min) return fail();
      if (spec.max !== undefined && value > spec.max) return fail();
      return value;
    }
    case 'boolean': {
      if (typeof value !== 'boolean') return fail();
      return value;
    }
    case 'string[]': {
      if (!Array.isArray(value)) return fail();
      const items: unknown[] = value;
      if (!items.every((item): item is string => typeof item === 'string')) return fail();
      if (spec.itemPattern) {
        const pattern = spec.itemPattern;
        const bad = items.find((item) => !pattern.test(item));
        if (bad !== undefined) return fail(`item ${JSON.stringify(bad)} does not fit`);
      }
      if (spec.minItems !== undefined && items.length < spec.minItems) return fail();
      if (spec.maxItems !== undefined && items.length > spec.maxItems) return fail();
      return [...items];
    }
  }
}

const INTEGER_TEXT = /^[+-]?\d+$/;
const NUMBER_TEXT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Parses env/flag text; unparsable text is returned unchanged so the type check rejects it. */
function parseText(spec: KeySpec, raw: string): unknown {
  const text = raw.trim();
  switch (spec.type) {
    case 'string':
      return raw;
    case 'integer':
      return INTEGER_TEXT.test(text) ? Number(text) : raw;
    case 'number':
      return NUMBER_TEXT.test(text) ? Number(text) : raw;
    case 'boolean':
      if (text === 'true' || text === '1') return true;
      if (text === 'false' || text === '0') return false;
      return raw;
    case 'string[]':
      return text === ''
        ? []
        : text
            .split(',')
            .map((item) => item.trim())
            .filter((item) => item !== '');
  }
}

function describeSpec(spec: KeySpec, fromText: boolean): string {
  const range = (min: number | undefined, max: number | undefined): string => {
    if (min !== undefined && max !== undefined) return ` in ${min}..${max}`;
    if (min !== undefined) return ` >= ${min}`;
    if (max !== undefined) return ` <= ${max}`;
    return '';
  };
  switch (spec.type) {
    case 'string':
      if (spec.enum) return `one of ${spec.enum.join(', ')}`;
      return spec.hint ?? 'a string';
    case 'integer':
      return `an integer${range(spec.min, spec.max)}`;
    case 'number':
      return `a number${range(spec.min, spec.max)}`;
    case 'boolean':
      return fromText ? 'true, false, 1 or 0' : 'true or false';
    case 'string[]': {
      const base = fromText ? 'a comma-separated list' : 'an array of strings';
      const each = spec.hint ? `, each ${spec.hint}` : '';
      const count = spec.minItems !== undefined || spec.maxItems !== undefined
        ? `, ${range(spec.minItems, spec.maxItems).trim()} items`
        : '';
      return `${base}${each}${count}`;
    }
  }
}

/** Renders an offending value for a message; JSON quoting makes "5" (a string) distinguishable from 5. */
function show(value: unknown, secret: boolean): string {
  if (secret) return '<hidden>';
  let text: string;
  if (value instanceof Date) text = `a date (${value.toISOString()})`;
  else if (isTable(value)) text = 'a table';
  else if (typeof value === 'bigint') text = value.toString();
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = String(value);
    }
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function errorCode(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return err instanceof Error ? err.message : String(err);
}

/** The candidate within a small edit distance, to turn a typo into a suggestion. */
function closest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 4)) + 1;
  for (const candidate of candidates) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
