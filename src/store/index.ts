export * from './errors.js';
export * from './node-store.js';
