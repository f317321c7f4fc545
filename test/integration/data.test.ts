import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient } from '../../src/client/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { NodeLink, linkOptionsFromConfig } from '../../src/transport/index.js';
import { freePort, removeDir, startHubProcess, tempDir, ucp, ucpRun, type Proc } from '../helpers/processes.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/**
 * Named data through real processes: a hub, a broker and two datastores, with a client in this process
 * and the `ucp data` commands. Covers routing, prefix gets with paging, restarts and the size limit.
 */
describe('named data across broker and datastores', () => {
  let dir: string;
  let port: number;
  const procs: Proc[] = [];
  let broker: Proc;
  let link: NodeLink;
  let data: DataClient;
  const common = () => ['--hub', `mqtt://127.0.0.1:${port}`, '--cluster', 'dt'];
  const startBroker = () => ucp(['broker', '--node-id', 'br', '--data-dir', join(dir, 'br'), ...common()]);
  const startStore = (id: string) => ucp(['datastore', '--node-id', id, '--data-dir', join(dir, id), '--set', 'datastore.max_object_bytes=4096', ...common()]);

  beforeAll(async () => {
    dir = tempDir();
    port = await freePort();
    procs.push(await startHubProcess(port));
    broker = startBroker();
    const s1 = startStore('ds-1');
    const s2 = startStore('ds-2');
    procs.push(broker, s1, s2);
    // Free space comes with heartbeats: wait until the broker has heard from both stores.
    await broker.waitForLog({ msg: 'peer up', peer: 'ds-1' });
    await broker.waitForLog({ msg: 'peer up', peer: 'ds-2' });
    const config = loadConfig({ env: {}, overrides: { 'node.cluster': 'dt', 'hub.url': `mqtt://127.0.0.1:${port}` } });
    link = await NodeLink.start({ ...linkOptionsFromConfig(config, createLogger({ level: 'silent', format: 'json' })), nodeId: 'tester', role: 'client', announce: false, watchPresence: true });
    data = new DataClient(link, 10_000);
    await new Promise((r) => setTimeout(r, 1_200));
  });

  afterAll(async () => {
    await link?.stop();
    for (const p of procs) await p.stop();
    removeDir(dir);
  });

  it('stores and reads back a name, keeping later writes and refusing older ones', async () => {
    const first = await data.put('fire/district-3/temps', bytes('21 22 23'));
    expect(first.outcome).toBe('stored');
    expect(['ds-1', 'ds-2']).toContain(first.store);
    expect(text((await data.get('fire/district-3/temps')).bytes)).toBe('21 22 23');
    const second = await data.put('fire/district-3/temps', bytes('24 25'));
    // The same name stays on the store that has it.
    expect(second).toMatchObject({ outcome: 'stored', store: first.store });
    expect(text((await data.get('fire/district-3/temps')).bytes)).toBe('24 25');
  });

  it('gets a name with all its subkeys across pages, and lists names with their datastore', async () => {
    const names = Array.from({ length: 230 }, (_, i) => `survey/sector-${String(i).padStart(3, '0')}`);
    for (const name of names) await data.put(name, bytes(name));
    await data.put('survey', bytes('index'));
    await data.put('surveyor/notes', bytes('not a subkey'));
    const got: string[] = [];
    for await (const item of data.getPrefix('survey')) {
      expect(text(item.bytes)).toBe(item.name === 'survey' ? 'index' : item.name);
      got.push(item.name);
    }
    // 231 names come in two pages of at most 200, in name order, without the sibling "surveyor".
    expect(got).toEqual(['survey', ...names]);
    const listed = await data.list('survey');
    expect(listed.length).toBe(231);
    expect(new Set(listed.map((l) => l.store)).size).toBeGreaterThanOrEqual(1);
  });

  it('refuses an object over the datastore limit with a clear error', async () => {
    await expect(data.put('big/blob', new Uint8Array(5_000))).rejects.toThrow(/5000 bytes, over this datastore's 4096-byte limit/);
    await expect(data.get('big/blob')).rejects.toThrow(/no data named "big\/blob"/);
  });

  it('the broker finds data again after a restart, and a datastore keeps it across SIGKILL', async () => {
    const { store } = await data.put('rescue/teams', bytes('alpha bravo'));
    broker.kill('SIGKILL');
    broker = startBroker();
    procs.push(broker);
    await broker.waitForLog({ msg: 'connected' });
    const storeProc = procs.find((p) => p.child.spawnargs.includes(store))!;
    storeProc.kill('SIGKILL');
    const restarted = startStore(store);
    procs.push(restarted);
    await broker.waitForLog({ msg: 'peer up', peer: store, incarnation: 2 });
    expect(text((await data.get('rescue/teams')).bytes)).toBe('alpha bravo');
  });

  it('works from the command line: put, get, ls and rm, including a job\'s data', async () => {
    const file = join(dir, 'in.txt');
    writeFileSync(file, 'payload');
    for (const name of ['job-9/input/a', 'job-9/result.zip', 'job-9/output/log']) {
      expect((await ucpRun(['data', 'put', name, file, ...common()])).code).toBe(0);
    }
    const out = join(dir, 'out.txt');
    expect((await ucpRun(['data', 'get', 'job-9/input/a', '--out', out, ...common()])).code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('payload');
    const rm = await ucpRun(['data', 'rm', '--job', 'job-9', '--json', ...common()]);
    expect(JSON.parse(rm.stdout)).toEqual({ deleted: 2 });
    const ls = await ucpRun(['data', 'ls', 'job-9', '--json', ...common()]);
    const listed = JSON.parse(ls.stdout) as Array<{ name: string; owner: string | null }>;
    expect(listed.map((i) => i.name)).toEqual(['job-9/result.zip']);
    // Written by this directory's client identity, which the listing names as the owner.
    const owner = listed[0]!.owner;
    expect(owner).toMatch(/^\S+$/);
    const shown = (await ucpRun(['data', 'ls', 'job-9', ...common()])).stdout.trim().split('\n');
    expect(shown[0]).toMatch(/^NAME\s+SIZE\s+OWNER\s+DATASTORE$/);
    expect(shown[1]!.trim().split(/\s+/)).toEqual(['job-9/result.zip', '7', owner, expect.any(String)]);
    const bad = await ucpRun(['data', 'put', 'bell\u0007name', file, ...common()]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toEqual(['ucp: "bell\\u0007name" is not a data name: a data name is 1-512 characters of text without control characters']);
    // Many short-lived processes: on a loaded machine each start takes a while.
  }, 120_000);

  it('takes any text as a data name, and `data get --prefix` writes only names that stay inside its folder', async () => {
    const file = join(dir, 'free.txt');
    writeFileSync(file, 'werte\n');
    for (const name of ['Messwerte Bezirk 3 (°C)/Lahn – Nord', 'Messwerte Bezirk 3 (°C)/Lahn – Süd', 'escape/../../outside.txt']) {
      const put = await ucpRun(['data', 'put', name, file, ...common()]);
      expect(put, put.stderr).toMatchObject({ code: 0 });
    }
    const got = await ucpRun(['data', 'get', 'Messwerte Bezirk 3 (°C)/Lahn – Süd', ...common()]);
    expect(got).toMatchObject({ code: 0, stdout: 'werte' });
    const outDir = join(dir, 'fetched');
    const all = await ucpRun(['data', 'get', 'Messwerte Bezirk 3 (°C)', '--prefix', '--out-dir', outDir, ...common()]);
    expect(all.code, all.stderr).toBe(0);
    for (const leaf of ['Lahn – Nord', 'Lahn – Süd']) expect(readFileSync(join(outDir, 'Messwerte Bezirk 3 (°C)', leaf), 'utf8')).toBe('werte\n');
    // A name that would climb out of the folder is reported and skipped; with nothing written, exit 1.
    const escape = await ucpRun(['data', 'get', 'escape', '--prefix', '--out-dir', join(outDir, 'inner'), ...common()]);
    expect(escape.code).toBe(1);
    expect(escape.stdout).toContain('"escape/../../outside.txt": skipped, the name is not a path that stays inside');
    expect(existsSync(join(outDir, 'outside.txt'))).toBe(false);
    // Nothing at all below a prefix says so on one line and exits 1.
    const none = await ucpRun(['data', 'get', 'nothing/here', '--prefix', '--out-dir', outDir, ...common()]);
    expect(none.code).toBe(1);
    expect(none.stderr.trim()).toBe('ucp: no data at or below "nothing/here"; `ucp data ls` lists what there is');
  }, 120_000);
});
