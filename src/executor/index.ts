export * from './capabilities.js';
export * from './job-runner.js';
