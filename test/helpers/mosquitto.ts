import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Proc, cleanEnv, freePort } from './processes.js';

function which(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Interop tests need Debian's mosquitto and mosquitto-clients (`.ci/run` installs them). Locally they are
 * skipped when missing; under CI a missing tool is a failure, never a silent skip.
 */
export const HAVE_MOSQUITTO = which('mosquitto') && which('mosquitto_pub');
export const SKIP_WITHOUT_MOSQUITTO = !HAVE_MOSQUITTO && process.env.CI !== 'true';

/**
 * A real Mosquitto broker on a free loopback port, with TCP_NODELAY as every hub here must have; or, with
 * `conf` and `port`, one running a configuration written elsewhere (e.g. by `ucp auth export-mosquitto`).
 */
export async function startMosquitto(
  dir: string,
  options: { name?: string; extra?: readonly string[]; conf?: string; port?: number; tls?: boolean } = {},
): Promise<{ proc: Proc; url: string; port: number }> {
  const port = options.port ?? (await freePort());
  const conf = options.conf ?? join(dir, `${options.name ?? 'mosquitto'}.conf`);
  // `extra` adds configuration lines, e.g. a bridge to another hub.
  if (options.conf === undefined) writeFileSync(conf, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'set_tcp_nodelay true', 'log_dest stderr', ...(options.extra ?? []), ''].join('\n'));
  const proc = new Proc('mosquitto', ['-c', conf], cleanEnv());
  // Mosquitto block-buffers its log when not on a terminal, so wait for the port instead of a log line.
  const deadline = Date.now() + 10_000;
  while (!(await accepts(port))) {
    if (Date.now() > deadline || proc.child.exitCode !== null) {
      await proc.stop();
      throw new Error(`mosquitto did not start on port ${port}: ${proc.stderr.slice(-500)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, url: `${options.tls === true ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`, port };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Publishes raw bytes with the real mosquitto_pub client. */
export function mosquittoPub(port: number, topic: string, file: string, retain = false): void {
  execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', topic, '-f', file, ...(retain ? ['-r'] : [])], { stdio: 'pipe' });
}
