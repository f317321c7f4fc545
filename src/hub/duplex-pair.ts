import { Duplex } from 'node:stream';

/**
 * Two connected in-memory streams: what one writes, the other reads. The hub serves its own node (which
 * answers `ucp status` with the hub's counters) over such a pair, so that node needs neither a socket, nor
 * a certificate, nor a password.
 */
export function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const make = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        peer().push(chunk);
        done();
      },
      final(done) {
        peer().push(null);
        done();
      },
      destroy(err, done) {
        const other = peer();
        if (!other.destroyed) other.push(null);
        done(err);
      },
    });
  ends.push(make(() => ends[1]!), make(() => ends[0]!));
  return [ends[0]!, ends[1]!];
}
