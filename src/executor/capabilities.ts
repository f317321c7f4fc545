import { readdirSync, readFileSync, statfsSync } from 'node:fs';
import { availableParallelism, freemem, loadavg } from 'node:os';
import { join } from 'node:path';
import type { Capabilities } from '../protocol/index.js';

export interface PowerState {
  readonly batteryPercent?: number;
  readonly onMainsPower: boolean;
}

/**
 * Battery and mains state from Linux's power_supply class (what a Raspberry Pi UPS HAT or a laptop
 * exposes). A unit with no power supply entries is taken to be on mains with no battery.
 */
export function readPowerState(root = '/sys/class/power_supply'): PowerState {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return { onMainsPower: true };
  }
  const read = (dir: string, file: string) => {
    try {
      return readFileSync(join(root, dir, file), 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  let batteryPercent: number | undefined;
  let mainsSeen = false;
  let mainsOnline = false;
  let discharging = false;
  for (const dir of entries) {
    const type = read(dir, 'type');
    if (type === 'Battery') {
      const capacity = Number(read(dir, 'capacity'));
      if (Number.isFinite(capacity)) batteryPercent = Math.max(0, Math.min(100, Math.round(capacity)));
      if (read(dir, 'status') === 'Discharging') discharging = true;
    } else if (type === 'Mains' || type === 'USB') {
      mainsSeen = true;
      if (read(dir, 'online') === '1') mainsOnline = true;
    }
  }
  // Without a mains entry, a battery that is not discharging is being fed from somewhere.
  const onMainsPower = mainsSeen ? mainsOnline : batteryPercent === undefined || !discharging;
  return { ...(batteryPercent !== undefined ? { batteryPercent } : {}), onMainsPower };
}

/** The executor's capabilities as the system reports them now. */
export function readCapabilities(dataDir: string, tags: readonly string[], power: PowerState = readPowerState()): Capabilities {
  const cores = availableParallelism();
  const busy = Math.min(cores, loadavg()[0] ?? 0);
  const disk = statfsSync(dataDir);
  return {
    cpu_cores: cores,
    free_cpu_capacity: Math.max(0, Math.round((cores - busy) * 100)),
    free_memory: freemem(),
    free_disk_space: disk.bavail * disk.bsize,
    tags: [...tags],
    ...(power.batteryPercent !== undefined ? { battery_percent: power.batteryPercent } : {}),
    on_mains_power: power.onMainsPower,
  };
}
