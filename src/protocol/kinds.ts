import { arrayOf, bool, bytes, literal, num, object, optional, record, str, uint, type Infer, type Schema } from './schema.js';
import { messageId, nodeId, ROLES } from './names.js';

/**
 * Every message kind and the shape of its body. Adding a kind here is the only way to put a new message on
 * the wire: the decoder refuses kinds it does not know.
 */
export const BODY_SCHEMAS = {
  /** Retained on ucp/<c>/presence/<node> when a node connects. */
  birth: object({
    software: str({ max: 64 }),
    host: str({ max: 255 }),
    pid: uint(),
    /** Milliseconds between heartbeats, so observers know how soon silence means loss. */
    heartbeat_interval_ms: uint({ min: 1 }),
  }),
  /** The MQTT last will (graceful: false) or a clean shutdown (graceful: true); same topic as the birth. */
  death: object({
    graceful: bool(),
  }),
  heartbeat: object({
    seq: uint(),
    uptime_ms: uint(),
    rss_bytes: uint(),
    /** One-minute load average divided by cores: 1.0 means every core is busy. */
    load: num({ min: 0, max: 1_000 }),
    outbox_pending: uint(),
  }),
  /** Application-level acknowledgement of a message sent with `ack: true`. */
  ack: object({
    of: messageId(),
  }),
  ping: object({
    data: optional(bytes({ max: 1 << 20 })),
  }),
  pong: object({
    data: optional(bytes({ max: 1 << 20 })),
  }),
  status_request: object({}),
  status: object({
    software: str({ max: 64 }),
    uptime_ms: uint(),
    outbox_pending: uint(),
    peers: arrayOf(
      object({ id: nodeId(), role: literal(...ROLES), incarnation: uint(), alive: bool() }),
      { max: 10_000 },
    ),
    counters: record(str({ max: 64 }), uint(), { max: 256 }),
  }),
  /** An operator notice, delivered durably: e.g. "evacuate sector 4, move units to depot B". */
  notice: object({
    severity: literal('info', 'warning', 'critical'),
    text: str({ min: 1, max: 4_096 }),
  }),
  /** The reply to a request that could not be served. */
  error: object({
    code: str({ max: 64 }),
    message: str({ max: 1_024 }),
  }),
} satisfies Record<string, Schema<unknown>>;

export type Kind = keyof typeof BODY_SCHEMAS;
export type BodyOf<K extends Kind> = Infer<(typeof BODY_SCHEMAS)[K]>;
export const KINDS = Object.keys(BODY_SCHEMAS) as Kind[];

export function isKind(value: unknown): value is Kind {
  return typeof value === 'string' && Object.hasOwn(BODY_SCHEMAS, value);
}
