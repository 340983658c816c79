// The kubernetes driver and the pure pieces it is made of.

export * from './driver.js';
export * from './objects.js';
export * from './reconciler.js';
export * from './pending-prober.js';
export * from './warm-pods.js';
export * from './manifests.js';
export * from './endpoints.js';
export * from './status.js';
export * from './client.js';
export * from './peers.js';
export * from './errors.js';
export * from './secrets.js';
export * from './config-map-watch.js';
export * from './events.js';
export * from './placement.js';
export * from './lease.js';
