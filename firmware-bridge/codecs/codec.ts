/** Why a device payload was refused; each has a counter per device and topic. */
export type BadReason =
  | 'oversized'
  | 'unparsable'
  | 'missing_field'
  | 'wrong_type'
  | 'out_of_range'
  | 'wrong_unit'
  | 'unknown_alias'
  | 'no_birth'
  | 'bad_name';

export class BadPayload extends Error {
  constructor(
    readonly reason: BadReason,
    message: string,
  ) {
    super(message);
  }
}

/** One value a payload carried; `metric` names it when one payload carries several. */
export interface Reading {
  readonly metric?: string;
  readonly value: unknown;
  /** The device's own sequence number, when the mapping says where it is. */
  readonly seq?: number;
  /** The unit the payload states, checked against the mapping's. */
  readonly unit?: string;
  /** The device's own timestamp (ms), when it sends one. */
  readonly ts?: number;
}

/** A stateless payload decoder: bytes in, readings out, or a BadPayload thrown. */
export type Decoder = (payload: Buffer) => Reading[];
