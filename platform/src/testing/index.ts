// Helpers for testing kubefn drivers and the code around them: `@kubefn/platform/testing`.

export * from './driver-conformance.js';
export * from './wait-for.js';
export * from './stub-kubeconfig.js';
