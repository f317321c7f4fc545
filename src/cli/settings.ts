import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { loadConfig, type UcpConfig } from '../config/index.js';
import { createLogger, type Logger } from '../log/index.js';
import { NodeLink, TransportError, linkOptionsFromConfig } from '../transport/index.js';

/** Flags every command accepts; each maps onto a configuration key. */
export interface GlobalFlags {
  hub?: string;
  cluster?: string;
  dataDir?: string;
  nodeId?: string;
  config?: string;
  logLevel?: string;
  json?: boolean;
  set?: string[];
}

const FLAG_KEYS: ReadonlyArray<[keyof GlobalFlags, string, string]> = [
  ['hub', 'hub.url', '--hub'],
  ['cluster', 'node.cluster', '--cluster'],
  ['dataDir', 'node.data_dir', '--data-dir'],
  ['nodeId', 'node.id', '--node-id'],
  ['logLevel', 'log.level', '--log-level'],
];

export { UsageError } from './usage-error.js';
import { UsageError } from './usage-error.js';

export function resolveConfig(flags: GlobalFlags, extra: Record<string, unknown> = {}, documentTables: readonly string[] = []): UcpConfig {
  const overrides: Record<string, unknown> = {};
  const overrideSources: Record<string, string> = {};
  for (const item of flags.set ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--set expects section.key=value, got "${item}"`);
    const key = item.slice(0, eq);
    overrides[key] = item.slice(eq + 1);
    overrideSources[key] = `--set ${key}`;
  }
  for (const [flag, key, name] of FLAG_KEYS) {
    const value = flags[flag];
    if (typeof value === 'string') {
      overrides[key] = value;
      overrideSources[key] = name;
    }
  }
  for (const [key, value] of Object.entries(extra)) {
    overrides[key] = value;
    overrideSources[key] = key === 'log.level' ? '--log-level' : `--set ${key}`;
  }
  return loadConfig({ ...(flags.config !== undefined ? { file: flags.config } : {}), overrides, overrideSources, documentTables });
}

/** The host name reduced to characters a node id may hold. */
export function hostLabel(): string {
  const label = hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 40);
  return label === '' ? 'node' : label;
}

export function defaultNodeId(config: UcpConfig, role: string): string {
  return config.node.id !== '' ? config.node.id : `${role}-${hostLabel()}`;
}

/** Long-running nodes log to stdout; query commands keep stdout for their answer and log to stderr. */
export function makeLogger(config: UcpConfig, toStderr: boolean): Logger {
  return createLogger({ level: config.log.level, format: config.log.format, destination: toStderr ? process.stderr : process.stdout });
}

/** True when this node proves who it is to the hub: a password or a client certificate. */
export function provesIdentity(config: UcpConfig): boolean {
  return config.hub.password !== '' || config.tls.cert_file !== '';
}

/**
 * The role client commands act in: an operator's when the configuration says so (its credential must
 * agree). Without a credential nothing is proven (the open loopback hub): commands there act as the box's
 * operator, so `ucp jobs` shows every job as it always did.
 */
export function clientRole(config: UcpConfig): 'client' | 'operator' {
  return config.client.operator || !provesIdentity(config) ? 'operator' : 'client';
}

/**
 * A short-lived link for commands that only ask questions: no store, no birth, no last will, so running
 * `ucp nodes` never shows up in (or vanishes from) the cluster's presence. Against a hub with credentials
 * it logs in as this machine's client node (the credential's node id); otherwise as a throwaway id.
 */
async function connectTool(config: UcpConfig, logger: Logger): Promise<NodeLink> {
  const proven = provesIdentity(config);
  const link = NodeLink.create({
    ...linkOptionsFromConfig(config, logger),
    nodeId: proven ? defaultNodeId(config, 'client') : `ucp-cli-${randomBytes(4).toString('hex')}`,
    role: clientRole(config),
    announce: false,
    watchPresence: true,
  });
  try {
    await connectWithin(config, link, () => link.connect());
  } catch (err) {
    await link.stop();
    throw err;
  }
  return link;
}

/**
 * Runs `connect`, failing with a one-line hub_unreachable error after transport.connect_timeout_ms, and
 * saying what it waits for when that takes a while.
 */
export async function connectWithin(config: UcpConfig, link: NodeLink, connect: () => Promise<void>): Promise<void> {
  const timeout = config.transport.connect_timeout_ms;
  let timer: NodeJS.Timeout | undefined;
  const waiting = waits.begin(`waiting for the hub at ${config.hub.url} (giving up after ${seconds(timeout)})`);
  try {
    await Promise.race([
      connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => {
          const cause = link.lastHubError !== undefined ? ` (${link.lastHubError})` : '; is it running?';
          reject(new TransportError('hub_unreachable', `cannot reach the hub at ${config.hub.url} within ${timeout} ms${cause}; set --hub or UCP_HUB`));
        }, timeout);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    waiting();
  }
}

function seconds(ms: number): string {
  return ms % 1_000 === 0 ? `${ms / 1_000} s` : `${(ms / 1_000).toFixed(1)} s`;
}

/** How long a wait may stay silent: a user hears what a command waits for before a second has passed. */
export const QUIET_WAIT_MS = 500;

/**
 * Notes on stderr about what a command waits for (the hub, a broker, a datastore), printed only when the
 * wait outlasts QUIET_WAIT_MS, so quick answers stay clean. `begin` returns the function that ends the wait.
 */
export const waits = {
  write: (line: string): void => void process.stderr.write(`${line}\n`),
  begin(what: string): () => void {
    const timer = setTimeout(() => waits.write(`${what}...`), QUIET_WAIT_MS);
    return () => clearTimeout(timer);
  },
};

/** Runs a query command's work on a short-lived link, which is always stopped afterwards. */
export async function withTool<T>(config: UcpConfig, logger: Logger, work: (link: NodeLink) => Promise<T>): Promise<T> {
  const link = await connectTool(config, logger);
  try {
    return await work(link);
  } finally {
    await link.stop();
  }
}
