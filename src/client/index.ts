export * from './data-client.js';
export * from './plan.js';
