/**
 * `npm run bench [-- SUITE...]`: runs the named suites (all when none is named), prints one table and
 * writes the figures to bench-results/<suite>.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/processes.js';
import { bridgeBench } from './bridge.js';
import { failoverBench } from './failover.js';
import { footprintBench } from './footprint.js';
import { jobsBench } from './jobs.js';
import { transportBench } from './transport.js';

export interface BenchRow {
  metric: string;
  bare: number | null;
  project: number | null;
  ratio: number | null;
  target: string;
  /** null where the row has no target. */
  pass: boolean | null;
}

export interface BenchResult {
  suite: string;
  rows: BenchRow[];
  details: Record<string, unknown>;
}

const SUITES: Record<string, () => Promise<BenchResult>> = {
  transport: transportBench,
  jobs: jobsBench,
  failover: failoverBench,
  bridge: bridgeBench,
  footprint: footprintBench,
};

function printTable(results: BenchResult[]): void {
  const header = ['suite', 'metric', 'baseline', 'ucp-edge', 'ratio', 'target', 'ok'];
  const rows = results.flatMap((r) =>
    r.rows.map((row) => [r.suite, row.metric, row.bare ?? '-', row.project ?? '-', row.ratio ?? '-', row.target, row.pass === null ? '' : row.pass ? 'yes' : 'NO'].map(String)),
  );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  process.stdout.write(`${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${rows.map(line).join('\n')}\n`);
}

const requested = process.argv.slice(2).filter((a) => a !== '--');
const names = requested.length > 0 ? requested : Object.keys(SUITES);
const unknown = names.filter((n) => !(n in SUITES));
if (unknown.length > 0) {
  process.stderr.write(`unknown bench suite(s): ${unknown.join(', ')}; available: ${Object.keys(SUITES).join(', ')}\n`);
  process.exit(2);
}

const results: BenchResult[] = [];
for (const name of names) {
  process.stderr.write(`running ${name} ...\n`);
  results.push(await SUITES[name]!());
}
printTable(results);
const outDir = join(ROOT, 'bench-results');
mkdirSync(outDir, { recursive: true });
const machine = { node: process.version, cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', date: new Date().toISOString() };
for (const r of results) writeFileSync(join(outDir, `${r.suite}.json`), `${JSON.stringify({ machine, ...r }, null, 2)}\n`);
process.stderr.write(`results written to ${outDir}\n`);
