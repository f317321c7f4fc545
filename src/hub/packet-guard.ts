import type { Duplex } from 'node:stream';

/**
 * Refuses MQTT packets larger than `maxBytes` as soon as their fixed header announces them, before any of
 * their body is buffered: otherwise the hub would hold a client's whole packet in memory, however large,
 * before deciding anything (MQTT 3.1.1 section 2.2.3: the remaining length may announce up to 256 MiB).
 *
 * The hub reads each connection with `read()`; this wraps it to follow packet boundaries in the bytes
 * going by (one type byte, one to four bytes of remaining length, then the body), costing a few
 * comparisons per packet and no copies.
 */
export function guardPacketSize(conn: Duplex, maxBytes: number, oversized: (announced: number) => void): void {
  let skip = 0;
  let inLength = false;
  let length = 0;
  let multiplier = 1;
  let tripped = false;
  const read = conn.read.bind(conn);
  conn.read = (size?: number) => {
    const chunk: unknown = read(size);
    if (Buffer.isBuffer(chunk) && !tripped) scan(chunk);
    return chunk;
  };

  function scan(buf: Buffer): void {
    let i = 0;
    while (i < buf.length) {
      if (skip > 0) {
        const take = Math.min(skip, buf.length - i);
        skip -= take;
        i += take;
        continue;
      }
      if (!inLength) {
        // The packet type byte.
        inLength = true;
        length = 0;
        multiplier = 1;
        i++;
        continue;
      }
      const byte = buf[i++]!;
      length += (byte & 0x7f) * multiplier;
      multiplier *= 128;
      if ((byte & 0x80) !== 0) {
        // [MQTT-2.2.3] at most four length bytes; a fifth is a malformed packet.
        if (multiplier > 128 ** 4) return trip(length);
        continue;
      }
      if (length > maxBytes) return trip(length);
      inLength = false;
      skip = length;
    }
  }

  function trip(announced: number): void {
    tripped = true;
    oversized(announced);
  }
}
