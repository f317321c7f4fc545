import { describe, expect, it } from 'vitest';
import { syncedJob, useReplicaOnDisk } from '../helpers/replica.js';

/**
 * A broker numbers its own changes 1, 2, 3, ... and a peer's version for it advances only along that
 * sequence. A local write the merge rule drops (a late report of a job whose result is already accepted)
 * must not use up a number: the gap would hold every peer's version behind it, and each peer would be
 * sent everything after the gap again at its next exchange.
 */
describe('a broker\'s own change numbers', () => {
  const disk = useReplicaOnDisk('rs', 'rs-broker');

  it('leave no gap when a local write is dropped by the merge rule', async () => {
    await disk().replica.setJob(syncedJob('rs-1', { by: 'rs-broker', executor: 'rs-exec', at: 2_000 }));
    expect(disk().replica.digest()['rs-broker']).toBe(1);
    // A stale update of the same job, without the accepted result: the merge keeps the result.
    await disk().replica.setJob(syncedJob('rs-1'));
    expect(disk().replica.job('rs-1')?.state).toBe('succeeded');
    await disk().replica.setName('rs/out', { store: 'rs-store', size: 3, at: [3_000, 0], owner: 'rs-client' });
    await disk().node.store.durable();
    // Two changes made, numbered 1 and 2.
    expect(disk().replica.digest()['rs-broker']).toBe(2);
  });
});
