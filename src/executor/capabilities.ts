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

/** How long a reading of the executor's capabilities is sent again before the system is asked anew. */
export const CAPABILITIES_MAX_AGE_MS = 5_000;

/**
 * The executor's capabilities for its heartbeats, read from the system at most every `maxAgeMs`. A reading
 * asks /proc, /sys and the file system (about 0.75 ms of CPU per heartbeat on a 2-core VM, a tenth of an
 * idle executor's); the load average it reports is itself a one-minute average the kernel updates every
 * 5 s, and free memory, disk and power change as slowly.
 */
export function capabilitiesReader(
  dataDir: string,
  tags: readonly string[],
  options: { maxAgeMs?: number; now?: () => number; powerRoot?: string } = {},
): () => Capabilities {
  const maxAgeMs = options.maxAgeMs ?? CAPABILITIES_MAX_AGE_MS;
  const now = options.now ?? (() => performance.now());
  let last: { at: number; caps: Capabilities } | undefined;
  return () => {
    const at = now();
    if (last === undefined || at - last.at >= maxAgeMs) last = { at, caps: readCapabilities(dataDir, tags, readPowerState(options.powerRoot)) };
    return last.caps;
  };
}
