import { pbkdf2, randomBytes, scrypt, timingSafeEqual, type BinaryLike, type ScryptOptions } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { parse, stringify } from 'smol-toml';
import { isNodeId, isRole, type Role } from '../protocol/index.js';

/** One node's credential: its role, and how it may prove it is that node. */
export interface Credential {
  readonly node: string;
  readonly role: Role;
  /** scrypt hash of its password, checked by the embedded hub; absent for certificate-only nodes. */
  readonly scrypt?: string;
  /** The same password as PBKDF2-SHA512 in Mosquitto's own format, for `ucp auth export-mosquitto`. */
  readonly mosquitto?: string;
  /** May log in with a client certificate (signed by the hub's client CA) whose common name is the node id. */
  readonly certificate: boolean;
}

export class CredentialsError extends Error {
  readonly code = 'bad_credentials_file';
}

/** Roles a credential can carry; `hub` is the embedded hub's own and never issued. */
export const ISSUABLE_ROLES: readonly Role[] = ['broker', 'executor', 'datastore', 'client', 'operator', 'bridge'];

// scrypt N=2^14, r=8 (16 MiB): a guess costs tens of milliseconds even on a server, more on a field unit.
const SCRYPT = { N: 16_384, r: 8, p: 1, keyLen: 32, saltLen: 16 } as const;
/** Mosquitto reads the iteration count from the hash; its own tool writes only 101. */
const PBKDF2_ITERATIONS = 10_000;
const PBKDF2_SALT_BYTES = 12;

function scryptAsync(password: BinaryLike, salt: Buffer, keyLen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, keyLen, options, (err, key) => (err ? reject(err) : resolve(key))));
}

function pbkdf2Async(password: BinaryLike, salt: Buffer, iterations: number): Promise<Buffer> {
  return new Promise((resolve, reject) => pbkdf2(password, salt, iterations, 64, 'sha512', (err, key) => (err ? reject(err) : resolve(key))));
}

/** Hashes a password both ways: scrypt for the embedded hub, Mosquitto's PBKDF2 format for an external one. */
export async function hashPassword(password: string): Promise<{ scrypt: string; mosquitto: string }> {
  const salt = randomBytes(SCRYPT.saltLen);
  const key = await scryptAsync(password, salt, SCRYPT.keyLen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p });
  const mSalt = randomBytes(PBKDF2_SALT_BYTES);
  const mKey = await pbkdf2Async(password, mSalt, PBKDF2_ITERATIONS);
  return {
    scrypt: `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`,
    mosquitto: `$7$${PBKDF2_ITERATIONS}$${mSalt.toString('base64')}$${mKey.toString('base64')}`,
  };
}

const SCRYPT_FORMAT = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;
const MOSQUITTO_FORMAT = /^\$7\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/;

/** Checks a password against a stored scrypt hash, in constant time. */
export async function verifyPassword(hash: string, password: Buffer | string): Promise<boolean> {
  const m = SCRYPT_FORMAT.exec(hash);
  if (m === null) return false;
  const [, n, r, p, salt, key] = m;
  const expected = Buffer.from(key!, 'base64');
  const actual = await scryptAsync(password, Buffer.from(salt!, 'base64'), expected.length, { N: Number(n), r: Number(r), p: Number(p), maxmem: 256 * Number(n) * Number(r) });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** A password for `ucp auth add` to print once: 24 random bytes, URL-safe. */
export function generatePassword(): string {
  return randomBytes(24).toString('base64url');
}

const FIELDS = new Set(['role', 'scrypt', 'mosquitto', 'certificate']);

/**
 * Reads a credentials file: `[nodes.<id>]` tables with a role and a password hash or `certificate = true`.
 * Every problem is an error naming the node, so a typo never silently locks a node out or lets it in.
 */
export function parseCredentials(text: string, source = 'the credentials file'): Map<string, Credential> {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new CredentialsError(`${source} is not valid TOML: ${(err as Error).message.split('\n')[0]}`);
  }
  for (const key of Object.keys(doc)) if (key !== 'nodes') throw new CredentialsError(`${source}: unknown key "${key}"; only [nodes.<id>] tables belong there`);
  const nodes = (doc.nodes ?? {}) as Record<string, unknown>;
  const out = new Map<string, Credential>();
  for (const [node, raw] of Object.entries(nodes)) {
    const where = `${source}: node "${node}"`;
    if (!isNodeId(node)) throw new CredentialsError(`${where}: not a valid node id (1-64 of A-Z a-z 0-9 . _ -)`);
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new CredentialsError(`${where}: expected a table`);
    const entry = raw as Record<string, unknown>;
    for (const key of Object.keys(entry)) if (!FIELDS.has(key)) throw new CredentialsError(`${where}: unknown key "${key}"`);
    const role = entry.role;
    if (typeof role !== 'string' || !isRole(role) || !ISSUABLE_ROLES.includes(role)) throw new CredentialsError(`${where}: role must be one of ${ISSUABLE_ROLES.join(', ')}`);
    const scryptHash = entry.scrypt;
    if (scryptHash !== undefined && (typeof scryptHash !== 'string' || !SCRYPT_FORMAT.test(scryptHash))) throw new CredentialsError(`${where}: scrypt is not a hash written by \`ucp auth\``);
    const mosquitto = entry.mosquitto;
    if (mosquitto !== undefined && (typeof mosquitto !== 'string' || !MOSQUITTO_FORMAT.test(mosquitto))) throw new CredentialsError(`${where}: mosquitto is not a hash written by \`ucp auth\``);
    const certificate = entry.certificate ?? false;
    if (typeof certificate !== 'boolean') throw new CredentialsError(`${where}: certificate must be true or false`);
    if (scryptHash === undefined && !certificate) throw new CredentialsError(`${where}: has neither a password hash nor certificate = true, so it could never log in`);
    out.set(node, { node, role, certificate, ...(scryptHash !== undefined ? { scrypt: scryptHash } : {}), ...(mosquitto !== undefined ? { mosquitto } : {}) });
  }
  return out;
}

export function serializeCredentials(creds: ReadonlyMap<string, Credential>): string {
  const nodes: Record<string, Record<string, unknown>> = {};
  for (const c of [...creds.values()].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0))) {
    nodes[c.node] = { role: c.role, ...(c.scrypt !== undefined ? { scrypt: c.scrypt } : {}), ...(c.mosquitto !== undefined ? { mosquitto: c.mosquitto } : {}), certificate: c.certificate };
  }
  const header = '# ucp-edge credentials: one table per node, managed with `ucp auth`. Only password hashes are kept.\n# The hub rereads this file when it changes.\n\n';
  return header + stringify({ nodes });
}

export function readCredentialsFile(path: string): Map<string, Credential> {
  if (!existsSync(path)) return new Map();
  return parseCredentials(readFileSync(path, 'utf8'), path);
}

/** Writes the file whole and then renames it into place, readable by its owner only. */
export function writeCredentialsFile(path: string, creds: ReadonlyMap<string, Credential>): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, serializeCredentials(creds), { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

/** The file's identity and age, to notice a rewrite (a rename gives a new inode even within one second). */
export function fileStamp(path: string): string {
  try {
    const s = statSync(path);
    return `${s.ino}:${s.mtimeMs}:${s.size}`;
  } catch {
    return 'missing';
  }
}
