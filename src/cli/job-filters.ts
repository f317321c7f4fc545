import { InvalidArgumentError } from 'commander';
// The job module alone, not the protocol's index: parsing flags must not load the codec.
import { JOB_STATES, type JobState } from '../protocol/job.js';

/**
 * What `ucp jobs --since` and `--state` accept, turned into the job_list filters. Pure, so the forms a
 * user may type are tested without a cluster.
 */

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * `--since`: a duration back from now (`90s`, `10m`, `1h30m`, `2d`) or a time (`2025-06-01`,
 * `2025-06-01T14:30`, any form Date.parse reads, local time unless it names a zone). Returns ms since
 * the epoch.
 */
export function parseSince(value: string, now = Date.now()): number {
  const text = value.trim();
  if (/^(\d+(\.\d+)?[smhd])+$/.test(text)) {
    let ms = 0;
    for (const [, n, unit] of text.matchAll(/(\d+(?:\.\d+)?)([smhd])/g)) ms += Number(n) * UNIT_MS[unit!]!;
    return Math.max(0, Math.round(now - ms));
  }
  const at = /^\d{4}-\d{2}-\d{2}$/.test(text) ? Date.parse(`${text}T00:00`) : Date.parse(text);
  if (Number.isNaN(at)) throw new InvalidArgumentError('give a duration back from now such as 10m, 2h or 1d, or a time such as 2025-06-01T14:30');
  if (at < 0) throw new InvalidArgumentError('the time must be after 1970');
  return at;
}

/** Names for groups of states: what a user means by "what is going on" and "what is done". */
const GROUPS: Record<string, readonly JobState[]> = {
  active: ['queued', 'assigned', 'running'],
  finished: ['succeeded', 'failed'],
};

/** `--state`: repeatable, comma-separated states or groups; the result has each state once. */
export function parseStates(value: string, previous: JobState[] = []): JobState[] {
  const states = new Set(previous);
  for (const word of value.split(',').map((w) => w.trim().toLowerCase()).filter((w) => w !== '')) {
    const group = GROUPS[word] ?? ((JOB_STATES as readonly string[]).includes(word) ? [word as JobState] : undefined);
    if (group === undefined) throw new InvalidArgumentError(`"${word}" is not a job state; use ${[...JOB_STATES, ...Object.keys(GROUPS)].join(', ')}`);
    for (const state of group) states.add(state);
  }
  if (states.size === 0) throw new InvalidArgumentError(`name at least one state: ${[...JOB_STATES, ...Object.keys(GROUPS)].join(', ')}`);
  return [...states];
}
