import { arrayOf, bool, object, optional, str, uint } from './schema.js';
import type { Infer } from './schema.js';

/**
 * What an executor offers, in REC's numeric fields plus our tags and power state. Executors advertise it
 * in heartbeats; jobs state the minimum they need in the same shape.
 */
export const capabilitiesSchema = object({
  cpu_cores: uint({ max: 4_096 }),
  /** 0..cores×100: how much CPU is idle, in percent of one core. */
  free_cpu_capacity: uint({ max: 409_600 }),
  free_memory: uint(),
  free_disk_space: uint(),
  tags: arrayOf(str({ min: 1, max: 64 }), { max: 64 }),
  /** Absent when the unit has no battery (mains only). */
  battery_percent: optional(uint({ max: 100 })),
  on_mains_power: bool(),
});

export type Capabilities = Infer<typeof capabilitiesSchema>;

export const requirementsSchema = object({
  cpu_cores: optional(uint({ max: 4_096 })),
  free_cpu_capacity: optional(uint({ max: 409_600 })),
  free_memory: optional(uint()),
  free_disk_space: optional(uint()),
  tags: optional(arrayOf(str({ min: 1, max: 64 }), { max: 64 })),
  min_battery_percent: optional(uint({ max: 100 })),
  requires_mains_power: optional(bool()),
});

export type Requirements = Infer<typeof requirementsSchema>;

const NUMERIC = ['cpu_cores', 'free_cpu_capacity', 'free_memory', 'free_disk_space'] as const;

/**
 * Why an offer does not satisfy a requirement, or undefined if it does. Numeric fields must be at least
 * the required value, every required tag must be offered, and a battery requirement is met by mains power
 * or by enough charge. The reason names the first shortfall, for "why is my job still queued?".
 */
export function unmetRequirement(offer: Capabilities, need: Requirements): string | undefined {
  for (const field of NUMERIC) {
    const required = need[field];
    if (required !== undefined && offer[field] < required) return `${field} ${offer[field]} < ${required}`;
  }
  for (const tag of need.tags ?? []) {
    if (!offer.tags.includes(tag)) return `missing tag "${tag}"`;
  }
  if (need.requires_mains_power === true && !offer.on_mains_power) return 'not on mains power';
  if (need.min_battery_percent !== undefined && !offer.on_mains_power) {
    const charge = offer.battery_percent ?? 0;
    if (charge < need.min_battery_percent) return `battery ${charge}% < ${need.min_battery_percent}%`;
  }
  return undefined;
}
