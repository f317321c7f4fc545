import type { Kind } from './kinds.js';
import { ROLES, type Role } from './names.js';

/**
 * Who may send which kind of message to whom (PROTOCOL.md, "Permissions"). The sender's role is the one
 * its topic names, which the hub binds to its credential, so a node cannot claim a role it does not hold.
 *
 * This table covers requests and one-way messages. Replies (`re` set) are not listed: a reply is taken
 * only from the node that was asked, for a request still waiting. A kind a role does not list here is
 * refused (`rx_dropped_not_permitted`) before any handler sees it: a new kind must be added here to be
 * received at all.
 */
const CLIENTS: readonly Role[] = ['client', 'operator', 'bridge'];
const EVERYONE: readonly Role[] = ROLES;

/** What every node accepts from anyone: liveness, diagnostics, notices and acknowledgements. */
const COMMON: Partial<Record<Kind, readonly Role[]>> = {
  ping: EVERYONE,
  status_request: EVERYONE,
  notice: EVERYONE,
  ack: EVERYONE,
};

const TO_CLIENT: Partial<Record<Kind, readonly Role[]>> = { ...COMMON, job_update: ['broker'] };

export const PERMISSIONS: Readonly<Record<Role, Partial<Record<Kind, readonly Role[]>>>> = {
  broker: {
    ...COMMON,
    // Named data goes through a broker; executors fetch their jobs' inputs this way.
    // Executors write only their attempts' staged results (the data router refuses any other name).
    data_put: [...CLIENTS, 'executor'],
    data_write: [...CLIENTS, 'executor'],
    data_append: CLIENTS,
    data_get: [...CLIENTS, 'executor'],
    data_read: [...CLIENTS, 'executor'],
    data_list: [...CLIENTS, 'executor'],
    data_delete: CLIENTS,
    job_submit: CLIENTS,
    job_withdraw: CLIENTS,
    job_remove: CLIENTS,
    job_query: [...CLIENTS, 'broker'],
    job_list: [...CLIENTS, 'broker'],
    // Only executors report; the arbiter further checks it is the executor the attempt was assigned to.
    job_started: ['executor'],
    job_result: ['executor'],
    // Only brokers assign, cancel, delegate and sync.
    sync_delta: ['broker'],
    sync_digest: ['broker'],
    job_delegate: ['broker'],
  },
  executor: { ...COMMON, job_assign: ['broker'], job_cancel: ['broker'], job_verdict: ['broker'] },
  // A datastore serves its brokers only: clients reach data through a broker, which checks ownership.
  datastore: {
    ...COMMON,
    data_put: ['broker'],
    data_write: ['broker'],
    data_append: ['broker'],
    data_get: ['broker'],
    data_read: ['broker'],
    data_list: ['broker'],
    data_delete: ['broker'],
    // Publishing a job's staged results; only the job's broker decides which attempt's.
    data_move: ['broker'],
  },
  client: TO_CLIENT,
  operator: TO_CLIENT,
  bridge: TO_CLIENT,
  hub: COMMON,
};

/** Whether a node of role `receiver` accepts a `kind` request or one-way message from a `sender`. */
export function mayReceive(receiver: Role, kind: Kind, sender: Role): boolean {
  return PERMISSIONS[receiver][kind]?.includes(sender) === true;
}
