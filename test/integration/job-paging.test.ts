import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, JobClient } from '../../src/client/index.js';
import type { BodyOf, JobSpec } from '../../src/protocol/index.js';
import type { NodeRuntime } from '../../src/transport/index.js';
import { ROOT } from '../helpers/processes.js';
import { SecureCluster } from '../helpers/secure-cluster.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'wasm');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Listed = Array<{ id: string; state: string; owner: string; updatedAt: number }>;

function spec(jobId: string, module: string, extra: Partial<JobSpec> = {}): JobSpec {
  return { job_id: jobId, wasm_module: module, capabilities: {}, argv: [], env: {}, dirs: [], data: {}, results: [], named_results: {}, priority: 'normal', timeout_s: 120, max_memory_mb: 64, ...extra };
}

/**
 * `ucp jobs` pages: a real broker, datastore and executor behind a hub with per-node credentials, jobs of
 * three clients in every state, and the listing asked for by real `ucp jobs` processes as each of them.
 */
describe('ucp jobs: newest first, --limit, --since, --state, and who sees what', () => {
  let c: SecureCluster;
  let alice: NodeRuntime;
  let bob: NodeRuntime;
  let sinceBatch2 = 0;
  const batch1 = Array.from({ length: 20 }, (_, i) => `a1-${String(i).padStart(2, '0')}`);
  const batch2 = Array.from({ length: 10 }, (_, i) => `a2-${String(i).padStart(2, '0')}`);

  async function list(args: string[], node = 'ops'): Promise<Listed> {
    const r = await c.run(['jobs', '--json', ...args], node);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as Listed;
  }

  beforeAll(async () => {
    c = await SecureCluster.start({ kind: 'embedded', cluster: 'pg', nodes: { br: 'broker', ds: 'datastore', ex: 'executor', alice: 'client', bob: 'client', carol: 'client' } });
    const broker = c.spawn('broker', 'br');
    c.spawn('datastore', 'ds');
    c.spawn('executor', 'ex', ['--set', 'executor.slots=2']);
    for (const peer of ['ds', 'ex']) await broker.waitForLog({ msg: 'peer up', peer }, 60_000);
    alice = await c.runtime('alice');
    bob = await c.runtime('bob');
    await Promise.all([alice.connect(), bob.connect()]);
    const aliceJobs = new JobClient(alice.link, alice.store, new DataClient(alice.link, 20_000));
    const bobJobs = new JobClient(bob.link, bob.store, new DataClient(bob.link, 20_000));
    await new DataClient(alice.link, 20_000).put('alice/echo.wasm', readFileSync(join(FIXTURES, 'echo.wasm')));
    await new DataClient(alice.link, 20_000).put('alice/spin-for.wasm', readFileSync(join(FIXTURES, 'spin-for.wasm')));
    await new DataClient(bob.link, 20_000).put('bob/echo.wasm', readFileSync(join(FIXTURES, 'echo.wasm')));

    for (const id of batch1) await aliceJobs.submit(spec(id, 'alice/echo.wasm'));
    expect([...(await aliceJobs.wait(batch1, { timeoutMs: 90_000 })).values()].every((f) => f.job.state === 'succeeded')).toBe(true);
    // Finish times are broker wall-clock milliseconds: leave a gap --since can fall into.
    await sleep(50);
    sinceBatch2 = Date.now();
    await sleep(50);
    for (const id of batch2) await aliceJobs.submit(spec(id, 'alice/echo.wasm'));
    await bobJobs.submit(spec('b-shared', 'bob/echo.wasm', { receivers: ['carol'] }));
    await bobJobs.submit(spec('b-own', 'bob/echo.wasm'));
    await aliceJobs.wait([...batch2], { timeoutMs: 90_000 });
    await bobJobs.wait(['b-shared', 'b-own'], { timeoutMs: 90_000 });
    // One job that waits for an executor no one has, one that runs until the cluster stops.
    await bobJobs.submit(spec('b-queued', 'bob/echo.wasm', { capabilities: { tags: ['hazmat'] } }));
    await aliceJobs.submit(spec('a-running', 'alice/spin-for.wasm', { argv: ['spin-for', '600000'] }));
    for (;;) {
      if ((await aliceJobs.query('a-running')).state === 'running') break;
      await sleep(100);
    }
    // The listings below run as `ucp jobs` processes under these identities: one connection per node id.
    await alice.stop();
    await bob.stop();
  }, 240_000);

  afterAll(async () => {
    await c?.stop();
  });

  it('lists everything newest first: unfinished jobs, then finished ones by when they finished', async () => {
    const all = await list([]);
    expect(all.map((j) => j.id).sort()).toEqual([...batch1, ...batch2, 'b-shared', 'b-own', 'b-queued', 'a-running'].sort());
    expect(new Set(all.slice(0, 2).map((j) => j.id))).toEqual(new Set(['b-queued', 'a-running']));
    const finished = all.slice(2);
    expect(finished.every((j) => j.state === 'succeeded')).toBe(true);
    for (let i = 1; i < finished.length; i++) expect(finished[i]!.updatedAt).toBeLessThanOrEqual(finished[i - 1]!.updatedAt);
    // The last jobs listed are the first batch: they finished first.
    expect(new Set(finished.slice(-batch1.length).map((j) => j.id))).toEqual(new Set(batch1));
  }, 180_000);

  it('--limit shows the newest N, and the table says there are more', async () => {
    const all = await list([]);
    expect((await list(['--limit', '5'])).map((j) => j.id)).toEqual(all.slice(0, 5).map((j) => j.id));
    const table = await c.run(['jobs', '--limit', '3']);
    expect(table.code).toBe(0);
    expect(table.stdout.trim().split('\n')).toHaveLength(5);
    expect(table.stdout).toMatch(/\(the newest 3; more with --limit, or narrow with --since or --state\)/);
    const whole = await c.run(['jobs']);
    expect(whole.stdout).not.toMatch(/more with --limit/);
  }, 180_000);

  it('--state and --since narrow the list at the broker', async () => {
    expect((await list(['--state', 'running'])).map((j) => j.id)).toEqual(['a-running']);
    expect((await list(['--state', 'queued'])).map((j) => j.id)).toEqual(['b-queued']);
    expect(new Set((await list(['--state', 'active'])).map((j) => j.id))).toEqual(new Set(['a-running', 'b-queued']));
    expect(await list(['--state', 'failed'])).toEqual([]);
    const recent = await list(['--since', new Date(sinceBatch2).toISOString()]);
    // Jobs not yet finished at that time: the unfinished ones, and those that finished after it.
    expect(recent.map((j) => j.id).sort()).toEqual([...batch2, 'b-shared', 'b-own', 'b-queued', 'a-running'].sort());
    expect((await list(['--since', new Date(sinceBatch2).toISOString(), '--state', 'finished', '--limit', '4'])).every((j) => batch2.includes(j.id) || j.id.startsWith('b-'))).toBe(true);
    expect((await list(['--since', '1d'])).length).toBe(batch1.length + batch2.length + 4);
    const bad = await c.run(['jobs', '--state', 'lost']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/"lost" is not a job state/);
    const badSince = await c.run(['jobs', '--since', 'last tuesday']);
    expect(badSince.code).toBe(2);
    expect(badSince.stderr).toMatch(/a duration back from now such as 10m/);
  }, 180_000);

  it('a client sees its own jobs and those it receives, whatever it asks for; an operator every job', async () => {
    expect(new Set((await list([], 'bob')).map((j) => j.id))).toEqual(new Set(['b-shared', 'b-own', 'b-queued']));
    expect((await list([], 'carol')).map((j) => j.id)).toEqual(['b-shared']);
    expect(await list(['--owner', 'bob'], 'alice')).toEqual([]);
    expect((await list(['--owner', 'bob', '--state', 'finished'])).map((j) => j.id).sort()).toEqual(['b-own', 'b-shared']);
  }, 180_000);

  it('pages that follow each other\'s cursor hold every job once, in the same order as one long page', async () => {
    const ops = await c.runtime('ops', 'operator');
    await ops.connect();
    const ask = async (body: BodyOf<'job_list'>) => {
      const reply = await ops.link.request('br', 'job_list', body);
      if (reply.kind !== 'job_listing') throw new Error(`answered ${reply.kind}`);
      return reply.body;
    };
    const whole = await ask({ limit: 500 });
    expect(whole.next).toBeUndefined();
    const paged: string[] = [];
    let after: string | undefined;
    do {
      const page = await ask({ limit: 7, ...(after !== undefined ? { after } : {}) });
      expect(page.items.length).toBeLessThanOrEqual(7);
      paged.push(...page.items.map((i) => i.job_id));
      after = page.next;
    } while (after !== undefined);
    expect(paged).toEqual(whole.items.map((i) => i.job_id));
    // A cursor past everything ends the listing, and one made up by a client is refused as malformed.
    const last = await ask({ limit: 1, states: ['succeeded'], since: Date.now() + 60_000 });
    expect(last).toEqual({ items: [] });
    await expect(ops.link.request('br', 'job_list', { limit: 5, after: 'a1-00' } as BodyOf<'job_list'>)).rejects.toThrow();
  }, 180_000);
});
