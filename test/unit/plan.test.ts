import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadPlan, PlanError, type PlanDefaults } from '../../src/client/plan.js';
import { removeDir, tempDir } from '../helpers/processes.js';

const DEFAULTS: PlanDefaults = { priority: 'normal', timeoutS: 300, maxMemoryMb: 256 };

/** A plan in REC's format: named data first, inline data with a job, a chained second job. */
const REC_PLAN = `
[named_data]
"fire/district-3/temps" = "data/temps.txt"

[[jobs]]
[jobs.metadata]
job_id = "count"
wasm_module = "modules/read-input"
argv = ["read-input"]
dirs = ["output"]
stdout_file = "output/stdout"
stderr_file = "output/stderr"
results = ["output"]
results_receiver = "dtn://client/"
[jobs.metadata.capabilities]
cpu_cores = 1
tags = ["firefighting"]
[jobs.metadata.env]
SECTOR = "3"
[jobs.metadata.data]
"input/data.txt" = "fire/district-3/temps"
[jobs.metadata.named_results]
"output/summary.txt" = "fire/district-3/summary"
[jobs.data]
"modules/read-input" = "modules/read-input.wasm"

[[jobs]]
[jobs.metadata]
job_id = "total"
wasm_module = "modules/sum"
argv = ["sum", "in.txt", "out.txt"]
results = ["out.txt"]
priority = "critical"
timeout_s = 20
[jobs.metadata.data]
"in.txt" = "fire/district-3/summary"
"extra.txt" = "weather/now"
[jobs.data]
"modules/sum" = "modules/sum.wasm"
`;

describe('execution plans (REC format)', () => {
  let dir: string;
  const write = (rel: string, text = 'x') => {
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    writeFileSync(join(dir, rel), text);
  };
  const plan = (text: string) => {
    write('plan.toml', text);
    return loadPlan(join(dir, 'plan.toml'), DEFAULTS);
  };
  const problems = (text: string): string[] => {
    try {
      plan(text);
    } catch (err) {
      expect(err).toBeInstanceOf(PlanError);
      return [...(err as PlanError).problems];
    }
    throw new Error('expected the plan to be refused');
  };

  beforeEach(() => {
    dir = tempDir();
    write('data/temps.txt', '21\n22\n');
    write('modules/read-input.wasm');
    write('modules/sum.wasm');
  });
  afterEach(() => removeDir(dir));

  it('reads a REC plan unchanged, with paths relative to the plan file', () => {
    const p = plan(REC_PLAN);
    expect(p.namedData).toEqual([{ name: 'fire/district-3/temps', file: join(dir, 'data/temps.txt') }]);
    expect(p.jobs.map((j) => j.spec.job_id)).toEqual(['count', 'total']);
    const [count, total] = p.jobs;
    expect(count!.spec).toMatchObject({
      wasm_module: 'modules/read-input',
      argv: ['read-input'],
      env: { SECTOR: '3' },
      capabilities: { cpu_cores: 1, tags: ['firefighting'] },
      data: { 'input/data.txt': 'fire/district-3/temps' },
      named_results: { 'output/summary.txt': 'fire/district-3/summary' },
      priority: 'normal',
      timeout_s: 300,
      max_memory_mb: 256,
    });
    expect(count!.inline).toEqual([{ name: 'modules/read-input', file: join(dir, 'modules/read-input.wasm') }]);
    expect(count!.resultsReceiver).toBe('client');
    expect(total!.spec).toMatchObject({ priority: 'critical', timeout_s: 20 });
  });

  it('chains a job to the job that publishes the data it reads, and lists data it expects from the network', () => {
    const p = plan(REC_PLAN);
    expect(p.jobs[0]!.dependsOn).toEqual([]);
    expect(p.jobs[1]!.dependsOn).toEqual(['count']);
    expect(p.externalRefs).toEqual([{ job: 'total', field: 'jobs[1].metadata.data."extra.txt"', name: 'weather/now' }]);
  });

  it('reports every problem at once, one line each, naming the job index and field', () => {
    const bad = REC_PLAN.replace('argv = ["read-input"]', 'argv = "read-input"')
      .replace('timeout_s = 20', 'timeout_s = "soon"\nretries = 3')
      .replace('"modules/sum" = "modules/sum.wasm"', '"modules/sum" = "modules/missing.wasm"');
    const found = problems(bad);
    expect(found).toEqual([
      'jobs[0].metadata.argv: expected array, got string',
      'jobs[1].metadata.timeout_s: expected unsigned integer, got string',
      'jobs[1].metadata: unknown field "retries"',
      'jobs[1].data."modules/sum": file not found: modules/missing.wasm',
    ]);
    for (const p of found) expect(p).not.toContain('\n');
  });

  it('refuses missing required fields, unknown sections and paths that escape the job directory', () => {
    expect(problems('[[jobs]]\n[jobs.metadata]\nargv = []\n')).toEqual(['jobs[0].metadata.job_id: missing', 'jobs[0].metadata.wasm_module: missing']);
    expect(problems('[settings]\nx = 1\n[[jobs]]\n[jobs.metadata]\njob_id = "a"\nwasm_module = "m"\n')[0]).toMatch(/unknown top-level key "settings"/);
    const escape = problems('[[jobs]]\n[jobs.metadata]\njob_id = "a"\nwasm_module = "m"\n[jobs.metadata.data]\n"../../etc/passwd" = "x"\n');
    expect(escape[0]).toMatch(/jobs\[0\]\.metadata\.data key/);
  });

  it('refuses duplicate job ids, two publishers of one name, and jobs that wait for each other', () => {
    const job = (id: string, reads: string, publishes: string) =>
      `[[jobs]]\n[jobs.metadata]\njob_id = "${id}"\nwasm_module = "m"\n[jobs.metadata.data]\n"in" = "${reads}"\n[jobs.metadata.named_results]\n"out" = "${publishes}"\n`;
    expect(problems(job('a', 'x', 'r/a') + job('a', 'y', 'r/b'))).toContain('jobs[1].metadata.job_id: "a" is already used by jobs[0]');
    expect(problems(job('a', 'x', 'r/same') + job('b', 'y', 'r/same'))).toContain('jobs[1].metadata.named_results: "r/same" is also published by job "a"');
    expect(problems(job('a', 'r/b', 'r/a') + job('b', 'r/a', 'r/b'))).toContain("jobs wait for each other's results in a cycle: a -> b -> a");
  });

  it('refuses data files outside the plan folder, and names like "constructor" are unknown fields, not crashes', () => {
    const found = problems(`[named_data]\n"leak" = "/etc/passwd"\n"up" = "../outside.txt"\n[[jobs]]\n[jobs.metadata]\njob_id = "a"\nwasm_module = "m"\nconstructor = 1\ntoString = "x"\n`);
    writeFileSync(join(dir, '..', 'outside.txt'), 'secret');
    expect(found).toContain('named_data."leak": /etc/passwd must be relative to the plan\'s folder');
    expect(found.some((p) => p.startsWith('named_data."up": '))).toBe(true);
    expect(found).toContain('jobs[0].metadata: unknown field "constructor"');
    expect(found).toContain('jobs[0].metadata: unknown field "toString"');
    const escaped = problems(`[named_data]\n"up" = "../outside.txt"\n[[jobs]]\n[jobs.metadata]\njob_id = "a"\nwasm_module = "m"\n`);
    expect(escaped).toEqual(['named_data."up": ../outside.txt is outside the plan\'s folder']);
  });

  it('finds a dependency cycle in a long chain without exhausting the stack', () => {
    const n = 3_000;
    let text = '';
    for (let i = 0; i < n; i++) {
      text += `[[jobs]]\n[jobs.metadata]\njob_id = "j${i}"\nwasm_module = "m"\n[jobs.metadata.data]\n"in" = "r/${(i + 1) % n}"\n[jobs.metadata.named_results]\n"out" = "r/${i}"\n`;
    }
    const found = problems(text);
    expect(found.length).toBe(1);
    expect(found[0]).toMatch(/^jobs wait for each other's results in a cycle: j0 -> j1 -> .* -> j0$/);
  });

  it('reports TOML syntax errors with their line', () => {
    expect(problems('[[jobs]\nx = 1\n')[0]).toMatch(/^line 1, column \d+: not valid TOML/);
  });
});
