import type { Role } from '../protocol/index.js';

/**
 * Whose jobs a requester may see (PROTOCOL.md, "Permissions"): a client, or a bridge, its own and those
 * that name it as a results receiver; an operator and other brokers every job. Pure, so the rule is tested
 * apart from the broker.
 */
export function seesEveryJob(role: Role): boolean {
  return role === 'operator' || role === 'broker';
}

/** Why `requester` may not see a job of `owner`, or undefined if it may. */
export function jobHidden(owner: string, requester: string, role: Role, receivers: readonly string[] = []): string | undefined {
  if (owner === requester || seesEveryJob(role) || receivers.includes(requester)) return undefined;
  return `that job was submitted by another client; a ${role} sees only its own jobs and those it receives`;
}
