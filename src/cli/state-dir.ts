import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import type { UcpConfig } from '../config/index.js';

/** Where a system service keeps its state when systemd gives it none by name. */
export const SYSTEM_STATE_DIR = '/var/lib/ucp-edge';

/**
 * The directory under which each node keeps its state in `<node id>/`, never the current directory:
 * - under systemd, the unit's StateDirectory= (STATE_DIRECTORY), or /var/lib/ucp-edge for a service with no
 *   home (systemd marks every process it starts with INVOCATION_ID; a terminal in a desktop session is one
 *   too, so that alone does not make a service);
 * - for a user, the XDG state directory: $XDG_STATE_HOME/ucp-edge, else ~/.local/state/ucp-edge.
 */
export function stateRoot(env: NodeJS.ProcessEnv = process.env): string {
  const fromSystemd = env.STATE_DIRECTORY?.split(':')[0];
  if (fromSystemd !== undefined && isAbsolute(fromSystemd)) return fromSystemd;
  const home = env.HOME !== undefined && env.HOME !== '' && env.HOME !== '/' ? env.HOME : undefined;
  if (env.INVOCATION_ID !== undefined && (home === undefined || process.getuid?.() === 0)) return SYSTEM_STATE_DIR;
  // The XDG spec says a relative $XDG_STATE_HOME is invalid and must be ignored.
  const xdg = env.XDG_STATE_HOME;
  if (xdg !== undefined && isAbsolute(xdg)) return join(xdg, 'ucp-edge');
  return join(home ?? homedir(), '.local', 'state', 'ucp-edge');
}

/** A node's data directory: node.data_dir (--data-dir) when set, else `<state root>/<node id>`. */
export function defaultDataDir(config: UcpConfig, nodeId: string): string {
  return config.node.data_dir !== '' ? resolve(config.node.data_dir) : join(stateRoot(), nodeId);
}
