export * from './errors.js';
export * from './node-store.js';
export * from './paging.js';
