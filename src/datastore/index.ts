export * from './datastore-node.js';
export * from './named-data.js';
