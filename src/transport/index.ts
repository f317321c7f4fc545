export * from './connect.js';
export * from './counters.js';
export * from './errors.js';
export * from './node-link.js';
export * from './presence.js';
export type { OutboxEntry } from './outbox.js';
export { SOFTWARE } from './software.js';
export * from './node-runtime.js';
