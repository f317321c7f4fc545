import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestPki {
  readonly ca: string;
  readonly hubCert: string;
  readonly hubKey: string;
  /** Issues a client certificate whose common name is `node`, signed by `ca` (the test CA by default). */
  client(node: string, ca?: { cert: string; key: string }): { cert: string; key: string };
  /** A second CA nobody trusts, to sign certificates that must be refused. */
  rogueCa(): { cert: string; key: string };
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

/**
 * A throwaway PKI made with openssl at test time: a CA, a hub certificate for `hosts` and 127.0.0.1, and
 * client certificates on demand. Nothing is committed; every run makes its own.
 */
export function makeTestPki(dir: string, hosts: readonly string[]): TestPki {
  mkdirSync(dir, { recursive: true });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const makeCa = (name: string) => {
    openssl(['req', '-x509', ...key, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`], dir);
    return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  };
  const ca = makeCa('ucp-test-ca');
  const issue = (name: string, cn: string, ext: string, signer: { cert: string; key: string }) => {
    writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
    openssl(['req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', signer.cert, '-CAkey', signer.key, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`], dir);
    return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  };
  const san = [...hosts.map((h) => `DNS:${h}`), 'IP:127.0.0.1'].join(',');
  const hub = issue('hub', hosts[0] ?? 'localhost', `subjectAltName=${san}\nextendedKeyUsage=serverAuth`, ca);
  return {
    ca: ca.cert,
    hubCert: hub.cert,
    hubKey: hub.key,
    client: (node, signer = ca) => issue(`client-${node}-${Math.random().toString(36).slice(2, 6)}`, node, 'extendedKeyUsage=clientAuth', signer),
    rogueCa: () => makeCa('rogue-ca'),
  };
}
