import { closeSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { UcpConfig } from '../config/index.js';
import { generatePassword, hashPassword, ISSUABLE_ROLES, mosquittoPolicy, readCredentialsFile, writeCredentialsFile, type Credential } from '../hub/index.js';
import { isNodeId, type Role } from '../protocol/index.js';
import { table, type Output } from './inspect.js';
import { UsageError } from './settings.js';

/** The credentials file `ucp auth` edits: --file, else hub.credentials_file, else ./credentials.toml. */
export function credentialsPath(config: UcpConfig, file?: string): string {
  return resolve(file ?? (config.hub.credentials_file !== '' ? config.hub.credentials_file : 'credentials.toml'));
}

export interface AddOptions {
  readonly role: string;
  /** The password, read from stdin; otherwise one is generated and shown once. */
  readonly password?: string;
  /** May log in with a client certificate; with no password given, that is its only way in. */
  readonly certificate: boolean;
  /** Replace an existing credential (a new password, or another role). */
  readonly force: boolean;
}

/**
 * Runs a read-modify-write of the credentials file alone: two `ucp auth` at once would otherwise each write
 * the file they read, and one change would be lost.
 */
async function exclusively<T>(path: string, work: () => Promise<T> | T): Promise<T> {
  const lock = `${path}.lock`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx', 0o600));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (Date.now() > deadline) throw new UsageError(`${lock} exists: another \`ucp auth\` is changing the file, or one was killed; remove the lock if none is running`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await work();
  } finally {
    rmSync(lock, { force: true });
  }
}

/** `ucp auth add NODE --role ROLE`: a credential for one node; the password is printed once, never stored. */
export async function authAdd(path: string, out: Output, node: string, opts: AddOptions): Promise<void> {
  if (!isNodeId(node)) throw new UsageError(`"${node}" is not a valid node id: use 1-64 of A-Z a-z 0-9 . _ -, not starting with "__"`);
  if (!(ISSUABLE_ROLES as readonly string[]).includes(opts.role)) throw new UsageError(`--role must be one of ${ISSUABLE_ROLES.join(', ')}`);
  // Hashed before taking the lock: scrypt is the slow part.
  const password = opts.password ?? (opts.certificate ? undefined : generatePassword());
  const hashes = password !== undefined ? await hashPassword(password) : undefined;
  await exclusively(path, () => {
    const creds = readCredentialsFile(path);
    if (creds.has(node) && !opts.force) throw new UsageError(`${node} already has a credential in ${path}; pass --force to replace it`);
    const entry: Credential = { node, role: opts.role as Role, certificate: opts.certificate, ...(hashes !== undefined ? { scrypt: hashes.scrypt, mosquitto: hashes.mosquitto } : {}) };
    creds.set(node, entry);
    writeCredentialsFile(path, creds);
  });
  const shown = opts.password === undefined ? password : undefined;
  if (out.json) {
    out.print(JSON.stringify({ node, role: opts.role, certificate: opts.certificate, file: path, ...(shown !== undefined ? { password: shown } : {}) }));
    return;
  }
  out.print(`${node}: ${opts.role}${opts.certificate ? ', may log in with a client certificate' : ''} (${path})`);
  if (shown !== undefined) out.print(`password (shown only now; give it to the node as UCP_HUB_PASSWORD): ${shown}`);
}

/** `ucp auth rm NODE`: the node can no longer log in; a hub reading the file disconnects it. */
export async function authRm(path: string, out: Output, node: string): Promise<void> {
  await exclusively(path, () => {
    const creds = readCredentialsFile(path);
    if (!creds.delete(node)) throw new UsageError(`${node} has no credential in ${path}`);
    writeCredentialsFile(path, creds);
  });
  out.print(out.json ? JSON.stringify({ node, removed: true }) : `${node}: credential removed from ${path}`);
}

/** `ucp auth ls`: every node with a credential, its role and how it logs in; never any hash. */
export function authLs(path: string, out: Output): void {
  const rows = [...readCredentialsFile(path).values()].map((c) => ({ node: c.node, role: c.role, password: c.scrypt !== undefined, certificate: c.certificate }));
  if (out.json) {
    out.print(JSON.stringify(rows));
    return;
  }
  if (rows.length === 0) {
    out.print(`no credentials in ${path}`);
    return;
  }
  out.print(table(['NODE', 'ROLE', 'LOGIN'], rows.map((r) => [r.node, r.role, [r.password ? 'password' : '', r.certificate ? 'certificate' : ''].filter((x) => x !== '').join(', ')])));
}

/** Reads a password from stdin (one line; the trailing newline is not part of it). */
export async function readPasswordFromStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const password = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  if (password === '') throw new UsageError('--password-stdin: no password on stdin');
  return password;
}

export interface ExportOptions {
  readonly port: number;
  readonly host: string;
  readonly clusters: readonly string[];
}

/**
 * `ucp auth export-mosquitto DIR`: the same policy for an external Mosquitto, as a configuration file,
 * a password file (Mosquitto's own PBKDF2 hashes, never the passwords) and an ACL file.
 */
export function authExportMosquitto(path: string, config: UcpConfig, out: Output, dir: string, opts: ExportOptions): void {
  const creds = readCredentialsFile(path);
  if (creds.size === 0) throw new UsageError(`no credentials in ${path}: add nodes with \`ucp auth add\` first`);
  const target = resolve(dir);
  mkdirSync(target, { recursive: true });
  const { tls_cert_file: cert, tls_key_file: key, tls_client_ca_file: ca } = config.hub;
  if ((cert === '') !== (key === '')) throw new UsageError('set both hub.tls_cert_file and hub.tls_key_file, or neither');
  const policy = mosquittoPolicy(creds, {
    clusters: opts.clusters,
    dir: target,
    port: opts.port,
    host: opts.host,
    maxMessageBytes: config.protocol.max_message_bytes,
    ...(cert !== '' ? { tls: { certFile: resolve(cert), keyFile: resolve(key), ...(ca !== '' ? { clientCaFile: resolve(ca) } : {}) } } : {}),
  });
  const missing = [...creds.values()].filter((c) => c.mosquitto === undefined && !c.certificate).map((c) => c.node);
  if (missing.length > 0) throw new UsageError(`no Mosquitto hash for ${missing.join(', ')}: give them a new password with \`ucp auth add NODE --role ROLE --force\``);
  writeFileSync(join(target, 'mosquitto.conf'), policy.conf, { mode: 0o644 });
  writeFileSync(join(target, 'passwords'), policy.passwords, { mode: 0o600 });
  writeFileSync(join(target, 'acl'), policy.acl, { mode: 0o644 });
  if (out.json) out.print(JSON.stringify({ dir: target, files: ['mosquitto.conf', 'passwords', 'acl'], nodes: creds.size }));
  else out.print(`wrote mosquitto.conf, passwords and acl for ${creds.size} node(s) to ${target}; start Mosquitto with: mosquitto -c ${join(target, 'mosquitto.conf')}`);
}
