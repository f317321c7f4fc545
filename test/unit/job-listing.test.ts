import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { before, cursorOf, decodeFacts, encodeFacts, matches, positionOf, wantsPhase, type Position } from '../../src/broker/job-listing.js';
import { parseSince, parseStates } from '../../src/cli/job-filters.js';
import { decode, encode, PROTOCOL_VERSION, type Envelope } from '../../src/protocol/index.js';

const position = fc.record({ phase: fc.constantFrom('a' as const, 'f' as const), at: fc.integer({ min: 0, max: 2 ** 48 }), jobId: fc.stringMatching(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,30}$/) });

describe('job listing order and cursors', () => {
  it('a cursor names exactly the position it was made from, and the wire accepts it', () => {
    fc.assert(
      fc.property(position, (p) => {
        const cursor = cursorOf(p);
        expect(positionOf(cursor)).toEqual(p);
        const msg: Envelope<'job_list'> = { v: PROTOCOL_VERSION, kind: 'job_list', id: '1.a', from: 'c1', role: 'client', inc: 1, vc: {}, hlc: { wall: 1, logical: 0 }, body: { limit: 5, after: cursor } };
        const decoded = decode(encode(msg));
        expect(decoded.ok).toBe(true);
      }),
    );
  });

  it('orders every unfinished job before every finished one, newest first, as a strict total order', () => {
    fc.assert(
      fc.property(position, position, (a, b) => {
        const same = a.phase === b.phase && a.at === b.at && a.jobId === b.jobId;
        expect(before(a, b) || before(b, a) || same).toBe(true);
        expect(before(a, b) && before(b, a)).toBe(false);
      }),
    );
    const running: Position = { phase: 'a', at: 1, jobId: 'old-but-running' };
    const finished: Position = { phase: 'f', at: 9_999, jobId: 'just-finished' };
    expect(before(running, finished)).toBe(true);
    expect(before({ phase: 'f', at: 20, jobId: 'x' }, { phase: 'f', at: 10, jobId: 'y' })).toBe(true);
  });

  it('filters by owner, receiver and state as the visibility rule says', () => {
    const facts = { state: 'succeeded' as const, owner: 'alice', receivers: ['command-post'] };
    expect(matches(facts, {})).toBe(true);
    expect(matches(facts, { owner: 'alice' })).toBe(true);
    expect(matches(facts, { owner: 'bob' })).toBe(false);
    expect(matches(facts, { receiver: 'alice' })).toBe(true);
    expect(matches(facts, { receiver: 'command-post' })).toBe(true);
    expect(matches(facts, { receiver: 'mallory' })).toBe(false);
    expect(matches(facts, { states: ['failed', 'succeeded'] })).toBe(true);
    expect(matches(facts, { states: ['running'] })).toBe(false);
    expect(matches(facts, { owner: 'alice', receiver: 'mallory' })).toBe(false);
  });

  it('skips the phase a state filter cannot match', () => {
    expect(wantsPhase('a', { states: ['succeeded'] })).toBe(false);
    expect(wantsPhase('f', { states: ['succeeded'] })).toBe(true);
    expect(wantsPhase('f', { states: ['queued', 'running'] })).toBe(false);
    expect(wantsPhase('a', {})).toBe(true);
  });

  it('keeps index facts across an encode and decode, and reads old empty entries as unknown', () => {
    expect(decodeFacts(encodeFacts({ state: 'failed', owner: 'c-1', receivers: ['r1', 'r2'] }))).toEqual({ state: 'failed', owner: 'c-1', receivers: ['r1', 'r2'] });
    expect(decodeFacts(encodeFacts({ state: 'failed', owner: 'c-1', receivers: [] }))).toEqual({ state: 'failed', owner: 'c-1', receivers: [] });
    expect(decodeFacts('')).toBeUndefined();
  });
});

describe('ucp jobs --since and --state', () => {
  const now = Date.parse('2025-06-01T12:00:00Z');
  it('reads durations back from now', () => {
    expect(parseSince('10m', now)).toBe(now - 600_000);
    expect(parseSince('1h30m', now)).toBe(now - 5_400_000);
    expect(parseSince('2d', now)).toBe(now - 2 * 86_400_000);
    expect(parseSince('45s', now)).toBe(now - 45_000);
  });
  it('reads times and dates', () => {
    expect(parseSince('2025-06-01T10:00:00Z', now)).toBe(Date.parse('2025-06-01T10:00:00Z'));
    expect(parseSince('2025-05-31', now)).toBe(new Date(2025, 4, 31).getTime());
  });
  it('refuses what is neither, with what to type instead', () => {
    expect(() => parseSince('yesterday', now)).toThrow(/duration back from now such as 10m/);
    expect(() => parseSince('10x', now)).toThrow(/duration/);
  });
  it('reads states, comma lists, groups and repeats, each state once', () => {
    expect(parseStates('running')).toEqual(['running']);
    expect(parseStates('active')).toEqual(['queued', 'assigned', 'running']);
    expect(parseStates('failed,Running', ['failed'])).toEqual(['failed', 'running']);
    expect(() => parseStates('lost')).toThrow(/"lost" is not a job state; use queued/);
    expect(() => parseStates(',')).toThrow(/at least one state/);
  });
});
