import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BridgeConfigError, parseBridgeDocument } from '../../firmware-bridge/index.js';
import { NameTemplate } from '../../firmware-bridge/name-template.js';
import { TopicPattern } from '../../firmware-bridge/topic-pattern.js';
import { parseFieldPath, valueAt } from '../../firmware-bridge/field-path.js';
import { loadConfig, readDocumentTables } from '../../src/config/index.js';
import { ROOT } from '../helpers/processes.js';

describe('bridge configuration', () => {
  it.each(readdirSync(join(ROOT, 'config')).filter((f) => f.startsWith('bridge-')))('the worked example %s loads', (file) => {
    const path = join(ROOT, 'config', file);
    const config = loadConfig({ file: path, env: {}, documentTables: ['mapping', 'trigger'] });
    expect(config.bridge.field_url).toMatch(/^mqtt:/);
    const doc = parseBridgeDocument(path, readDocumentTables(path, ['mapping', 'trigger']));
    expect(doc.mappings.length).toBeGreaterThan(0);
  });

  it('other commands refuse a file with mappings, naming the command that reads them', () => {
    expect(() => loadConfig({ file: join(ROOT, 'config', 'bridge-esphome.toml'), env: {} })).toThrow(/\[\[mapping\]\] .* is read only by `ucp bridge`/);
  });

  it('reports every problem of every table at once, by table and key', () => {
    let error: BridgeConfigError | undefined;
    try {
      parseBridgeDocument('b.toml', {
        mapping: [
          { topic: 'a/#/b', codec: 'json', target: 'x/{device}' },
          { topic: 'sensors/{device}', codec: 'yaml', target: 'x/{device}/{nope}', colour: 'red' },
          { topic: 'plain/{device}', codec: 'number', path: 'a.b', target: 'x' },
        ],
        trigger: [{ on: 'x/{device}', when: 'threshold', job: { wasm_module: 'm' } }],
      });
    } catch (err) {
      error = err as BridgeConfigError;
    }
    expect(error).toBeInstanceOf(BridgeConfigError);
    expect(error!.problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^mapping\[0\]\.topic: .*# may only be the last level/),
        expect.stringMatching(/^mapping\[1\]\.codec: must be one of json, cbor/),
        expect.stringMatching(/^mapping\[1\]\.target: .*\{nope\}/),
        'mapping[1]: unknown key "colour"',
        expect.stringMatching(/^mapping\[2\]\.codec: number payloads have no fields/),
        'trigger[0].when: a threshold needs above and/or below',
      ]),
    );
  });

  it('topic patterns capture named levels and honour wildcards', () => {
    const p = new TopicPattern('application/+/device/{device}/event/{event}');
    expect(p.filter).toBe('application/+/device/+/event/+');
    expect(p.match('application/7/device/70b3/event/up')).toEqual({ device: '70b3', event: 'up' });
    expect(p.match('application/7/device/70b3/event')).toBeUndefined();
    expect(p.match('application/7/device/70b3/event/up/extra')).toBeUndefined();
    expect(new TopicPattern('spBv1.0/{group}/#').match('spBv1.0/plant/NDATA/edge-1')).toEqual({ group: 'plant' });
  });

  it('name templates turn device text into valid name segments, keeping its hierarchy', () => {
    const t = new NameTemplate('field/{device}/{metric}');
    expect(t.fill({ device: 'pump 1', metric: 'Tank/Level' })).toBe('field/pump_1/Tank/Level');
    expect(t.fill({ device: '..', metric: 'x' })).toBe('field/__/x');
    expect(t.fill({ device: 'a' })).toBeUndefined();
    expect(() => new NameTemplate('field/../{device}')).toThrow(/must be a data name/);
  });

  it('field paths reach into objects and arrays, never into prototypes', () => {
    const doc = JSON.parse('{"object":{"t":21},"rxInfo":[{"rssi":-70}]}') as unknown;
    expect(valueAt(doc, parseFieldPath('$.object.t'))).toBe(21);
    expect(valueAt(doc, parseFieldPath('rxInfo[0].rssi'))).toBe(-70);
    expect(valueAt(doc, parseFieldPath('object.constructor'))).toBeUndefined();
    expect(valueAt(doc, parseFieldPath('__proto__'))).toBeUndefined();
    expect(() => parseFieldPath('a..b[')).toThrow(/not of the form/);
  });
});
