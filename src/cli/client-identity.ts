import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { UcpConfig } from '../config/index.js';
import type { Logger } from '../log/index.js';
import { isNodeId } from '../protocol/index.js';
import { NodeStore, StoreError } from '../store/index.js';
import { NodeRuntime } from '../transport/index.js';
import { stateRoot } from './state-dir.js';
import { clientRole, defaultNodeId, hostLabel, provesIdentity } from './settings.js';

/**
 * Who a client command is on the network. A node id must never be used by two processes at once (the hub
 * would drop one connection for the other, and brokers would see one node dying and restarting), and each
 * id needs one incarnation counter, so an identity and its data directory go together:
 *
 * - `--data-dir DIR`: the identity that directory already has, else `--node-id`, else one made for it
 *   (`client-<host>-<random>`). It is refused if another process uses the directory.
 * - default: `client-<host>-<random>`, made once per state directory and kept in `<state root>/client-id`
 *   (host names repeat in the field: every new Raspberry Pi is "raspberrypi"), with its state in
 *   `<state root>/<id>`. When another command holds it (a `ucp run` still waiting), the next free one is
 *   used: `<id>-2`, `<id>-3`, ... each with its own directory, so commands run at the same time never
 *   collide, and a job stays collectable by its id.
 * - with a credential (a password or a client certificate): the credential's node id, `--node-id` or
 *   `client-<host>` as for other roles, since the hub admits a node only under the id its credential names.
 */

/** Identities one user runs at once on one host before the next command is told to wait. */
export const MAX_CLIENT_SLOTS = 32;
const NODE_ID_MAX = 64;
/** Room kept at the end of a default id for its slot number ("-32"). */
const SLOT_ROOM = 3;

/** A new client id, `client-<host>-<6 random hex digits>`, short enough for a slot number after it. */
function newClientId(): string {
  const suffix = randomBytes(3).toString('hex');
  const room = NODE_ID_MAX - SLOT_ROOM - 'client-'.length - 1 - suffix.length;
  return `client-${hostLabel().slice(0, room)}-${suffix}`;
}

/** The default client id kept in `<root>/client-id`, made on first use; undefined when `create` is false and there is none. */
function defaultClientId(root: string, create: boolean): string | undefined {
  const file = join(root, 'client-id');
  const read = () => {
    try {
      const id = readFileSync(file, 'utf8').trim();
      return isNodeId(id) ? id : undefined;
    } catch {
      return undefined;
    }
  };
  const known = read();
  if (known !== undefined || !create) return known;
  mkdirSync(root, { recursive: true });
  // Written aside and linked into place: two first commands at once agree on whichever came first.
  const aside = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(aside, `${newClientId()}\n`);
  try {
    linkSync(aside, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new StoreError('store_open_failed', `cannot keep the client id in ${file}: ${(err as Error).message}`);
  } finally {
    unlinkSync(aside);
  }
  const id = read();
  if (id === undefined) throw new StoreError('store_open_failed', `${file} does not hold a node id; remove it to get a new one`);
  return id;
}

export interface ClientOptions {
  readonly watchPresence?: boolean;
  /** Run as exactly this identity of this user (e.g. the one that submitted a job), not the next free one. */
  readonly as?: string;
}

/** Opens this command's client node; see the module comment for which identity that is. */
export function openClientNode(config: UcpConfig, logger: Logger, options: ClientOptions = {}): NodeRuntime {
  const common = { config, role: clientRole(config), logger, ...(options.watchPresence !== undefined ? { watchPresence: options.watchPresence } : {}) };
  if (config.node.data_dir !== '') {
    const dir = resolve(config.node.data_dir);
    return NodeRuntime.create({ ...common, nodeId: options.as ?? (config.node.id !== '' ? config.node.id : newClientId), dataDir: dir });
  }
  const root = stateRoot();
  if (options.as !== undefined || config.node.id !== '' || provesIdentity(config)) {
    const id = options.as ?? defaultNodeId(config, 'client');
    return NodeRuntime.create({ ...common, nodeId: id, dataDir: join(root, id) });
  }
  const base = defaultClientId(root, true)!;
  for (let slot = 1; slot <= MAX_CLIENT_SLOTS; slot++) {
    const id = slotId(base, slot);
    try {
      return NodeRuntime.create({ ...common, nodeId: id, dataDir: join(root, id) });
    } catch (err) {
      if (err instanceof StoreError && err.code === 'store_locked') continue;
      throw err;
    }
  }
  throw new StoreError('store_locked', `${MAX_CLIENT_SLOTS} ucp commands of ${base} are running at once; wait for one to end, or give this one its own --data-dir`);
}

function slotId(base: string, slot: number): string {
  return slot === 1 ? base : `${base}-${slot}`;
}

/**
 * The other identities of this user's default client on this host, with their directories: the jobs they
 * submitted belong to the same user, so `ucp results` collects those too.
 */
export function siblingClients(config: UcpConfig, self: string): Array<{ id: string; dir: string }> {
  if (config.node.data_dir !== '' || config.node.id !== '') return [];
  const root = stateRoot();
  const base = defaultClientId(root, false);
  if (base === undefined) return [];
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  const own = new Set(Array.from({ length: MAX_CLIENT_SLOTS }, (_, i) => slotId(base, i + 1)));
  return names.filter((n) => own.has(n) && n !== self).map((id) => ({ id, dir: join(root, id) }));
}

/**
 * Works on another identity's store while no process uses it; returns undefined (and does nothing) when
 * one does, as that process looks after its own jobs.
 */
export async function withIdleStore<T>(config: UcpConfig, client: { id: string; dir: string }, work: (store: NodeStore) => T | Promise<T>): Promise<T | undefined> {
  let store: NodeStore;
  try {
    store = NodeStore.open({ dir: client.dir, nodeId: client.id, sync: config.store.sync });
  } catch (err) {
    if (err instanceof StoreError) return undefined;
    throw err;
  }
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}
