import { compare, compareEvents } from '../clock/index.js';
import type { BodyOf, JobView } from '../protocol/index.js';

export type Change = BodyOf<'sync_delta'>['changes'][number];
type Result = NonNullable<JobView['result']>;
type Superseded = NonNullable<JobView['superseded']>[number];

/** The newer of two changes to one record: causally later, else later in HLC time, else the higher origin. */
export function newer(a: Change, b: Change): boolean {
  if (a.origin === b.origin && a.seq === b.seq) return false;
  const order = compare(a.vc, b.vc);
  if (order === 'after') return true;
  if (order === 'before') return false;
  return compareEvents({ hlc: { wall: a.hlc[0], logical: a.hlc[1] }, node: a.origin }, { hlc: { wall: b.hlc[0], logical: b.hlc[1] }, node: b.origin }) > 0;
}

/** Two acceptances of the same attempt are the same result, whichever broker recorded them. */
function decision(r: Result): string {
  return `${r.attempt}/${r.executor}`;
}

/** True if acceptance `a` beats `b`: causally earlier, else the earlier HLC time, else the lower broker id. */
function acceptedFirst(a: Result, b: Result): boolean {
  const order = compare(a.decided_vc ?? {}, b.decided_vc ?? {});
  if (order === 'before') return true;
  if (order === 'after') return false;
  const at = (r: Result) => ({ hlc: { wall: r.decided_at?.[0] ?? 0, logical: r.decided_at?.[1] ?? 0 }, node: r.decided_by ?? '' });
  return compareEvents(at(a), at(b)) < 0;
}

function supersededBy(r: Result): Superseded {
  return { attempt: r.attempt, executor: r.executor, decided_by: r.decided_by ?? '', decided_at: r.decided_at ?? [0, 0] };
}

/**
 * Which change to a record to keep, or undefined to keep `current`. Names: the newer change. Jobs: the
 * newer change too, except that results are final: a record with an accepted result beats one without,
 * and of two different accepted results the one accepted first wins (see acceptedFirst). The losing
 * acceptance is listed in `superseded`, a set that only grows, so every broker ends with the same record
 * whatever order the changes came in; the record kept may then be `winner` with that list added.
 */
export function resolve(incoming: Change, current: Change): Change | undefined {
  if (incoming.table !== 'jobs' || incoming.job === undefined || current.job === undefined) return newer(incoming, current) ? incoming : undefined;
  const ra = incoming.job.result;
  const rb = current.job.result;
  let winner: Change;
  const lost: Superseded[] = [];
  if (ra !== undefined && rb !== undefined && decision(ra) !== decision(rb)) {
    const incomingWins = acceptedFirst(ra, rb);
    winner = incomingWins ? incoming : current;
    lost.push(supersededBy(incomingWins ? rb : ra));
  } else if ((ra === undefined) !== (rb === undefined)) {
    winner = ra !== undefined ? incoming : current;
  } else {
    winner = newer(incoming, current) ? incoming : current;
  }
  const winning = winner.job!.result;
  const all = new Map<string, Superseded>();
  for (const s of [...(incoming.job.superseded ?? []), ...(current.job.superseded ?? []), ...lost]) all.set(`${s.attempt}/${s.executor}/${s.decided_by}`, s);
  if (winning !== undefined) for (const [key, s] of all) if (`${s.attempt}/${s.executor}` === decision(winning)) all.delete(key);
  const superseded = [...all.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, s]) => s);
  const had = winner.job!.superseded ?? [];
  const same = had.length === superseded.length && had.every((s, i) => s.attempt === superseded[i]!.attempt && s.executor === superseded[i]!.executor && s.decided_by === superseded[i]!.decided_by);
  if (same) return winner === current ? undefined : incoming;
  return { ...winner, job: { ...winner.job!, superseded } };
}
