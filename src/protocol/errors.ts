/**
 * Why a message was refused. The codes are stable: they name counters, log lines and test expectations.
 */
export const PROTOCOL_ERROR_CODES = [
  'too_large',
  'malformed_cbor',
  'too_deep',
  'unsupported_version',
  'bad_envelope',
  'unknown_kind',
  'bad_body',
] as const;

export type ProtocolErrorCode = (typeof PROTOCOL_ERROR_CODES)[number];

export class ProtocolError extends Error {
  constructor(
    readonly code: ProtocolErrorCode,
    readonly reason: string,
  ) {
    super(`${code}: ${reason}`);
    this.name = 'ProtocolError';
  }
}
