// Helpers for testing code that builds and pushes images: `@kubefn/builder/testing`.

export * from './registry-server.js';
export * from './tar.js';
