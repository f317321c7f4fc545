import type { AnyEnvelope } from '../protocol/index.js';
import { RemoteError, TransportError, type NodeLink } from '../transport/index.js';

/** Thrown by a broker handler to answer a request with an `error` reply carrying `code`. */
export class Refusal extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Runs a request handler and turns a refusal, a peer's error or an unreachable peer into an `error`
 * reply, so the requester hears why instead of waiting for its timeout.
 */
export async function answering(link: NodeLink, msg: AnyEnvelope, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    if (err instanceof Refusal || err instanceof RemoteError) link.reply(msg, 'error', { code: err.code, message: err.message.slice(0, 1_024) });
    else if (err instanceof TransportError) link.reply(msg, 'error', { code: 'store_unavailable', message: err.message.slice(0, 1_024) });
    else throw err;
  }
}
