export * from './bridge-config.js';
export * from './bridge-node.js';
