import { BadPayload, type Decoder } from './codec.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

function text(payload: Buffer): string {
  try {
    return utf8.decode(payload);
  } catch {
    throw new BadPayload('unparsable', 'not UTF-8 text');
  }
}

/** A plain number as text, as ESPHome publishes on `<node>/sensor/<name>/state`. */
export const numberDecoder: Decoder = (payload) => {
  const t = text(payload).trim();
  // Number('') is 0 and Number('0x10') is 16: only decimal notation counts.
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) throw new BadPayload('unparsable', `"${t.slice(0, 32)}" is not a number`);
  return [{ value: Number(t) }];
};

/** UTF-8 text, as is. */
export const textDecoder: Decoder = (payload) => [{ value: text(payload) }];

/** Bytes, kept as they came (base64 in the stored record). */
export const rawDecoder: Decoder = (payload) => [{ value: new Uint8Array(payload) }];
