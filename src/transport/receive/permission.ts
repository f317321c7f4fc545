import { mayReceive, type AnyEnvelope, type Role } from '../../protocol/index.js';
import type { Drop } from './sender.js';

/**
 * Authorizes an inbox message by the sender's proven role (PROTOCOL.md, "Permissions"): e.g. only a
 * broker may assign a job to an executor or sync metadata. Replies are not judged here: the link takes
 * a reply only from the node it asked.
 */
export function permissionProblem(self: Role, msg: AnyEnvelope): Drop | undefined {
  if (msg.re !== undefined || mayReceive(self, msg.kind, msg.role)) return undefined;
  return { code: 'not_permitted', reason: `a ${msg.role} may not send ${msg.kind} to a ${self}` };
}
