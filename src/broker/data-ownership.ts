import type { Role } from '../protocol/index.js';

/**
 * Who may write or delete which name, and whose it is afterwards (PROTOCOL.md, "Data versions and
 * owners"). Pure, so the rule is tested without a cluster; the data router does the I/O and the
 * datastore holding a name enforces the same rule in the transaction that changes it.
 */

/** A write the broker may pass on: the owner the name has afterwards, and whether it may replace another's. */
export interface Grant {
  readonly owner: string;
  readonly replace: boolean;
}

export interface Refused {
  readonly code: 'not_owner' | 'over_budget';
  readonly message: string;
}

export interface Requester {
  /** The node the hub proved sent the request. */
  readonly id: string;
  readonly role: Role;
}

/** The job whose tree `<jobId>/...` a name lies in, if it names a known job. */
export type JobOwnerOf = (jobId: string) => string | undefined;

/**
 * A name under `<jobId>/` of a known job belongs to the job's submitter: its inputs, archive and results
 * live there, so nobody else may plant or remove them. A name there that another node already owns (it
 * was written before the job's id was taken, through a broker that had not yet heard of the job) stays
 * that node's: the submitter may not replace it, and its writes there carry no `replace`, so the
 * datastore holding the name refuses them too if the index has not caught up. Any other name is its
 * writer's, and a datastore refuses a write to a name another node owns unless `replace` is set, which
 * only an operator gets. `known` is the owner the broker's index records, if any: refusing here saves a
 * relay (and, for an upload, every chunk) that the datastore would refuse.
 */
export function decideWrite(who: Requester, name: string, known: string | undefined, jobOwnerOf: JobOwnerOf): Grant | Refused {
  const operator = who.role === 'operator';
  const slash = name.indexOf('/');
  const jobOwner = slash > 0 ? jobOwnerOf(name.slice(0, slash)) : undefined;
  if (jobOwner !== undefined) {
    if (operator) return { owner: jobOwner, replace: true };
    if (who.id !== jobOwner) return { code: 'not_owner', message: `"${name}" belongs to job ${name.slice(0, slash)}, which was submitted by ${jobOwner}; only ${jobOwner} or an operator may change it` };
    if (known !== undefined && known !== jobOwner) return { code: 'not_owner', message: `"${name}" is owned by ${known}, who wrote it before job ${name.slice(0, slash)} existed; only ${known} or an operator may change it` };
    return { owner: jobOwner, replace: false };
  }
  if (operator) return { owner: who.id, replace: true };
  if (known !== undefined && known !== who.id) return { code: 'not_owner', message: `"${name}" is owned by ${known}; only ${known} or an operator may change it` };
  return { owner: who.id, replace: false };
}

/**
 * Deleting a job's data (all of `<jobId>/` but its archive) is for the job's submitter or an operator. The
 * submitter's deletion carries no `replace`: a datastore then deletes only the names the submitter owns
 * there, not one another node wrote before the job's id was taken.
 */
export function decideJobDelete(who: Requester, jobId: string, jobOwnerOf: JobOwnerOf): Grant | Refused {
  const owner = jobOwnerOf(jobId);
  if (owner === undefined) return { owner: who.id, replace: who.role === 'operator' };
  if (who.role === 'operator') return { owner, replace: true };
  if (who.id === owner) return { owner, replace: false };
  return { code: 'not_owner', message: `job ${jobId} was submitted by ${owner}; only ${owner} or an operator may delete its data` };
}

/**
 * Whether storing `adding` more bytes of `owner`'s takes it past its budget (budgets.max_bytes_per_client).
 * `used` is what the cluster's index says it owns; `replacing` the size of its own name this write
 * replaces. Operators and brokers are not clients and have no budget.
 */
export function budgetProblem(who: Requester, owner: string, used: number, adding: number, replacing: number, limit: number): Refused | undefined {
  if (who.role === 'operator' || who.role === 'broker') return undefined;
  const after = used - replacing + adding;
  if (adding <= replacing || after <= limit) return undefined;
  return { code: 'over_budget', message: `${owner} owns ${used} bytes of named data; ${adding} more would pass its budget (budgets.max_bytes_per_client = ${limit}); delete some with \`ucp data rm\` or \`ucp remove\`` };
}

export const isRefused = (d: Grant | Refused | undefined): d is Refused => d !== undefined && 'code' in d;
