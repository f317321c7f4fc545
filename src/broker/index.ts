export * from './data-router.js';
export * from './job-manager.js';
export * from './metadata-replica.js';
export * from './node-registry.js';
export * from './refusal.js';
export * from './scheduler.js';
export * from './staged-results.js';
