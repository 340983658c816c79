export * from './errors.js';
export * from './duration.js';
export * from './spec.js';
export * from './driver.js';
export * from './runtime-contract.js';
