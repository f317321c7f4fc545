import type { Credential } from './credentials.js';

export interface MosquittoPolicyOptions {
  /** Clusters the policy covers: topics name them literally, so nothing outside them can be written. */
  readonly clusters: readonly string[];
  /** Where the written files will live, as Mosquitto should find them. */
  readonly dir: string;
  /** The listener's port. */
  readonly port: number;
  readonly host: string;
  /** Largest message payload (protocol.max_message_bytes). */
  readonly maxMessageBytes: number;
  /** The hub's certificate and key (PEM files), for TLS; and a CA for client certificates. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly clientCaFile?: string };
}

export interface MosquittoPolicy {
  readonly conf: string;
  readonly passwords: string;
  readonly acl: string;
}

/** Room in a packet for the fixed header, the topic and the packet id around the payload. */
const PACKET_OVERHEAD_BYTES = 64 * 1_024;

/**
 * The embedded hub's policy (PROTOCOL.md, "Identity") for Mosquitto: the same credentials, client id =
 * user name, each node writing only topics that name itself in its role, and reading only its own inbox
 * plus presence and heartbeats. Pure: `ucp auth export-mosquitto` writes what this returns.
 *
 * Mosquitto cannot refuse retained messages by topic: a node's inbox writes are limited to the nodes in
 * the credentials file and the listed clusters, so what it can leave retained is bounded, and receivers
 * drop retained messages anywhere but on presence topics.
 */
export function mosquittoPolicy(credentials: ReadonlyMap<string, Credential>, opts: MosquittoPolicyOptions): MosquittoPolicy {
  const nodes = [...credentials.values()].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  const passwords = nodes.filter((c) => c.mosquitto !== undefined).map((c) => `${c.node}:${c.mosquitto}\n`).join('');
  const acl: string[] = [
    '# ucp-edge topic policy, written by `ucp auth export-mosquitto`: regenerate it after every `ucp auth` change.',
    '# Every node reads its own inbox and everyone\'s presence and heartbeats.',
    ...opts.clusters.flatMap((c) => [`pattern read ucp/${c}/inbox/%u/#`, `pattern read ucp/${c}/presence/#`, `pattern read ucp/${c}/heartbeat/#`]),
    '',
    '# Each node writes only as itself, in the role its credential gives it, and only to known nodes.',
  ];
  for (const c of nodes) {
    acl.push(`user ${c.node}`);
    for (const cluster of opts.clusters) {
      acl.push(`topic write ucp/${cluster}/presence/${c.role}/${c.node}`, `topic write ucp/${cluster}/heartbeat/${c.role}/${c.node}`);
      for (const to of nodes) acl.push(`topic write ucp/${cluster}/inbox/${to.node}/${c.role}/${c.node}`);
    }
    acl.push('');
  }
  const maxPacket = opts.maxMessageBytes + PACKET_OVERHEAD_BYTES;
  const tls = opts.tls;
  const conf: string[] = [
    '# ucp-edge policy for Mosquitto 2, written by `ucp auth export-mosquitto`. Include this file from',
    '# mosquitto.conf (or run mosquitto -c on it); regenerate it after every `ucp auth` change.',
    'per_listener_settings false',
    'allow_anonymous false',
    `password_file ${opts.dir}/passwords`,
    `acl_file ${opts.dir}/acl`,
    '# Nagle off: each QoS 1 round trip would otherwise wait on a delayed ACK.',
    'set_tcp_nodelay true',
    `max_packet_size ${maxPacket}`,
    '',
    `listener ${opts.port} ${opts.host}`,
    '# The client id is the user name: no connection can take over another node\'s id.',
    'use_username_as_clientid true',
  ];
  if (tls !== undefined) conf.push(`certfile ${tls.certFile}`, `keyfile ${tls.keyFile}`);
  if (tls?.clientCaFile !== undefined && nodes.some((c) => c.certificate)) {
    conf.push(
      '',
      '# Nodes whose credential is a client certificate (common name = node id) log in here.',
      `listener ${opts.port + 1} ${opts.host}`,
      `certfile ${tls.certFile}`,
      `keyfile ${tls.keyFile}`,
      `cafile ${tls.clientCaFile}`,
      'require_certificate true',
      'use_identity_as_username true',
      'use_username_as_clientid true',
    );
  }
  return { conf: `${conf.join('\n')}\n`, passwords, acl: `${acl.join('\n')}\n` };
}
