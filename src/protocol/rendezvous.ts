import { createHash } from 'node:crypto';

/**
 * The broker that adopts a lost broker's jobs: the live broker with the highest rendezvous score for it
 * (highest random weight hashing). Every node that sees the same live brokers picks the same one, without
 * talking, and a broker joining or leaving moves only the jobs it wins or held.
 */
export function adopterOf(lost: string, liveBrokers: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = '';
  for (const broker of liveBrokers) {
    if (broker === lost) continue;
    const score = createHash('sha256').update(`${lost}\0${broker}`).digest('hex');
    if (best === undefined || score > bestScore || (score === bestScore && broker < best)) {
      best = broker;
      bestScore = score;
    }
  }
  return best;
}
