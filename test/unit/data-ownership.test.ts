import { describe, expect, it } from 'vitest';
import { budgetProblem, decideJobDelete, decideWrite } from '../../src/broker/data-ownership.js';

const jobs: Record<string, string> = { 'job-1': 'victim' };
const jobOwnerOf = (id: string) => jobs[id];
const victim = { id: 'victim', role: 'client' as const };
const mallory = { id: 'mallory', role: 'client' as const };
const ops = { id: 'ops', role: 'operator' as const };

/** Who may write which name, and whose it is afterwards: the rule the data router and datastores apply. */
describe('data ownership', () => {
  it('a name is its writer\'s; another client is refused, an operator takes it over', () => {
    expect(decideWrite(victim, 'victim/bin/echo.wasm', undefined, jobOwnerOf)).toEqual({ owner: 'victim', replace: false });
    expect(decideWrite(victim, 'victim/bin/echo.wasm', 'victim', jobOwnerOf)).toEqual({ owner: 'victim', replace: false });
    expect(decideWrite(mallory, 'victim/bin/echo.wasm', 'victim', jobOwnerOf)).toMatchObject({ code: 'not_owner', message: expect.stringMatching(/owned by victim/) });
    expect(decideWrite(ops, 'victim/bin/echo.wasm', 'victim', jobOwnerOf)).toEqual({ owner: 'ops', replace: true });
  });

  it('a known job\'s tree is its submitter\'s, but a name another node wrote there before the job stays that node\'s', () => {
    expect(decideWrite(victim, 'job-1/input', undefined, jobOwnerOf)).toEqual({ owner: 'victim', replace: false });
    expect(decideWrite(victim, 'job-1/input', 'victim', jobOwnerOf)).toEqual({ owner: 'victim', replace: false });
    expect(decideWrite(victim, 'job-1/input', 'mallory', jobOwnerOf)).toMatchObject({ code: 'not_owner', message: expect.stringMatching(/owned by mallory, who wrote it before job job-1 existed/) });
    expect(decideWrite(ops, 'job-1/input', 'mallory', jobOwnerOf)).toEqual({ owner: 'victim', replace: true });
    expect(decideWrite(mallory, 'job-1/result.zip', undefined, jobOwnerOf)).toMatchObject({ code: 'not_owner', message: expect.stringMatching(/submitted by victim/) });
    expect(decideWrite(ops, 'job-1/x', undefined, jobOwnerOf)).toEqual({ owner: 'victim', replace: true });
    // A job this broker does not know: an ordinary name.
    expect(decideWrite(mallory, 'job-2/x', undefined, jobOwnerOf)).toEqual({ owner: 'mallory', replace: false });
    expect(decideJobDelete(mallory, 'job-1', jobOwnerOf)).toMatchObject({ code: 'not_owner', message: expect.stringMatching(/submitted by victim/) });
    expect(decideJobDelete(victim, 'job-1', jobOwnerOf)).toEqual({ owner: 'victim', replace: false });
    expect(decideJobDelete(ops, 'job-1', jobOwnerOf)).toEqual({ owner: 'victim', replace: true });
    expect(decideJobDelete(mallory, 'job-2', jobOwnerOf)).toEqual({ owner: 'mallory', replace: false });
  });

  it('a client\'s bytes budget counts what it owns, minus what a write of its own replaces; operators have none', () => {
    expect(budgetProblem(victim, 'victim', 900, 100, 0, 1_000)).toBeUndefined();
    expect(budgetProblem(victim, 'victim', 900, 101, 0, 1_000)).toMatchObject({ code: 'over_budget', message: expect.stringMatching(/max_bytes_per_client = 1000/) });
    expect(budgetProblem(victim, 'victim', 1_000, 50, 60, 1_000)).toBeUndefined();
    expect(budgetProblem(victim, 'victim', 2_000, 10, 0, 1_000)).toMatchObject({ code: 'over_budget' });
    expect(budgetProblem(ops, 'ops', 2_000, 10, 0, 1_000)).toBeUndefined();
  });
});
