export * from './bundle.js';
export * from './oci-layer.js';
export * from './oci-image.js';
export * from './oci-archive.js';
export * from './host-base.js';
export * from './source-archive.js';
export * from './registry/index.js';
export * from './image-build.js';
