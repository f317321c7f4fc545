export type TransportErrorCode = 'request_timeout' | 'peer_down' | 'link_closed' | 'no_store' | 'unhandled_kind' | 'hub_unreachable' | 'withdrawn' | 'tls_file';

export class TransportError extends Error {
  constructor(
    readonly code: TransportErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

/** A peer answered a request with an `error` message. */
export class RemoteError extends Error {
  constructor(
    readonly peer: string,
    readonly code: string,
    message: string,
  ) {
    super(`${peer}: ${message}`);
    this.name = 'RemoteError';
  }
}
