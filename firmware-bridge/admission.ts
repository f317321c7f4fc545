/**
 * What decides whether a decoded reading is kept, without any I/O: repeated readings are dropped
 * (the same payload again within a window, or a device sequence number not above the last one), and
 * each device gets a token bucket of `rate` readings per second (a burst of one second's worth).
 */
export class Admission {
  private readonly lastPayload = new Map<string, { digest: string; at: number }>();
  private readonly lastSeq = new Map<string, number>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    /** Entries kept per map before the oldest go: bounds memory with many devices. */
    private readonly maxKeys = 100_000,
  ) {}

  /** true if this payload repeats the last one on `key` (device + topic) within `windowMs`. */
  repeatedPayload(key: string, digest: string, now: number, windowMs: number): boolean {
    const last = this.lastPayload.get(key);
    const repeated = last !== undefined && last.digest === digest && now - last.at <= windowMs;
    if (!repeated) this.remember(this.lastPayload, key, { digest, at: now });
    return repeated;
  }

  /** true if `seq` is not above the last sequence number seen from `key`. */
  repeatedSeq(key: string, seq: number): boolean {
    const last = this.lastSeq.get(key);
    if (last !== undefined && seq <= last) return true;
    this.remember(this.lastSeq, key, seq);
    return false;
  }

  /** Takes a token from the device's bucket; false when it is empty. */
  allow(device: string, rate: number, now: number): boolean {
    if (rate <= 0) return true;
    const bucket = this.buckets.get(device) ?? { tokens: rate, at: now };
    bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) / 1_000) * rate);
    bucket.at = now;
    this.remember(this.buckets, device, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  private remember<V>(map: Map<string, V>, key: string, value: V): void {
    map.delete(key);
    map.set(key, value);
    if (map.size > this.maxKeys) map.delete(map.keys().next().value!);
  }
}
