import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { capabilitiesReader, readCapabilities, readPowerState } from '../../src/executor/capabilities.js';
import { capabilitiesSchema, unmetRequirement, type Capabilities, type Requirements } from '../../src/protocol/index.js';
import { removeDir, tempDir } from '../helpers/processes.js';

const fireUnit: Capabilities = {
  cpu_cores: 4,
  free_cpu_capacity: 300,
  free_memory: 2 * 1024 ** 3,
  free_disk_space: 10 * 1024 ** 3,
  tags: ['firefighting', 'thermal-camera'],
  battery_percent: 40,
  on_mains_power: false,
};

describe('capability matching', () => {
  it('accepts an offer that meets every stated requirement', () => {
    expect(unmetRequirement(fireUnit, {})).toBeUndefined();
    expect(unmetRequirement(fireUnit, { cpu_cores: 4, free_memory: 1024 ** 3, tags: ['firefighting'], min_battery_percent: 40 })).toBeUndefined();
  });

  it.each([
    [{ cpu_cores: 8 }, 'cpu_cores 4 < 8'],
    [{ free_cpu_capacity: 301 }, 'free_cpu_capacity 300 < 301'],
    [{ free_disk_space: 11 * 1024 ** 3 }, /free_disk_space/],
    [{ tags: ['firefighting', 'ambulance'] }, 'missing tag "ambulance"'],
    [{ requires_mains_power: true }, 'not on mains power'],
    [{ min_battery_percent: 50 }, 'battery 40% < 50%'],
  ] as Array<[Requirements, string | RegExp]>)('refuses %j and says why', (need, why) => {
    const reason = unmetRequirement(fireUnit, need);
    expect(reason).toBeDefined();
    if (typeof why === 'string') expect(reason).toBe(why);
    else expect(reason).toMatch(why);
  });

  it('a unit on mains power meets any battery requirement', () => {
    expect(unmetRequirement({ ...fireUnit, on_mains_power: true, battery_percent: 5 }, { min_battery_percent: 80 })).toBeUndefined();
    const { battery_percent: _none, ...noBattery } = fireUnit;
    expect(unmetRequirement({ ...noBattery, on_mains_power: true }, { min_battery_percent: 80, requires_mains_power: true })).toBeUndefined();
  });
});

describe('reading capabilities from the system', () => {
  let dir: string;
  afterEach(() => removeDir(dir));

  function supply(name: string, files: Record<string, string>) {
    mkdirSync(join(dir, name), { recursive: true });
    for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, name, file), `${text}\n`);
  }

  it('reads battery charge and mains state from power_supply entries', () => {
    dir = tempDir();
    supply('BAT0', { type: 'Battery', capacity: '63', status: 'Discharging' });
    supply('AC', { type: 'Mains', online: '0' });
    expect(readPowerState(dir)).toEqual({ batteryPercent: 63, onMainsPower: false });
    supply('AC', { type: 'Mains', online: '1' });
    expect(readPowerState(dir)).toEqual({ batteryPercent: 63, onMainsPower: true });
  });

  it('takes a unit without power_supply entries to be on mains with no battery', () => {
    dir = tempDir();
    expect(readPowerState(join(dir, 'absent'))).toEqual({ onMainsPower: true });
    expect(readPowerState(dir)).toEqual({ onMainsPower: true });
  });

  it('asks the system again only once a reading is older than its maximum age', () => {
    dir = tempDir();
    supply('BAT0', { type: 'Battery', capacity: '63', status: 'Discharging' });
    let t = 0;
    const read = capabilitiesReader(dir, [], { maxAgeMs: 5_000, now: () => t, powerRoot: dir });
    expect(read().battery_percent).toBe(63);
    supply('BAT0', { type: 'Battery', capacity: '20', status: 'Discharging' });
    t = 4_999;
    expect(read().battery_percent).toBe(63);
    t = 5_000;
    expect(read().battery_percent).toBe(20);
  });

  it('reports cores, CPU, memory and the data directory\'s free disk in the wire shape', () => {
    dir = tempDir();
    const caps = readCapabilities(dir, ['firefighting'], { onMainsPower: true });
    expect(capabilitiesSchema.check(caps, 'caps')).toBeUndefined();
    expect(caps.cpu_cores).toBeGreaterThan(0);
    expect(caps.free_cpu_capacity).toBeLessThanOrEqual(caps.cpu_cores * 100);
    expect(caps.free_memory).toBeGreaterThan(0);
    expect(caps.free_disk_space).toBeGreaterThan(0);
    expect(caps.tags).toEqual(['firefighting']);
  });
});
