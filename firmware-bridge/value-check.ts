import type { Mapping } from './bridge-config.js';
import { BadPayload, type Reading } from './codecs/codec.js';

/**
 * The mapping's type, range and unit check of one reading; returns the value to store. Integers and
 * numbers must be finite, a stated unit must be the mapping's, and ranges are inclusive.
 */
export function checkValue(mapping: Mapping, reading: Reading): unknown {
  const { value } = reading;
  switch (mapping.type) {
    case 'number':
    case 'integer':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw new BadPayload('wrong_type', `expected a ${mapping.type}, got ${describe(value)}`);
      if (mapping.type === 'integer' && !Number.isSafeInteger(value)) throw new BadPayload('wrong_type', `expected an integer, got ${value}`);
      if ((mapping.min !== undefined && value < mapping.min) || (mapping.max !== undefined && value > mapping.max)) {
        throw new BadPayload('out_of_range', `${value} outside ${mapping.min ?? '-inf'}..${mapping.max ?? 'inf'}`);
      }
      break;
    case 'boolean':
      if (typeof value !== 'boolean') throw new BadPayload('wrong_type', `expected a boolean, got ${describe(value)}`);
      break;
    case 'string':
      if (typeof value !== 'string') throw new BadPayload('wrong_type', `expected text, got ${describe(value)}`);
      break;
    case 'any':
      break;
  }
  if (mapping.unit !== undefined && reading.unit !== undefined && reading.unit !== mapping.unit) {
    throw new BadPayload('wrong_unit', `unit "${reading.unit.slice(0, 16)}", expected "${mapping.unit}"`);
  }
  return value;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'bytes';
  if (typeof value === 'string') return `text "${value.slice(0, 16)}"`;
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value).slice(0, 16)}`;
}
