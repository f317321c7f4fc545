import { describe, expect, it } from 'vitest';
import { hashPassword, LoginLimiter, parseCredentials, publishRefusal, serializeCredentials, subscribeRefusal, verifyPassword } from '../../src/hub/index.js';

const limits = { maxMessageBytes: 1 << 20, maxRetainedBytes: 4_096 };
const exec = { node: 'exec-1', role: 'executor' } as const;

describe('hub topic policy', () => {
  it('lets a proven node publish only as itself, in its own role', () => {
    expect(publishRefusal(exec, 'ucp/c/inbox/br-1/executor/exec-1', false, 100, limits)).toBeUndefined();
    expect(publishRefusal(exec, 'ucp/c/heartbeat/executor/exec-1', false, 100, limits)).toBeUndefined();
    expect(publishRefusal(exec, 'ucp/c/presence/executor/exec-1', true, 200, limits)).toBeUndefined();
    expect(publishRefusal(exec, 'ucp/c/inbox/exec-2/broker/br-1', false, 100, limits)).toMatchObject({ counter: 'publish_refused_topic' });
    expect(publishRefusal(exec, 'ucp/c/inbox/exec-2/broker/exec-1', false, 100, limits)).toMatchObject({ counter: 'publish_refused_topic', reason: expect.stringContaining('not a broker') });
    expect(publishRefusal(exec, 'ucp/c/presence/executor/exec-2', true, 100, limits)).toMatchObject({ counter: 'publish_refused_topic' });
    expect(publishRefusal(exec, 'some/other/topic', false, 10, limits)).toMatchObject({ counter: 'publish_refused_topic' });
  });

  it('keeps retained messages to small ones on presence topics, and every message under the size limit', () => {
    expect(publishRefusal(exec, 'ucp/c/inbox/br-1/executor/exec-1', true, 100, limits)).toMatchObject({ counter: 'publish_refused_retain' });
    expect(publishRefusal(exec, 'ucp/c/presence/executor/exec-1', true, 8 << 20, limits)).toMatchObject({ counter: 'publish_refused_too_large' });
    expect(publishRefusal(exec, 'ucp/c/presence/executor/exec-1', true, 5_000, limits)).toMatchObject({ counter: 'publish_refused_retain' });
    // Without credentials nobody is proven, but the same limits hold.
    expect(publishRefusal({ node: 'x' }, 'bench/anything', true, 10, limits)).toMatchObject({ counter: 'publish_refused_retain' });
    expect(publishRefusal({ node: 'x' }, 'bench/anything', false, 10, limits)).toBeUndefined();
    expect(publishRefusal({ node: 'x' }, 'ucp/c/inbox/y/broker/z', false, 10, limits)).toBeUndefined();
    expect(publishRefusal({ node: 'x' }, 'ucp/c/inbox/y/broker/z', true, 10, limits)).toMatchObject({ counter: 'publish_refused_retain' });
  });

  it('lets a proven node read its own inbox and everyone\'s presence, nothing else', () => {
    expect(subscribeRefusal(exec, 'ucp/c/inbox/exec-1/+/+')).toBeUndefined();
    expect(subscribeRefusal(exec, 'ucp/+/inbox/exec-1/#')).toBeUndefined();
    expect(subscribeRefusal(exec, 'ucp/c/presence/+/+')).toBeUndefined();
    expect(subscribeRefusal(exec, 'ucp/c/heartbeat/+/+')).toBeUndefined();
    for (const filter of ['#', 'ucp/#', 'ucp/c/#', 'ucp/c/inbox/#', 'ucp/c/inbox/+/+/+', 'ucp/c/inbox/br-1/+/+', 'ucp/c/+/exec-1/+/+', '$SYS/#', 'ucp/c/inbox']) {
      expect(subscribeRefusal(exec, filter), filter).toMatchObject({ counter: 'subscribe_refused' });
    }
  });
});

describe('login limiter', () => {
  it('makes a source wait after a few failures, doubling the wait, and forgets it on success', () => {
    let now = 0;
    const limiter = new LoginLimiter({ freeFailures: 3, baseLockMs: 1_000, maxLockMs: 8_000, capacity: 10, forgetAfterMs: 60_000 }, () => now);
    for (let i = 0; i < 2; i++) limiter.failed('10.0.0.9');
    expect(limiter.waitMs('10.0.0.9')).toBe(0);
    limiter.failed('10.0.0.9');
    expect(limiter.waitMs('10.0.0.9')).toBe(1_000);
    now += 1_000;
    limiter.failed('10.0.0.9');
    expect(limiter.waitMs('10.0.0.9')).toBe(2_000);
    for (let i = 0; i < 10; i++) limiter.failed('10.0.0.9');
    expect(limiter.waitMs('10.0.0.9')).toBe(8_000);
    expect(limiter.waitMs('10.0.0.10')).toBe(0);
    limiter.succeeded('10.0.0.9');
    expect(limiter.waitMs('10.0.0.9')).toBe(0);
  });

  it('forgets failures long past', () => {
    let now = 0;
    const limiter = new LoginLimiter({ freeFailures: 2, baseLockMs: 1_000, maxLockMs: 8_000, capacity: 10, forgetAfterMs: 60_000 }, () => now);
    limiter.failed('a');
    limiter.failed('a');
    now += 61_000;
    limiter.failed('a');
    expect(limiter.waitMs('a')).toBe(0);
  });

  it('remembers a bounded number of sources', () => {
    const limiter = new LoginLimiter({ freeFailures: 0, baseLockMs: 1_000, maxLockMs: 1_000, capacity: 3, forgetAfterMs: 60_000 }, () => 0);
    for (const s of ['a', 'b', 'c', 'd']) limiter.failed(s);
    expect(limiter.waitMs('a')).toBe(0);
    expect(limiter.waitMs('d')).toBe(1_000);
  });
});

describe('credentials file', () => {
  it('round-trips, keeps only hashes, and the hash verifies the password and nothing else', async () => {
    const hashes = await hashPassword('correct horse');
    const creds = parseCredentials(serializeCredentials(new Map([['br-1', { node: 'br-1', role: 'broker', certificate: false, ...hashes }]])));
    const text = serializeCredentials(creds);
    expect(text).not.toContain('correct horse');
    expect(creds.get('br-1')).toMatchObject({ role: 'broker', certificate: false });
    expect(await verifyPassword(creds.get('br-1')!.scrypt!, 'correct horse')).toBe(true);
    expect(await verifyPassword(creds.get('br-1')!.scrypt!, 'correct horsf')).toBe(false);
    expect(hashes.mosquitto).toMatch(/^\$7\$10000\$/);
  });

  it.each([
    ['an unknown role', '[nodes.a]\nrole = "king"\ncertificate = true\n', /role must be one of/],
    ['the hub role', '[nodes.a]\nrole = "hub"\ncertificate = true\n', /role must be one of/],
    ['an unknown key', '[nodes.a]\nrole = "client"\ncertificate = true\npassword = "plain"\n', /unknown key "password"/],
    ['no way to log in', '[nodes.a]\nrole = "client"\n', /neither a password hash nor certificate/],
    ['a bad node id', '[nodes."a/b"]\nrole = "client"\ncertificate = true\n', /not a valid node id/],
    ['a made-up hash', '[nodes.a]\nrole = "client"\nscrypt = "plain"\n', /not a hash written by/],
    ['a stray top-level key', 'x = 1\n', /unknown key "x"/],
  ])('refuses %s with a line naming it', (_name, text, message) => {
    expect(() => parseCredentials(text)).toThrow(message);
  });
});
