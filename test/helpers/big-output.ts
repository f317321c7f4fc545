/**
 * What the big-output fixture writes as its file `k` of `size` bytes, without a tag (see the fixtures'
 * README): xorshift32 words seeded from k, little-endian.
 */
export function bigOutputBytes(k: number, size: number): Buffer {
  const out = Buffer.alloc(Math.ceil(size / 4) * 4);
  let x = (0x9e3779b9 + k) >>> 0;
  for (let i = 0; i < out.length; i += 4) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    out.writeUInt32LE(x, i);
  }
  return out.subarray(0, size);
}
