/**
 * Sparse vector clocks as immutable plain objects, so a clock can be handed to
 * the CBOR encoder as-is and a decoded map can be used without conversion.
 *
 * Invariants of clocks produced here: an absent entry means 0, stored counters
 * are positive safe integers, zeros are never stored. Clocks that arrive from
 * the network are validated by the protocol module, not here; the functions
 * below still treat a stray zero entry as absent rather than misbehaving.
 *
 * Keys are node ids chosen by remote peers, so names such as `__proto__`,
 * `constructor` or `toString` must behave like any other id: reads go through
 * `Object.hasOwn` (never the prototype chain) and writes of names that exist
 * on `Object.prototype` go through `Object.defineProperty` (an ordinary
 * assignment to `__proto__` would silently change the prototype and drop the
 * entry).
 */

export type VectorClock = Readonly<Record<string, number>>;

/** Ordering of `a` relative to `b`: 'before' means a happened-before b. */
export type Ordering = 'before' | 'after' | 'equal' | 'concurrent';

export const EMPTY_CLOCK: VectorClock = Object.freeze({});

function get(vc: VectorClock, nodeId: string): number {
  return Object.hasOwn(vc, nodeId) ? (vc[nodeId] ?? 0) : 0;
}

function setEntry(target: Record<string, number>, nodeId: string, value: number): void {
  if (nodeId in Object.prototype) {
    Object.defineProperty(target, nodeId, { value, enumerable: true, writable: true, configurable: true });
  } else {
    target[nodeId] = value;
  }
}

/** Spread copies own enumerable properties as data properties, so `__proto__` survives the copy. */
function copy(vc: VectorClock): Record<string, number> {
  return { ...vc };
}

/**
 * Returns a new clock with `nodeId`'s counter incremented.
 * @throws RangeError if the counter would leave the safe-integer range, because
 *   past that point increments are lost and causality silently breaks.
 */
export function tick(vc: VectorClock, nodeId: string): VectorClock {
  const next = get(vc, nodeId) + 1;
  if (!Number.isSafeInteger(next)) {
    throw new RangeError(`vector clock counter for ${JSON.stringify(nodeId)} overflowed`);
  }
  const out = copy(vc);
  setEntry(out, nodeId, next);
  return out;
}

/**
 * Pointwise maximum of `a` and `b`.
 *
 * Runs on every received message, and in the steady state the remote clock
 * usually adds nothing we have not already seen; in that case `a` itself is
 * returned (no allocation). Callers must therefore not rely on the result
 * being a fresh object — which is harmless as clocks are never mutated.
 */
export function merge(a: VectorClock, b: VectorClock): VectorClock {
  let out: Record<string, number> | undefined;
  for (const key of Object.keys(b)) {
    const bv = b[key] ?? 0;
    if (bv > get(a, key)) {
      out ??= copy(a);
      setEntry(out, key, bv);
    }
  }
  return out ?? a;
}

/** Ordering of `a` relative to `b`; 'before' means a happened-before b. */
export function compare(a: VectorClock, b: VectorClock): Ordering {
  let aAhead = false;
  let bAhead = false;
  for (const key of Object.keys(a)) {
    const av = a[key] ?? 0;
    const bv = get(b, key);
    if (av > bv) aAhead = true;
    else if (av < bv) bAhead = true;
    if (aAhead && bAhead) return 'concurrent';
  }
  // Keys present in both were settled above; only b's extra keys remain.
  if (!bAhead) {
    for (const key of Object.keys(b)) {
      if (!Object.hasOwn(a, key) && (b[key] ?? 0) > 0) {
        bAhead = true;
        break;
      }
    }
  }
  if (aAhead) return bAhead ? 'concurrent' : 'after';
  return bAhead ? 'before' : 'equal';
}

/** True when `a` >= `b` pointwise, i.e. `a` has seen everything `b` has. */
export function dominates(a: VectorClock, b: VectorClock): boolean {
  for (const key of Object.keys(b)) {
    if ((b[key] ?? 0) > get(a, key)) return false;
  }
  return true;
}

/**
 * Drops the entries of retired nodes so clocks do not grow without bound as
 * nodes come and go. Returns `vc` itself when none of its entries is retired.
 */
export function prune(vc: VectorClock, retired: Iterable<string>): VectorClock {
  const gone = new Set(retired);
  if (gone.size === 0) return vc;
  const keys = Object.keys(vc);
  if (!keys.some((k) => gone.has(k))) return vc;
  return Object.fromEntries(keys.filter((k) => !gone.has(k)).map((k) => [k, vc[k] ?? 0]));
}

/**
 * Compact wire form: zero entries dropped and keys inserted in sorted order,
 * so equal clocks serialise to identical bytes whatever order they were built
 * in (needed for signatures, hashing and byte-level dedup).
 *
 * JS always enumerates array-index-like keys ("0", "42") first in numeric
 * order; the enumeration order is still a pure function of the key set, so
 * the byte-identity guarantee holds for such node ids too.
 */
export function canonical(vc: VectorClock): VectorClock {
  const entries = Object.entries(vc).filter(([, v]) => v > 0);
  entries.sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
  return Object.fromEntries(entries);
}

/** Number of non-zero entries. */
export function size(vc: VectorClock): number {
  let n = 0;
  for (const key of Object.keys(vc)) {
    if ((vc[key] ?? 0) > 0) n++;
  }
  return n;
}
