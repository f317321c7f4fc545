export * from './data-router.js';
