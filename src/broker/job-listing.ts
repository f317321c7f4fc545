import { isFinal, type BodyOf, type JobState } from '../protocol/index.js';

/**
 * The order and filters of `job_list` (PROTOCOL.md, job_list), as pure functions the replica's indexes and
 * the unit tests share. Jobs are listed newest first: the unfinished ones by submission time, then the
 * finished ones by the time they finished. A cursor names the position of the last job a page held, so a
 * page goes on from there even if that job was pruned meanwhile.
 */

export const TIME_DIGITS = 15;

/** What a listing filter reads of a job: small enough to keep in an index entry. */
export interface JobFacts {
  readonly state: JobState;
  readonly owner: string;
  readonly receivers: readonly string[];
}

export type ListQuery = Pick<BodyOf<'job_list'>, 'owner' | 'receiver' | 'states' | 'since'>;

/** A position in the listing: `a` unfinished (by submission time), `f` finished (by finish time). */
export interface Position {
  readonly phase: 'a' | 'f';
  readonly at: number;
  readonly jobId: string;
}

export function cursorOf(position: Position): string {
  return `${position.phase}${pad(position.at)}:${position.jobId}`;
}

/** The position a cursor names; the wire schema has already checked its form. */
export function positionOf(cursor: string): Position {
  return { phase: cursor[0] === 'a' ? 'a' : 'f', at: Number(cursor.slice(1, 1 + TIME_DIGITS)), jobId: cursor.slice(2 + TIME_DIGITS) };
}

export function pad(time: number): string {
  return String(time).padStart(TIME_DIGITS, '0');
}

/** Newest first, ties broken by job id (descending), so every broker and every page agree. */
export function before(a: Position, b: Position): boolean {
  if (a.phase !== b.phase) return a.phase === 'a';
  if (a.at !== b.at) return a.at > b.at;
  return a.jobId > b.jobId;
}

export function factsOf(job: { readonly state: JobState; readonly owner: string; readonly spec: { readonly receivers?: readonly string[] } }): JobFacts {
  return { state: job.state, owner: job.owner, receivers: job.spec.receivers ?? [] };
}

export function matches(facts: JobFacts, query: ListQuery): boolean {
  if (query.owner !== undefined && facts.owner !== query.owner) return false;
  if (query.receiver !== undefined && facts.owner !== query.receiver && !facts.receivers.includes(query.receiver)) return false;
  if (query.states !== undefined && !query.states.includes(facts.state)) return false;
  return true;
}

/** Whether the query can hold unfinished, or finished, jobs at all: the other phase is then not read. */
export function wantsPhase(phase: 'a' | 'f', query: ListQuery): boolean {
  if (query.states === undefined) return true;
  return query.states.some((s) => isFinal(s) === (phase === 'f'));
}

/** A finished-index value: the facts a filter needs, so a page is filtered without reading job records. */
export function encodeFacts(facts: JobFacts): string {
  return [facts.state, facts.owner, ...facts.receivers].join('\0');
}

/** The facts an index value holds; undefined for entries written before it held them. */
export function decodeFacts(value: string): JobFacts | undefined {
  if (value === '') return undefined;
  const [state, owner, ...receivers] = value.split('\0');
  return { state: state as JobState, owner: owner!, receivers };
}
