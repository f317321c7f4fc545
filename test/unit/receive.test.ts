import { describe, expect, it } from 'vitest';
import { encode, mayReceive, PERMISSIONS, PROTOCOL_VERSION, ROLES, Topics, type AnyEnvelope, type Kind, type Role } from '../../src/protocol/index.js';
import { admit, permissionProblem, senderProblem } from '../../src/transport/receive/index.js';

const topics = new Topics('c');

function env(kind: Kind, from: string, role: Role, body: unknown = {}, extra: Partial<AnyEnvelope> = {}): AnyEnvelope {
  return { v: PROTOCOL_VERSION, kind, id: '1.1', from, role, inc: 1, vc: {}, hlc: { wall: 1, logical: 0 }, body, ...extra } as AnyEnvelope;
}

describe('senderProblem: the topic proves the sender, the envelope must agree', () => {
  const inbox = { cls: 'inbox', to: 'exec-1', role: 'broker', from: 'br-1' } as const;

  it('admits a message whose envelope names the topic\'s sender and role', () => {
    expect(senderProblem(inbox, env('job_cancel', 'br-1', 'broker'), 'exec-1', false)).toBeUndefined();
    expect(senderProblem({ cls: 'presence', role: 'executor', from: 'exec-1' }, env('birth', 'exec-1', 'executor'), 'br-1', true)).toBeUndefined();
  });

  it('refuses an envelope that names another sender than the topic (posing as a broker, forged acks)', () => {
    expect(senderProblem({ ...inbox, role: 'client', from: 'mallory' }, env('ack', 'ghost-unit', 'client'), 'exec-1', false)).toMatchObject({ code: 'wrong_sender' });
  });

  it('refuses a role the topic does not give the sender', () => {
    expect(senderProblem({ ...inbox, role: 'client', from: 'mallory' }, env('job_assign', 'mallory', 'broker'), 'exec-1', false)).toMatchObject({
      code: 'wrong_sender',
      reason: expect.stringContaining('claims the role broker'),
    });
  });

  it('refuses a message for another node, and kinds on topics they do not belong on', () => {
    expect(senderProblem(inbox, env('job_cancel', 'br-1', 'broker'), 'exec-2', false)).toMatchObject({ code: 'wrong_topic' });
    expect(senderProblem(inbox, env('death', 'br-1', 'broker', { graceful: false }), 'exec-1', false)).toMatchObject({ code: 'wrong_topic' });
    expect(senderProblem({ cls: 'presence', role: 'broker', from: 'br-1' }, env('ping', 'br-1', 'broker'), 'exec-1', true)).toMatchObject({ code: 'wrong_topic' });
    expect(senderProblem({ cls: 'heartbeat', role: 'broker', from: 'br-1' }, env('birth', 'br-1', 'broker'), 'exec-1', false)).toMatchObject({ code: 'wrong_topic' });
  });

  it('refuses retained messages anywhere but presence', () => {
    expect(senderProblem(inbox, env('job_cancel', 'br-1', 'broker'), 'exec-1', true)).toMatchObject({ code: 'retained' });
    expect(senderProblem({ cls: 'heartbeat', role: 'broker', from: 'br-1' }, env('heartbeat', 'br-1', 'broker'), 'exec-1', true)).toMatchObject({ code: 'retained' });
  });
});

describe('permissions: who may send what to whom', () => {
  it('only brokers assign, cancel and judge on executors, and sync and delegate among themselves', () => {
    for (const role of ROLES) {
      const broker = role === 'broker';
      expect(mayReceive('executor', 'job_assign', role), role).toBe(broker);
      expect(mayReceive('executor', 'job_cancel', role), role).toBe(broker);
      expect(mayReceive('executor', 'job_verdict', role), role).toBe(broker);
      expect(mayReceive('broker', 'sync_delta', role), role).toBe(broker);
      expect(mayReceive('broker', 'sync_digest', role), role).toBe(broker);
      expect(mayReceive('broker', 'job_delegate', role), role).toBe(broker);
      expect(mayReceive('client', 'job_update', role), role).toBe(broker);
    }
  });

  it('only executors report on jobs, and a datastore serves brokers only', () => {
    for (const role of ROLES) {
      expect(mayReceive('broker', 'job_result', role), role).toBe(role === 'executor');
      expect(mayReceive('broker', 'job_started', role), role).toBe(role === 'executor');
      for (const kind of ['data_put', 'data_write', 'data_append', 'data_get', 'data_read', 'data_list', 'data_delete'] as const) expect(mayReceive('datastore', kind, role), `${kind} from ${role}`).toBe(role === 'broker');
    }
  });

  it('every node answers ping and status and takes notices and acks from anyone', () => {
    for (const receiver of ROLES) for (const sender of ROLES) for (const kind of ['ping', 'status_request', 'notice', 'ack'] as const) expect(mayReceive(receiver, kind, sender)).toBe(true);
  });

  it('reply kinds are never accepted as requests, and replies are left to the request they answer', () => {
    for (const receiver of ROLES) for (const kind of ['pong', 'status', 'error', 'data_items', 'data_written', 'data_chunk', 'data_appended', 'job_accepted', 'job_info', 'job_removed'] as const) expect(PERMISSIONS[receiver][kind]).toBeUndefined();
    expect(permissionProblem('executor', env('job_assign', 'mallory', 'client'))).toMatchObject({ code: 'not_permitted' });
    expect(permissionProblem('executor', env('data_items', 'br-1', 'broker', { items: [] }, { re: '2.3' }))).toBeUndefined();
  });
});

describe('admit: the stateless receive stages in order', () => {
  const self = { id: 'exec-1', role: 'executor' as const, topics, limits: { maxMessageBytes: 1 << 20, maxDepth: 32 } };

  it('admits a broker\'s assignment-like message on its own topic and refuses the same from a client', () => {
    const cancel = env('job_cancel', 'br-1', 'broker', { job_id: 'j', attempt: 1, reason: 'r' });
    expect(admit(self, topics.inbox('exec-1', 'broker', 'br-1'), encode(cancel), false)).toMatchObject({ ok: true });
    const forged = env('job_cancel', 'mallory', 'client', { job_id: 'j', attempt: 1, reason: 'r' });
    expect(admit(self, topics.inbox('exec-1', 'client', 'mallory'), encode(forged), false)).toMatchObject({ ok: false, counter: 'rx_dropped_not_permitted', source: 'mallory' });
  });

  it('names the counter of each stage that drops a message', () => {
    expect(admit(self, 'ucp/c/inbox/exec-1', Buffer.from([1]), false)).toMatchObject({ ok: false, counter: 'rx_dropped_wrong_topic' });
    expect(admit(self, topics.inbox('exec-1', 'broker', 'br-1'), Buffer.from('nope'), false)).toMatchObject({ ok: false, counter: 'rx_dropped_malformed_cbor' });
    expect(admit(self, topics.inbox('exec-1', 'client', 'mallory'), encode(env('ping', 'br-1', 'broker')), false)).toMatchObject({ ok: false, counter: 'rx_dropped_wrong_sender' });
    expect(admit(self, topics.presence('executor', 'exec-9'), Buffer.alloc(0), true)).toEqual({ ok: 'cleared', node: 'exec-9' });
  });
});
