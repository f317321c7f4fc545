import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, freePort, Proc, removeDir, ROOT, startHubProcess, tempDir, UCP_BIN } from '../helpers/processes.js';

const HOOK = join(ROOT, 'test', 'helpers', 'module-log.mjs');

/** The project modules and packages a module log names, as paths below the package root. */
function loaded(file: string): string[] {
  return [...new Set(readFileSync(file, 'utf8').split('\n'))].filter((url) => url.startsWith('file://')).map((url) => url.slice(url.indexOf(ROOT) + ROOT.length + 1));
}

const ROLE_CODE: Record<string, RegExp> = {
  broker: /^dist\/src\/broker\//,
  executor: /^dist\/src\/executor\//,
  datastore: /^dist\/src\/datastore\//,
};
/** What no role node needs: the bridge and its Sparkplug/protobuf codecs, the hub, client code, pretty logs. */
const NO_ROLE_NEEDS = [/^dist\/firmware-bridge\//, /sparkplug-payload/, /protobufjs/, /^node_modules\/aedes/, /^dist\/src\/hub\//, /^dist\/src\/client\//, /pino-pretty/];

/**
 * Each command loads only its own code: real `ucp` processes started with a resolve hook that writes down
 * every module they load.
 */
describe('each command loads only its own code', () => {
  let dir: string;
  let port: number;
  let hub: Proc;

  beforeAll(async () => {
    dir = tempDir('ucp-lazy-');
    port = await freePort();
    hub = await startHubProcess(port);
  }, 60_000);

  afterAll(async () => {
    await hub?.stop();
    removeDir(dir);
  });

  it('`ucp --version` loads the command line parser and nothing of the runtime', () => {
    const log = join(dir, 'version.log');
    const out = execFileSync(process.execPath, ['--import', HOOK, UCP_BIN, '--version'], { env: cleanEnv({ MODULE_LOG_FILE: log }) }).toString();
    expect(out.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const modules = loaded(log);
    expect(modules).toContain('dist/src/cli/main.js');
    expect(modules.filter((m) => /^dist\/src\/(transport|store|config|log|broker|executor|datastore|hub|client)\//.test(m) || /^node_modules\/(mqtt|lmdb|cbor-x|pino|aedes|smol-toml)/.test(m))).toEqual([]);
  });

  it.each(['broker', 'executor', 'datastore'])('%s: the process loads its own role and no other role, bridge or hub', async (role) => {
    const log = join(dir, `${role}.log`);
    const node = new Proc(process.execPath, ['--import', HOOK, UCP_BIN, role, '--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'lazy', '--node-id', `lazy-${role}`, '--data-dir', join(dir, role)], cleanEnv({ MODULE_LOG_FILE: log }));
    try {
      await node.waitForLog({ msg: 'connected' }, 60_000);
    } finally {
      await node.stop();
    }
    const modules = loaded(log);
    expect(modules.some((m) => ROLE_CODE[role]!.test(m))).toBe(true);
    const others = Object.entries(ROLE_CODE).filter(([r]) => r !== role).map(([, pattern]) => pattern);
    expect(modules.filter((m) => [...others, ...NO_ROLE_NEEDS].some((p) => p.test(m)))).toEqual([]);
  }, 90_000);
});
