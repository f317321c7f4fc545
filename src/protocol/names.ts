import { str } from './schema.js';

/**
 * Node ids double as MQTT client ids and topic levels, so they must not contain MQTT wildcards or '/'.
 * They also key CBOR maps (vector clocks), where the decoder renames "__proto__" to "__proto_" for safety:
 * ids starting with "__" are refused so that no clock entry can silently move to another node.
 */
export const NODE_ID_PATTERN = /^(?!__)[A-Za-z0-9._-]{1,64}$/;
export const CLUSTER_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** Message ids are unique per sender: "<incarnation>.<sequence>" in base 36 by default. */
export const MESSAGE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

export const NODE_ID_RULE = "a node id is 1-64 letters, digits, '.', '_' or '-', not starting with \"__\"";
export const MESSAGE_ID_RULE = "a message id is 1-64 letters, digits, '.', '_', ':' or '-'";

export const nodeId = () => str({ pattern: NODE_ID_PATTERN, rule: NODE_ID_RULE });
export const messageId = () => str({ pattern: MESSAGE_ID_PATTERN, rule: MESSAGE_ID_RULE });

/**
 * What a node is, proven by the hub: the role comes from the node's credential and is a level of every
 * topic it may publish on. An operator is a client that may also act on other clients' jobs and data.
 */
export const ROLES = ['broker', 'executor', 'datastore', 'client', 'operator', 'hub', 'bridge'] as const;
export type Role = (typeof ROLES)[number];
const ROLE_SET: ReadonlySet<string> = new Set(ROLES);

export function isRole(value: string): value is Role {
  return ROLE_SET.has(value);
}

export function isNodeId(value: string): boolean {
  return NODE_ID_PATTERN.test(value);
}

export function isClusterName(value: string): boolean {
  return CLUSTER_PATTERN.test(value);
}
