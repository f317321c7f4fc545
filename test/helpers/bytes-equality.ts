import { expect } from 'vitest';

/** cbor-x hands byte strings back as Buffers; what matters on the wire is the bytes, not the JS subclass. */
expect.addEqualityTesters([
  function bytesEqual(a: unknown, b: unknown): boolean | undefined {
    if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array)) return undefined;
    return a.byteLength === b.byteLength && a.every((x, i) => x === b[i]);
  },
]);
