export * from './bundle.js';
export * from './oci-layer.js';
