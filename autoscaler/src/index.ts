export * from './clock.js';
export * from './window.js';
export * from './decider.js';
export * from './settings.js';
export * from './autoscaler.js';
export * from './config.js';
export * from './http-source.js';
export * from './poke-client.js';
