export * from './errors.js';
export * from './schema.js';
export * from './names.js';
export * from './kinds.js';
export * from './envelope.js';
export * from './codec.js';
export * from './topics.js';
export * from './capabilities.js';
