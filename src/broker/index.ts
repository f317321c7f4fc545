export * from './data-router.js';
export * from './scheduler.js';
