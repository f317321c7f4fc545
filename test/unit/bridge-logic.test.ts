import { describe, expect, it } from 'vitest';
import { Admission } from '../../firmware-bridge/admission.js';
import { fires, type RuleState } from '../../firmware-bridge/trigger-rule.js';
import { parseSparkplugTopic, SparkplugHost } from '../../firmware-bridge/sparkplug/edge-state.js';
import { decodeSparkplug, encodeSparkplug } from '../../firmware-bridge/sparkplug/payload.js';

const topic = (t: string) => parseSparkplugTopic(t)!;

describe('bridge decisions', () => {
  it('drops a repeated payload within its window and a sequence number not above the last', () => {
    const a = new Admission();
    expect(a.repeatedPayload('k', 'd1', 0, 1_000)).toBe(false);
    expect(a.repeatedPayload('k', 'd1', 500, 1_000)).toBe(true);
    expect(a.repeatedPayload('k', 'd1', 2_000, 1_000)).toBe(false);
    expect(a.repeatedPayload('k', 'd2', 2_100, 1_000)).toBe(false);
    expect(a.repeatedSeq('dev', 5)).toBe(false);
    expect(a.repeatedSeq('dev', 5)).toBe(true);
    expect(a.repeatedSeq('dev', 4)).toBe(true);
    expect(a.repeatedSeq('dev', 6)).toBe(false);
  });

  it('limits each device to its rate, with a burst of one second', () => {
    const a = new Admission();
    const allowed = Array.from({ length: 20 }, () => a.allow('dev', 10, 0)).filter(Boolean).length;
    expect(allowed).toBe(10);
    expect(a.allow('dev', 10, 100)).toBe(true);
    expect(a.allow('dev', 10, 100)).toBe(false);
    expect(a.allow('other', 10, 100)).toBe(true);
  });

  it('fires a threshold rule once per crossing, spaced by its interval', () => {
    const rule = { when: 'threshold' as const, above: 80, count: 1, intervalMs: 0 };
    const state: RuleState = { seen: 0 };
    expect([50, 85, 90, 70, 81, 79].map((v, i) => fires(rule, state, v, i))).toEqual([false, true, false, false, true, false]);
    const spaced: RuleState = { seen: 0 };
    expect([85, 70, 90].map((v, i) => fires({ ...rule, intervalMs: 10 }, spaced, v, i))).toEqual([true, false, false]);
    const counted: RuleState = { seen: 0 };
    expect([1, 2, 3, 4, 5, 6].map((v) => fires({ when: 'count', count: 3, intervalMs: 0 }, counted, v, 0))).toEqual([false, false, true, false, false, true]);
  });

  it('parses Sparkplug B topics, refusing device messages without a device and node ones with one', () => {
    expect(parseSparkplugTopic('spBv1.0/plant/DDATA/edge-1/pump')).toEqual({ group: 'plant', type: 'DDATA', node: 'edge-1', device: 'pump' });
    expect(parseSparkplugTopic('spBv1.0/plant/DDATA/edge-1')).toBeUndefined();
    expect(parseSparkplugTopic('spBv1.0/plant/NDATA/edge-1/pump')).toBeUndefined();
    expect(parseSparkplugTopic('spBv1.0/plant/XDATA/edge-1')).toBeUndefined();
  });

  it('follows births, aliases, sequence numbers and deaths as a Sparkplug host', () => {
    const host = new SparkplugHost(1_000);
    const pl = (p: Parameters<typeof encodeSparkplug>[0]) => decodeSparkplug(encodeSparkplug(p));
    let out = host.handle(topic('spBv1.0/g/NDATA/n1'), pl({ seq: 3, metrics: [{ alias: 1, type: 'Float', value: 1 }] }), 0);
    expect(out).toMatchObject({ rebirth: true, bad: { reason: 'no_birth' } });
    out = host.handle(topic('spBv1.0/g/NBIRTH/n1'), pl({ seq: 0, metrics: [{ name: 'bdSeq', type: 'Int64', value: 4 }, { name: 'Level', alias: 1, type: 'Float', value: 2 }] }), 10);
    expect(out.metrics).toEqual([{ device: '', name: 'Level', value: 2 }]);
    out = host.handle(topic('spBv1.0/g/DBIRTH/n1/d1'), pl({ seq: 1, metrics: [{ name: 'Run', alias: 2, type: 'Boolean', value: false }] }), 20);
    out = host.handle(topic('spBv1.0/g/DDATA/n1/d1'), pl({ seq: 2, metrics: [{ alias: 2, type: 'Boolean', value: true }, { alias: 9, type: 'Int32', value: 1 }] }), 30);
    expect(out.metrics).toEqual([{ device: 'd1', name: 'Run', value: true }]);
    // The unknown alias asks for a rebirth, but not again within the interval.
    expect(out).toMatchObject({ rebirth: false, bad: { reason: 'unknown_alias' } });
    out = host.handle(topic('spBv1.0/g/NDATA/n1'), pl({ seq: 7, metrics: [{ alias: 1, type: 'Float', value: 3 }] }), 2_000);
    expect(out).toMatchObject({ rebirth: true, events: ['seq_gap'], metrics: [{ name: 'Level', value: 3 }] });
    // seq wraps from 255 to 0 without a gap.
    host.edge('g', 'n1')!.seq = 255;
    expect(host.handle(topic('spBv1.0/g/NDATA/n1'), pl({ seq: 0, metrics: [] }), 2_100).events).toEqual([]);
    expect(host.handle(topic('spBv1.0/g/NDEATH/n1'), pl({ metrics: [{ name: 'bdSeq', type: 'Int64', value: 3 }] }), 3_000).events).toEqual(['stale_death_ignored']);
    out = host.handle(topic('spBv1.0/g/NDEATH/n1'), pl({ metrics: [{ name: 'bdSeq', type: 'Int64', value: 4 }] }), 3_100);
    expect(out.events).toEqual(['death']);
    expect(out.stale).toEqual(expect.arrayContaining([{ device: '', names: ['Level'] }, { device: 'd1', names: ['Run'] }]));
    expect(host.edge('g', 'n1')).toMatchObject({ state: 'offline', seqGaps: 1, staleDeathsIgnored: 1 });
  });
});
