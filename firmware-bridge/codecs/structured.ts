import { Decoder as CborDecoder } from 'cbor-x';
import { structureProblem } from '../../src/protocol/index.js';
import { parseFieldPath, valueAt, type FieldPath } from '../field-path.js';
import { BadPayload, type Decoder, type Reading } from './codec.js';

export interface StructuredOptions {
  /** One value: where it is (metric comes from the topic). */
  readonly path?: string;
  /** Several values: metric name -> where it is. */
  readonly fields?: Readonly<Record<string, string>>;
  readonly seqPath?: string;
  readonly unitPath?: string;
  readonly timePath?: string;
}

const MAX_DEPTH = 32;
const cbor = new CborDecoder({ useRecords: false, mapsAsObjects: true });

/**
 * JSON and CBOR payloads (ESPHome and Tasmota JSON, ChirpStack uplinks, CBOR sensors): the values the
 * mapping names by field path. A payload that does not parse, nests too deep or lacks a named field is
 * refused.
 */
export function structuredDecoder(format: 'json' | 'cbor', options: StructuredOptions): Decoder {
  const values: Array<{ metric?: string; path: FieldPath }> = options.fields !== undefined
    ? Object.entries(options.fields).map(([metric, path]) => ({ metric, path: parseFieldPath(path) }))
    : [{ path: parseFieldPath(options.path ?? '$') }];
  const seqPath = options.seqPath !== undefined ? parseFieldPath(options.seqPath) : undefined;
  const unitPath = options.unitPath !== undefined ? parseFieldPath(options.unitPath) : undefined;
  const timePath = options.timePath !== undefined ? parseFieldPath(options.timePath) : undefined;
  return (payload) => {
    let doc: unknown;
    try {
      doc = format === 'json' ? JSON.parse(payload.toString('utf8')) : cbor.decode(payload);
    } catch (err) {
      throw new BadPayload('unparsable', `not ${format === 'json' ? 'JSON' : 'CBOR'}: ${(err as Error).message.slice(0, 120)}`);
    }
    if (structureProblem(doc, MAX_DEPTH, payload.byteLength) !== undefined) throw new BadPayload('unparsable', `${format} nested deeper than ${MAX_DEPTH} or self-referencing`);
    const seq = seqPath !== undefined ? valueAt(doc, seqPath) : undefined;
    if (seqPath !== undefined && (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0)) throw new BadPayload('missing_field', `no sequence number at ${options.seqPath}`);
    const unit = unitPath !== undefined ? valueAt(doc, unitPath) : undefined;
    const time = timePath !== undefined ? valueAt(doc, timePath) : undefined;
    const ts = typeof time === 'number' ? time : typeof time === 'string' ? Date.parse(time) : undefined;
    const out: Reading[] = [];
    for (const { metric, path } of values) {
      const value = valueAt(doc, path);
      if (value === undefined) {
        // A multi-value uplink may leave a field out; a single-value payload without it is refused.
        if (values.length > 1) continue;
        throw new BadPayload('missing_field', `no value at ${options.path ?? '$'}`);
      }
      out.push({
        ...(metric !== undefined ? { metric } : {}),
        value,
        ...(typeof seq === 'number' ? { seq } : {}),
        ...(typeof unit === 'string' ? { unit } : {}),
        ...(ts !== undefined && Number.isFinite(ts) ? { ts } : {}),
      });
    }
    if (out.length === 0) throw new BadPayload('missing_field', `none of the fields ${Object.values(options.fields ?? {}).join(', ')}`);
    return out;
  };
}
