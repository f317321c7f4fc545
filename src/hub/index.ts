export * from './embedded-hub.js';
export * from './credentials.js';
export * from './policy.js';
export * from './login-limiter.js';
export * from './mosquitto-policy.js';
