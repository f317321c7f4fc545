import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadPlan, parseReceiver, PlanError, submissionOrder, type PlanDefaults } from '../../src/client/plan.js';
import { removeDir, tempDir } from '../helpers/processes.js';

const DEFAULTS: PlanDefaults = { priority: 'normal', timeoutS: 300, maxMemoryMb: 256 };
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * A plan exactly as REC's own test artifacts write them (execution_plan_twice_named): named data first,
 * the module outside the plan's folder, no job ids, paths in the job written from its root, and a second
 * job reading the first one's named result as its stdin.
 */
const REC_TWICE_NAMED = `
[named_data]
wasm-module = "../smoke.wasm"
stdin = "data/stdin_input.txt"
infile = "data/infile.txt"
databin = "data/data.bin"

[[jobs]]

[jobs.metadata]
wasm_module = "wasm-module"
results_receiver = "dtn://client/"
argv = ["a", "b", "c"]
stdin_file = "stdin"
dirs = ["/output", "/temp"]
stdout_file = "/output/stdout.log"
stderr_file = "/output/stderr.log"
results = ["/out.txt", "/output"]

[jobs.metadata.capabilities]
cpu_cores = 1
free_cpu_capacity = 0
free_memory = 0
free_disk_space = 0

[jobs.metadata.env]
FOO = "bar"

[jobs.metadata.data]
"/infile.txt" = "infile"
"/data.bin" = "databin"

[jobs.metadata.named_results]
"/out.txt" = "wasm_output_file"
"/output" = "output_archive"

[[jobs]]

[jobs.metadata]
wasm_module = "wasm-module"
results_receiver = "dtn://client/"
argv = ["x", "y", "z"]
stdin_file = "wasm_output_file"
dirs = ["/output", "/temp"]
stdout_file = "/output/stdout.log"
stderr_file = "/output/stderr.log"
results = ["/out.txt", "/output"]

[jobs.metadata.capabilities]
cpu_cores = 1

[jobs.metadata.env]
BAR = "baz"

[jobs.metadata.data]
"/infile.txt" = "infile"
"/data.bin" = "databin"

[jobs.metadata.named_results]
"/out.txt" = "wasm_output_file_2"
"/output" = "output_archive_2"
`;

/** A plan using ucp's extensions: given ids, priorities, timeouts, inline data with the job. */
const UCP_PLAN = `
[named_data]
"fire/district-3/temps" = "data/temps.txt"

[[jobs]]
[jobs.metadata]
job_id = "count"
wasm_module = "modules/read-input"
argv = ["read-input"]
results = ["output"]
results_receiver = "dtn://client/"
[jobs.metadata.capabilities]
cpu_cores = 1
tags = ["firefighting"]
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

describe('execution plans, read as REC writes them', () => {
  let root: string;
  let dir: string;
  const write = (rel: string, text = 'x') => {
    mkdirSync(join(root, rel, '..'), { recursive: true });
    writeFileSync(join(root, rel), text);
  };
  const plan = (text: string) => {
    writeFileSync(join(dir, 'plan.toml'), text);
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
  /** Minimal REC job, with extra metadata lines. */
  const job = (extra = '') => `[[jobs]]\n[jobs.metadata]\nwasm_module = "m"\n${extra}\n`;

  beforeEach(() => {
    root = tempDir();
    dir = join(root, 'plans');
    write('smoke.wasm');
    write('plans/data/stdin_input.txt', 'line1\nline2');
    write('plans/data/infile.txt', 'hello-from-host');
    write('plans/data/data.bin', '\x00\x01');
    write('plans/data/temps.txt', '21\n22\n');
    write('plans/modules/read-input.wasm');
    write('plans/modules/sum.wasm');
  });
  afterEach(() => removeDir(root));

  it("reads REC's execution_plan_twice_named unchanged: leading '/' stripped, a fresh UUID4 per job, files outside the plan's folder", () => {
    const p = plan(REC_TWICE_NAMED);
    expect(p.namedData).toEqual([
      { name: 'wasm-module', file: join(root, 'smoke.wasm') },
      { name: 'stdin', file: join(dir, 'data/stdin_input.txt') },
      { name: 'infile', file: join(dir, 'data/infile.txt') },
      { name: 'databin', file: join(dir, 'data/data.bin') },
    ]);
    const [first, second] = p.jobs;
    expect(first!.spec.job_id).toMatch(UUID4);
    expect(second!.spec.job_id).toMatch(UUID4);
    expect(first!.idGiven).toBe(false);
    expect(first!.spec).toEqual({
      job_id: first!.spec.job_id,
      wasm_module: 'wasm-module',
      capabilities: { cpu_cores: 1, free_cpu_capacity: 0, free_memory: 0, free_disk_space: 0 },
      argv: ['a', 'b', 'c'],
      env: { FOO: 'bar' },
      stdin_file: 'stdin',
      dirs: ['output', 'temp'],
      data: { 'infile.txt': 'infile', 'data.bin': 'databin' },
      stdout_file: 'output/stdout.log',
      stderr_file: 'output/stderr.log',
      results: ['out.txt', 'output'],
      named_results: { 'out.txt': 'wasm_output_file', output: 'output_archive' },
      priority: 'normal',
      timeout_s: 300,
      max_memory_mb: 256,
    });
    expect(first!.receiver).toEqual({ kind: 'submitter' });
    // The second job reads the first one's named result: it is chained to it.
    expect(second!.dependsOn).toEqual([first!.spec.job_id]);
    expect(p.externalRefs).toEqual([]);
    // Running the plan again is a new run: new ids.
    expect(plan(REC_TWICE_NAMED).jobs[0]!.spec.job_id).not.toBe(first!.spec.job_id);
  });

  it("keeps ucp's extensions: a given job id, priority, timeout, tags, inline data, and data expected from the network", () => {
    const p = plan(UCP_PLAN);
    expect(p.jobs.map((j) => [j.spec.job_id, j.idGiven])).toEqual([
      ['count', true],
      ['total', true],
    ]);
    expect(p.jobs[0]!.spec).toMatchObject({ capabilities: { cpu_cores: 1, tags: ['firefighting'] }, priority: 'normal', timeout_s: 300 });
    expect(p.jobs[0]!.inline).toEqual([{ name: 'modules/read-input', file: join(dir, 'modules/read-input.wasm') }]);
    expect(p.jobs[1]!.spec).toMatchObject({ priority: 'critical', timeout_s: 20, keep_archive: false });
    expect(p.jobs[1]!.dependsOn).toEqual(['count']);
    expect(p.externalRefs).toEqual([{ job: 'total', field: 'jobs[1].metadata.data."extra.txt"', name: 'weather/now' }]);
  });

  it('results_receiver: none keeps no archive, dtn:// is the submitter, ucp://<node> or a node id adds that client', () => {
    expect(plan(job()).jobs[0]!.spec.keep_archive).toBe(false);
    expect(plan(job()).jobs[0]!.receiver).toEqual({ kind: 'none' });
    expect(plan(job('results_receiver = "dtn:none"')).jobs[0]!.spec.keep_archive).toBe(false);
    const submitter = plan(job('results_receiver = "dtn://client/results"')).jobs[0]!;
    expect(submitter.spec.keep_archive).toBeUndefined();
    expect(submitter.spec.receivers).toBeUndefined();
    const other = plan(job('results_receiver = "ucp://command-post"')).jobs[0]!;
    expect(other.receiver).toEqual({ kind: 'node', node: 'command-post' });
    expect(other.spec.receivers).toEqual(['command-post']);
    expect(plan(job('results_receiver = "command-post"')).jobs[0]!.spec.receivers).toEqual(['command-post']);
    expect(problems(job('results_receiver = "http://x/"'))).toEqual([
      'jobs[0].metadata.results_receiver: "http://x/": expected dtn://... (the submitter collects the result), ucp://<node> or a node id (that client collects it as well)',
    ]);
    expect(parseReceiver('ucp://bad/name')).toMatch(/^after ucp:\/\/ comes a node id/);
  });

  it('reports every problem in words, one line per element, never a regular expression', () => {
    const found = problems(
      job(`dirs = ["/output", "/te mp", "/ok", "/../up"]
argv = ["a", 3]
stdout_file = 7
results = ["/out.txt", "/a/../../b"]
timeout_s = "soon"
retries = 3
[jobs.metadata.data]
"/in\\tput.txt" = "infile"
"/good.txt" = "bad\\u0001name"
[jobs.data]
"m" = "missing.wasm"`),
    );
    expect(found).toEqual([
      'jobs[0].metadata.dirs[1]: "/te mp": a job path may use letters, digits, \'.\', \'_\', \'-\' and \'/\' (no empty, "." or ".." parts)',
      'jobs[0].metadata.dirs[3]: "/../up": a job path must stay inside the job directory (no ".." parts)',
      'jobs[0].metadata.argv[1]: expected text, got a number',
      'jobs[0].metadata.stdout_file: expected text, got a number',
      'jobs[0].metadata.results[1]: "/a/../../b": a job path must stay inside the job directory (no ".." parts)',
      'jobs[0].metadata.timeout_s: expected unsigned integer, got string',
      'jobs[0].metadata: unknown field "retries"',
      'jobs[0].metadata.data key: "/in\\tput.txt": a job path may use letters, digits, \'.\', \'_\', \'-\' and \'/\' (no empty, "." or ".." parts)',
      'jobs[0].metadata.data."/good.txt": "bad\\u0001name": a data name is 1-512 characters of text without control characters',
      `jobs[0].data."m": file not found: missing.wasm (${join(dir, 'missing.wasm')})`,
    ]);
    for (const p of found) {
      expect(p).not.toContain('\n');
      expect(p).not.toMatch(/\[A-Za-z|\^\(|\$\//);
    }
  });

  it('takes any UTF-8 text without control characters as a data name', () => {
    write('plans/werte.csv', '1');
    const p = plan(`[named_data]\n"Messwerte/Bezirk 3 (°C) – Lahn" = "werte.csv"\n${job('stdin_file = "Messwerte/Bezirk 3 (°C) – Lahn"')}`);
    expect(p.jobs[0]!.spec.stdin_file).toBe('Messwerte/Bezirk 3 (°C) – Lahn');
    expect(problems(`[named_data]\n"tab\\there" = "werte.csv"\n${job()}`)).toEqual(['named_data key: "tab\\there": a data name is 1-512 characters of text without control characters']);
  });

  it('resolves files relative to the plan file, and takes absolute paths and paths outside its folder', () => {
    write('elsewhere/abs.bin', 'a');
    const p = plan(`[named_data]\n"abs" = "${join(root, 'elsewhere/abs.bin')}"\n"up" = "../elsewhere/abs.bin"\n${job()}`);
    expect(p.namedData).toEqual([
      { name: 'abs', file: join(root, 'elsewhere/abs.bin') },
      { name: 'up', file: join(root, 'elsewhere/abs.bin') },
    ]);
    expect(problems(`[named_data]\n"d" = "data"\n${job()}`)).toEqual(['named_data."d": data is not a file']);
  });

  it('refuses missing fields, unknown sections, duplicate ids, two publishers of one name, one name given two files, and cycles', () => {
    expect(problems('[[jobs]]\n[jobs.metadata]\nargv = []\n')).toEqual(['jobs[0].metadata.wasm_module: missing (the data name of the module to run)']);
    expect(problems(`[settings]\nx = 1\n${job()}`)[0]).toBe('unknown top-level key "settings" (a plan has [named_data] and [[jobs]])');
    const j = (id: string, reads: string, publishes: string) => `[[jobs]]\n[jobs.metadata]\njob_id = "${id}"\nwasm_module = "m"\n[jobs.metadata.data]\n"in" = "${reads}"\n[jobs.metadata.named_results]\n"out" = "${publishes}"\n`;
    expect(problems(j('a', 'x', 'r/a') + j('a', 'y', 'r/b'))).toContain('jobs[1].metadata.job_id: "a" is already used by jobs[0]');
    expect(problems(j('a', 'x', 'r/same') + j('b', 'y', 'r/same'))).toContain('jobs[1].metadata.named_results: "r/same" is also published by job a');
    expect(problems(j('a', 'r/b', 'r/a') + j('b', 'r/a', 'r/b'))).toContain("jobs wait for each other's results in a cycle: a -> b -> a");
    write('plans/one.txt', '1');
    write('plans/two.txt', '2');
    expect(problems(`[named_data]\n"n" = "one.txt"\n${job()}[jobs.data]\n"n" = "two.txt"\n`)).toEqual([`jobs[0].data: data "n" is also given by named_data with another file (${join(dir, 'one.txt')})`]);
    expect(problems(job('job_id = "has space"'))).toEqual(['jobs[0].metadata.job_id: "has space": a job id is 1-128 letters, digits, \'.\', \'_\' or \'-\' (and not "." or "..")']);
  });

  it('names like "constructor" are unknown fields, not crashes; REC\'s submitter field is ignored as REC ignores it', () => {
    expect(problems(job('constructor = 1\ntoString = "x"'))).toEqual(['jobs[0].metadata: unknown field "constructor"', 'jobs[0].metadata: unknown field "toString"']);
    expect(plan(job('submitter = "dtn://someone/"')).jobs).toHaveLength(1);
  });

  it('submits every job after the jobs it reads from, otherwise in plan order', () => {
    const j = (id: string, reads: string, publishes: string) => `[[jobs]]\n[jobs.metadata]\njob_id = "${id}"\nwasm_module = "m"\nstdin_file = "${reads}"\n[jobs.metadata.named_results]\n"out" = "${publishes}"\n`;
    write('plans/x.txt');
    const p = plan(`[named_data]\n"x" = "x.txt"\n${j('late', 'r/mid', 'r/late')}${j('free', 'x', 'r/free')}${j('mid', 'r/first', 'r/mid')}${j('first', 'x', 'r/first')}`);
    expect(submissionOrder(p).map((x) => x.spec.job_id)).toEqual(['first', 'mid', 'late', 'free']);
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

  it('reports TOML syntax errors with their line, and a missing plan file in words', () => {
    expect(problems('[[jobs]\nx = 1\n')[0]).toMatch(/^line 1, column \d+: not valid TOML/);
    expect(() => loadPlan(join(dir, 'nope.toml'), DEFAULTS)).toThrow(/no such plan file/);
  });
});
