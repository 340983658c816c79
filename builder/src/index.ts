export * from './bundle.js';
export * from './oci-layer.js';
export * from './oci-image.js';
export * from './oci-archive.js';
