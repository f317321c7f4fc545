import { execFileSync } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { loadConfig, type UcpConfig } from '../../src/config/index.js';
import { hashPassword, writeCredentialsFile, type Credential } from '../../src/hub/index.js';
import { createLogger } from '../../src/log/index.js';
import type { Role } from '../../src/protocol/index.js';
import { NodeLink, NodeRuntime, linkOptionsFromConfig } from '../../src/transport/index.js';
import { startMosquitto } from './mosquitto.js';
import { cleanEnv, freePort, Proc, removeDir, tempDir, ucp, ucpRun, UCP_BIN } from './processes.js';
import { makeTestPki, type TestPki } from './tls.js';

export type HubKind = 'embedded' | 'mosquitto';

export interface SecureClusterOptions {
  readonly kind: HubKind;
  readonly cluster: string;
  /** Every node that gets a credential, with its role. An operator `ops` is always added. */
  readonly nodes: Readonly<Record<string, Role>>;
  /** Serve mqtts:// with a throwaway CA made with openssl. */
  readonly tls?: boolean;
  /** Nodes (role executor) whose credential is a client certificate from that CA instead of a password. */
  readonly certificates?: readonly string[];
  /** Configuration for every node, in processes (`--set`) and in this one. */
  readonly settings?: Readonly<Record<string, string>>;
}

const silent = createLogger({ level: 'silent', format: 'json' });

/**
 * A hub with per-node credentials, real processes and in-process nodes around it: the embedded hub
 * (`ucp hub` with a credentials file) or Mosquitto with the policy `ucp auth export-mosquitto` writes.
 * Every node has its own password; attackers get credentials of their own, never someone else's.
 */
export class SecureCluster {
  readonly passwords = new Map<string, string>();
  readonly roles = new Map<string, Role>();
  /** Client certificate and key of each node that logs in with one. */
  readonly certs = new Map<string, { cert: string; key: string }>();
  readonly procs: Proc[] = [];
  readonly stops: Array<() => Promise<void>> = [];
  hub!: Proc;
  url!: string;
  port!: number;
  pki?: TestPki;
  readonly hubNode = 'hub-1';

  private constructor(
    readonly dir: string,
    readonly file: string,
    readonly opts: SecureClusterOptions,
  ) {}

  static async start(opts: SecureClusterOptions): Promise<SecureCluster> {
    const dir = tempDir('ucp-secure-');
    const c = new SecureCluster(dir, join(dir, 'credentials.toml'), opts);
    try {
      await c.boot();
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  private async boot(): Promise<void> {
    const nodes: Record<string, Role> = { ...this.opts.nodes, ops: 'operator' };
    const creds = new Map<string, Credential>();
    await Promise.all(
      Object.entries(nodes).map(async ([node, role]) => {
        const password = `pw-${node}-${Math.random().toString(36).slice(2, 10)}`;
        this.passwords.set(node, password);
        this.roles.set(node, role);
        creds.set(node, { node, role, certificate: false, ...(await hashPassword(password)) });
      }),
    );
    if (this.opts.tls === true) this.pki = makeTestPki(join(this.dir, 'pki'), ['localhost']);
    for (const node of this.opts.certificates ?? []) {
      if (this.pki === undefined) throw new Error('client certificates need tls: true');
      this.roles.set(node, 'executor');
      this.certs.set(node, this.pki.client(node));
      creds.set(node, { node, role: 'executor', certificate: true });
    }
    writeCredentialsFile(this.file, creds);
    this.port = await freePort();
    this.url = `${this.opts.tls === true ? 'mqtts' : 'mqtt'}://127.0.0.1:${this.port}`;
    const tlsHub = this.pki !== undefined ? ['--set', `hub.tls_cert_file=${this.pki.hubCert}`, '--set', `hub.tls_key_file=${this.pki.hubKey}`] : [];
    if (this.certs.size > 0) tlsHub.push('--set', `hub.tls_client_ca_file=${this.pki!.ca}`);
    if (this.opts.kind === 'embedded') {
      this.hub = ucp(['hub', '--port', String(this.port), '--node-id', this.hubNode, '--cluster', this.opts.cluster, '--set', `hub.credentials_file=${this.file}`, '--set', 'log.format=json', ...tlsHub]);
      this.procs.push(this.hub);
      await this.hub.waitForLine(/hub listening on/, 20_000);
      return;
    }
    const out = join(this.dir, 'mosquitto');
    execFileSync(process.execPath, [UCP_BIN, 'auth', 'export-mosquitto', out, '--file', this.file, '--port', String(this.port), '--host', '127.0.0.1', '--cluster', this.opts.cluster, ...tlsHub], { stdio: 'pipe', env: cleanEnv() });
    // Run as root (a test container), Mosquitto would drop to its own user and could not read the files.
    const extra = [...(process.getuid?.() === 0 ? ['user root'] : []), 'persistence false', 'log_dest stderr', 'log_type all'];
    appendFileSync(join(out, 'mosquitto.conf'), `${extra.join('\n')}\n`);
    const started = await startMosquitto(this.dir, { conf: join(out, 'mosquitto.conf'), port: this.port, ...(this.pki !== undefined ? { tls: true } : {}) });
    this.hub = started.proc;
    this.procs.push(this.hub);
  }

  /**
   * The hub URL for `node`: Mosquitto takes certificate logins on a listener of their own, the next port
   * (its user name is then the certificate's common name, which it cannot be on the password listener).
   */
  urlFor(node: string): string {
    return this.certs.has(node) && this.opts.kind === 'mosquitto' ? `mqtts://127.0.0.1:${this.port + 1}` : this.url;
  }

  /** Flags that point a `ucp` process at this cluster as `node`, with its own data directory. */
  args(node: string): string[] {
    const cert = this.certs.get(node);
    return ['--hub', this.urlFor(node), ...(cert !== undefined ? ['--set', `tls.cert_file=${cert.cert}`, '--set', `tls.key_file=${cert.key}`] : []), '--cluster', this.opts.cluster, '--node-id', node, '--data-dir', join(this.dir, node), ...(this.pki !== undefined ? ['--set', `tls.ca_file=${this.pki.ca}`] : []), ...Object.entries(this.opts.settings ?? {}).flatMap(([k, v]) => ['--set', `${k}=${v}`])];
  }

  env(node: string): Record<string, string> {
    const password = this.passwords.get(node);
    return { ...(password !== undefined ? { UCP_HUB_PASSWORD: password } : {}), ...(this.roles.get(node) === 'operator' ? { UCP_CLIENT_OPERATOR: 'true' } : {}) };
  }

  /** Starts `ucp <command>` as `node`, e.g. spawn('broker', 'br'). */
  spawn(command: string, node: string, extra: string[] = [], env: Record<string, string> = {}): Proc {
    const p = ucp([command, ...this.args(node), ...extra], { ...this.env(node), ...env });
    this.procs.push(p);
    return p;
  }

  /** Runs a `ucp` command to completion as `node` (ops, the operator, by default). */
  run(args: string[], node = 'ops', env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return ucpRun([...args, ...this.args(node)], { ...this.env(node), ...env }, 60_000);
  }

  config(node: string, overrides: Record<string, unknown> = {}): UcpConfig {
    return loadConfig({
      env: {},
      overrides: {
        'node.cluster': this.opts.cluster,
        'hub.url': this.urlFor(node),
        ...(this.passwords.has(node) ? { 'hub.password': this.passwords.get(node) } : {}),
        ...(this.pki !== undefined ? { 'tls.ca_file': this.pki.ca } : {}),
        ...this.opts.settings,
        ...overrides,
      },
    });
  }

  /** An in-process node with a store, logged in as `node` in its credential's role (or `role`). */
  async runtime(node: string, role: Role = this.roles.get(node)!, overrides: Record<string, unknown> = {}): Promise<NodeRuntime> {
    const rt = NodeRuntime.create({ config: this.config(node, overrides), nodeId: node, role, dataDir: join(this.dir, node), logger: silent });
    this.stops.push(() => rt.stop());
    return rt;
  }

  /** An in-process link without a store (no incarnation, no outbox), logged in as `node`. */
  link(node: string, role: Role = this.roles.get(node)!, opts: { announce?: boolean; watchPresence?: boolean; password?: string } = {}): NodeLink {
    const config = this.config(node, opts.password !== undefined ? { 'hub.password': opts.password } : {});
    const link = NodeLink.create({ ...linkOptionsFromConfig(config, silent), nodeId: node, role, announce: opts.announce ?? false, watchPresence: opts.watchPresence ?? true });
    this.stops.push(() => link.stop());
    return link;
  }

  /** A raw MQTT client, as a hostile device would use one. */
  async mqtt(opts: mqtt.IClientOptions): Promise<mqtt.MqttClient> {
    const client = await mqtt.connectAsync(this.url, {
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      protocolVersion: 4,
      ...(this.pki !== undefined ? { ca: readFileSync(this.pki.ca), rejectUnauthorized: true, servername: 'localhost' } : {}),
      ...opts,
    });
    this.stops.push(() => client.endAsync(true));
    return client;
  }

  /** A node's counters, as `ucp status NODE --json` shows them to the operator. */
  async counters(node: string): Promise<Record<string, number>> {
    const r = await this.run(['status', node, '--json']);
    if (r.code !== 0) throw new Error(`ucp status ${node} failed: ${r.stderr}`);
    return (JSON.parse(r.stdout) as { counters: Record<string, number> }).counters;
  }

  /** Mosquitto's own log lines that mention `what` (it logs refused publishes as "Denied PUBLISH"). */
  hubLog(what: RegExp): string[] {
    return this.hub.stderr.split('\n').filter((l) => what.test(l));
  }

  async stop(): Promise<void> {
    for (const stop of this.stops.splice(0).reverse()) await stop().catch(() => undefined);
    for (const p of [...this.procs].reverse()) await p.stop();
    removeDir(this.dir);
  }
}
