/**
 * A field path into a decoded JSON or CBOR payload: `temperature`, `object.temperature`, `$.AM2301.Humidity`
 * or `rxInfo[0].rssi`. Keys are looked up as own properties only, so a payload cannot reach prototypes.
 */
export type FieldPath = ReadonlyArray<string | number>;

export function parseFieldPath(text: string): FieldPath {
  const path: Array<string | number> = [];
  const body = text.startsWith('$.') ? text.slice(2) : text === '$' ? '' : text;
  const re = /([^.[\]]+)|\[(\d+)\]/g;
  let consumed = 0;
  for (let m = re.exec(body); m !== null; m = re.exec(body)) {
    const between = body.slice(consumed, m.index);
    if (between !== '' && between !== '.') throw new Error(`field path "${text}" is not of the form a.b[0].c`);
    path.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
    consumed = m.index + m[0].length;
  }
  if (consumed !== body.length) throw new Error(`field path "${text}" is not of the form a.b[0].c`);
  return path;
}

/** The value at `path`, or undefined when any step is missing. */
export function valueAt(value: unknown, path: FieldPath): unknown {
  let v = value;
  for (const step of path) {
    if (typeof step === 'number') {
      if (!Array.isArray(v) || step >= v.length) return undefined;
      v = v[step];
    } else {
      if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array || !Object.hasOwn(v, step)) return undefined;
      v = (v as Record<string, unknown>)[step];
    }
  }
  return v;
}
