import { existsSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, removeDir, ROOT, tempDir, ucp, ucpRun, type Proc } from '../helpers/processes.js';

/** Splits a shell line into words: single and double quotes, no expansions; a `#` outside quotes ends it. */
function words(line: string): string[] {
  const out: string[] = [];
  let word: string | undefined;
  let quote: string | undefined;
  for (const ch of line) {
    if (quote !== undefined) {
      if (ch === quote) quote = undefined;
      else word = (word ?? '') + ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      word ??= '';
    } else if (ch === '#' && word === undefined) {
      break;
    } else if (/\s/.test(ch)) {
      if (word !== undefined) out.push(word);
      word = undefined;
    } else {
      word = (word ?? '') + ch;
    }
  }
  if (word !== undefined) out.push(word);
  return out;
}

/** The README's "A multi-node cluster, step by step" commands, in order. */
function walkthrough(): Array<{ line: string; args: string[]; comment: string }> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.split('## A multi-node cluster, step by step')[1] ?? '';
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  return block
    .split('\n')
    .filter((l) => l.startsWith('npx ucp ') || l.startsWith('kill '))
    .map((line) => ({ line, args: words(line), comment: line.includes('#') ? line.slice(line.lastIndexOf('#')) : '' }));
}

const LONG_RUNNING = new Set(['hub', 'broker', 'executor', 'datastore', 'up']);

/**
 * The README's walkthrough, run as written from a fresh clone: every `npx ucp` line of it, in order, with
 * each node in its own process, from a working directory holding the repository's files. Only the hub's
 * port is changed (a free one instead of 1883) and the cluster name is the test's own. A line with a
 * placeholder (`<job id>`) is shown as an example and skipped; `kill -9 <pid of X>` kills that node.
 */
describe('the README walkthrough works as written', () => {
  let cwd: string;
  let port: number;
  const nodes = new Map<string, Proc>();
  let env: Record<string, string>;

  beforeAll(async () => {
    cwd = tempDir('ucp-walkthrough-');
    for (const entry of ['examples', 'test']) symlinkSync(join(ROOT, entry), join(cwd, entry));
    port = await freePort();
    env = { UCP_HUB: `mqtt://127.0.0.1:${port}`, UCP_CLUSTER: 'walkthrough', XDG_STATE_HOME: join(cwd, 'state') };
  });

  afterAll(async () => {
    for (const p of [...nodes.values()].reverse()) await p.stop();
    removeDir(cwd);
  });

  it('every step, in order', async () => {
    const steps = walkthrough();
    expect(steps.length).toBeGreaterThan(15);
    const ran: string[] = [];
    for (const step of steps) {
      if (step.args[0] === 'kill') {
        const target = /<pid of (\S+)>/.exec(step.line)?.[1];
        const proc = target !== undefined ? nodes.get(target) : undefined;
        expect(proc, step.line).toBeDefined();
        proc!.kill('SIGKILL');
        await proc!.exited;
        nodes.delete(target!);
        continue;
      }
      if (step.line.includes('<') && step.line.includes('>')) continue;
      const args = step.args.slice(2).map((a) => (a === '1883' ? String(port) : a));
      const command = args[0]!;
      if (LONG_RUNNING.has(command)) {
        const proc = ucp(args, env, cwd);
        const id = args[args.indexOf('--node-id') + 1] ?? command;
        nodes.set(command === 'hub' ? 'hub' : id, proc);
        if (command === 'hub') await proc.waitForLine(/hub listening on/, 20_000);
        else await proc.waitForLog({ msg: 'connected' }, 20_000);
        ran.push(step.line);
        continue;
      }
      const expected = /exits (\d)/.exec(step.comment)?.[1];
      const result = await ucpRun(args, env, 120_000, cwd);
      expect(result.code, `${step.line}\n${result.stdout}\n${result.stderr}`).toBe(Number(expected ?? 0));
      expect(result.stderr, step.line).not.toMatch(/^\{/m);
      ran.push(step.line);
      if (command === 'nodes') for (const id of ['west-broker', 'fire-unit-1', 'ambulance-2']) expect(result.stdout, step.line).toMatch(new RegExp(`^${id}\\s+\\S+\\s+alive`, 'm'));
    }
    // What the steps say they leave behind is there.
    expect(existsSync(join(cwd, 'results', 'fw-alert_result.zip'))).toBe(true);
    expect(readFileSync(join(cwd, 'fetched', 'fire', 'district-3', 'temps'), 'utf8')).toBe(readFileSync(join(ROOT, 'examples', 'fire-watch', 'data', 'temps.csv'), 'utf8'));
    expect(ran.some((l) => l.includes('outbox --wait'))).toBe(true);
  }, 400_000);
});
