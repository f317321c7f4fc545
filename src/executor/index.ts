export * from './capabilities.js';
export * from './job-runner.js';
export * from './result-archive.js';
