export * from './data-client.js';
export * from './plan.js';
export * from './job-client.js';
