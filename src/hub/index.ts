export * from './embedded-hub.js';
