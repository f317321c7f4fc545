/**
 * A small validator vocabulary for wire bodies. Each check returns a reason string or undefined, so the hot
 * path allocates nothing for valid input; the TypeScript type of a schema is inferred from how it is built,
 * so the validator and the message types cannot drift apart.
 */
export interface Schema<T> {
  readonly check: (value: unknown, path: string) => string | undefined;
  /** Phantom: carries the validated type for inference only. */
  readonly _type?: T;
  readonly optional?: boolean;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

type Shape = Record<string, Schema<unknown>>;
type RequiredKeys<S extends Shape> = { [K in keyof S]: S[K] extends { optional: true } ? never : K }[keyof S];
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends { optional: true } ? K : never }[keyof S];
type Simplify<T> = { [K in keyof T]: T[K] } & {};
export type InferShape<S extends Shape> = Simplify<
  { [K in RequiredKeys<S>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Infer<S[K]> }
>;

/** Quotes a decoded value for an error message without ever throwing (BigInt defeats JSON.stringify). */
export function preview(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  try {
    return (JSON.stringify(value) ?? String(value)).slice(0, 64);
  } catch {
    return kindOf(value);
  }
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (value instanceof Uint8Array) return 'bytes';
  if (typeof value === 'number' && !Number.isInteger(value)) return 'float';
  return typeof value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Text, optionally of a given form. `rule` says that form in words ("a node id is ..."): it is what a user
 * reads when the text does not match, never the regular expression behind it.
 */
export function str(opts: { min?: number; max?: number; pattern?: RegExp; rule?: string } = {}): Schema<string> {
  const min = opts.min ?? 0;
  const max = opts.max ?? 65_536;
  const { pattern } = opts;
  const rule = opts.rule ?? 'not in the expected form';
  return {
    check(v, path) {
      if (typeof v !== 'string') return `${path}: expected text, got ${kindOf(v)}`;
      if (v.length < min || v.length > max) return `${path}: text length ${v.length} outside ${min}..${max}`;
      if (pattern !== undefined && !pattern.test(v)) return `${path}: ${quote(v)}: ${rule}`;
      return undefined;
    },
  };
}

/** A value quoted for a message: at most 64 characters, control characters shown as escapes. */
export function quote(text: string): string {
  const cut = text.length > 64 ? `${text.slice(0, 64)}...` : text;
  return JSON.stringify(cut);
}

export function uint(opts: { min?: number; max?: number } = {}): Schema<number> {
  const min = opts.min ?? 0;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  return {
    check(v, path) {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return `${path}: expected unsigned integer, got ${kindOf(v)}`;
      if (v < min || v > max) return `${path}: ${v} outside ${min}..${max}`;
      return undefined;
    },
  };
}

export function num(opts: { min?: number; max?: number } = {}): Schema<number> {
  const min = opts.min ?? -Number.MAX_VALUE;
  const max = opts.max ?? Number.MAX_VALUE;
  return {
    check(v, path) {
      if (typeof v !== 'number' || !Number.isFinite(v)) return `${path}: expected finite number, got ${kindOf(v)}`;
      if (v < min || v > max) return `${path}: ${v} outside ${min}..${max}`;
      return undefined;
    },
  };
}

export function bool(): Schema<boolean> {
  return { check: (v, path) => (typeof v === 'boolean' ? undefined : `${path}: expected boolean, got ${kindOf(v)}`) };
}

export function bytes(opts: { max?: number } = {}): Schema<Uint8Array> {
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  return {
    check(v, path) {
      if (!(v instanceof Uint8Array)) return `${path}: expected bytes, got ${kindOf(v)}`;
      if (v.byteLength > max) return `${path}: ${v.byteLength} bytes exceeds ${max}`;
      return undefined;
    },
  };
}

export function literal<const T extends readonly (string | number | boolean)[]>(...values: T): Schema<T[number]> {
  const allowed = new Set<unknown>(values);
  const list = values.map((v) => JSON.stringify(v)).join(' | ');
  return { check: (v, path) => (allowed.has(v) ? undefined : `${path}: expected ${list}, got ${preview(v)}`) };
}

export function arrayOf<T>(item: Schema<T>, opts: { min?: number; max?: number } = {}): Schema<T[]> {
  const min = opts.min ?? 0;
  const max = opts.max ?? 10_000;
  return {
    check(v, path) {
      if (!Array.isArray(v)) return `${path}: expected array, got ${kindOf(v)}`;
      if (v.length < min || v.length > max) return `${path}: array length ${v.length} outside ${min}..${max}`;
      for (let i = 0; i < v.length; i++) {
        const err = item.check(v[i], `${path}[${i}]`);
        if (err !== undefined) return err;
      }
      return undefined;
    },
  };
}

/** A fixed-length array, e.g. an HLC timestamp [wall, logical]. */
export function tuple<A, B>(a: Schema<A>, b: Schema<B>): Schema<[A, B]> {
  return {
    check(v, path) {
      if (!Array.isArray(v) || v.length !== 2) return `${path}: expected a 2-element array, got ${kindOf(v)}`;
      return a.check(v[0], `${path}[0]`) ?? b.check(v[1], `${path}[1]`);
    },
  };
}

/** A map with free-form keys (e.g. a vector clock or counters). */
export function record<T>(key: Schema<string>, value: Schema<T>, opts: { max?: number } = {}): Schema<Record<string, T>> {
  const max = opts.max ?? 1_000;
  return {
    check(v, path) {
      if (!isPlainObject(v)) return `${path}: expected map, got ${kindOf(v)}`;
      let n = 0;
      for (const k in v) {
        if (++n > max) return `${path}: more than ${max} entries`;
        const err = key.check(k, `${path} key`) ?? value.check(v[k], `${path}.${k}`);
        if (err !== undefined) return err;
      }
      return undefined;
    },
  };
}

/**
 * A value of one of two shapes, told apart by the first one's check (e.g. bytes inline, or a map naming
 * where the bytes were put instead). The reason names both when neither fits.
 */
export function either<A, B>(a: Schema<A>, b: Schema<B>): Schema<A | B> {
  return {
    check(v, path) {
      const first = a.check(v, path);
      if (first === undefined) return undefined;
      const second = b.check(v, path);
      if (second === undefined) return undefined;
      return `${first}; or ${second}`;
    },
  };
}

export function optional<T>(inner: Schema<T>): Schema<T> & { optional: true } {
  return { check: inner.check, optional: true };
}

/**
 * A map with a fixed set of fields. Unknown fields are refused: a new field means a new protocol version.
 * The shape stays readable, so callers that report every bad field at once (plan files) can walk it.
 */
export function object<S extends Shape>(shape: S): Schema<InferShape<S>> & { readonly shape: S } {
  const fields = Object.entries(shape);
  const known = new Set(Object.keys(shape));
  return {
    shape,
    check(v, path) {
      if (!isPlainObject(v)) return `${path}: expected map, got ${kindOf(v)}`;
      for (const k in v) {
        if (!known.has(k)) return `${path}: unknown field "${k.slice(0, 64)}"`;
      }
      for (const [name, schema] of fields) {
        const field = v[name];
        if (field === undefined) {
          if (schema.optional === true) continue;
          return `${path}.${name}: missing`;
        }
        const err = schema.check(field, `${path}.${name}`);
        if (err !== undefined) return err;
      }
      return undefined;
    },
  };
}

export type StructureProblem = 'too_deep' | 'shared';

/**
 * Checks the shape of a decoded value before any schema looks at it: nesting no deeper than `limit`, and
 * no more containers than the encoding had bytes. Every CBOR array or map costs at least one byte, so a
 * value with more containers than `byteLength` must reuse some through value-sharing tags (28/29); walking
 * such a graph can cost exponential time in the message size, so it is refused. Counting is enough, and
 * cheaper than remembering every container visited.
 */
export function structureProblem(value: unknown, limit: number, byteLength: number): StructureProblem | undefined {
  let budget = byteLength;
  // Depth counts edges from the top: any value, scalar or container, deeper than `limit` is refused.
  const walk = (v: unknown, depthLeft: number): StructureProblem | undefined => {
    if (depthLeft < 0) return 'too_deep';
    if (typeof v !== 'object' || v === null || v instanceof Uint8Array) return undefined;
    if (--budget < 0) return 'shared';
    if (Array.isArray(v)) {
      for (const item of v) {
        const problem = walk(item, depthLeft - 1);
        if (problem !== undefined) return problem;
      }
      return undefined;
    }
    for (const k in v as Record<string, unknown>) {
      const problem = walk((v as Record<string, unknown>)[k], depthLeft - 1);
      if (problem !== undefined) return problem;
    }
    return undefined;
  };
  return walk(value, limit);
}
