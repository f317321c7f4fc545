import type { Table } from './node-store.js';

export interface NamePage<T> {
  readonly items: T[];
  /** The last name returned, to pass back as `after` for the next page; absent on the last page. */
  readonly next?: string;
}

/**
 * One page of a table keyed by hierarchical names: the entries at or below `prefix` (every entry when
 * `prefix` is empty), in name order, starting after `after`.
 */
export function pageUnder<V, T>(
  table: Table<V>,
  prefix: string,
  limit: number,
  after: string | undefined,
  map: (name: string, value: V) => T,
  /** Entries to skip without counting them, e.g. tombstones. */
  keep: (value: V) => boolean = () => true,
): NamePage<T> {
  const items: T[] = [];
  // '0' follows '/' in byte order, so [prefix, prefix + '0') holds the name and everything under it,
  // plus siblings such as "prefix.x", which are skipped.
  const end = prefix === '' ? undefined : `${prefix}0`;
  const start = after !== undefined && after >= prefix ? after : prefix;
  let last: string | undefined;
  for (const { key, value } of table.getRange({ start, ...(end !== undefined ? { end } : {}) })) {
    if (key === after) continue;
    if (prefix !== '' && key !== prefix && !key.startsWith(`${prefix}/`)) continue;
    if (!keep(value)) continue;
    if (items.length === limit) return { items, next: last! };
    items.push(map(key, value));
    last = key;
  }
  return { items };
}
