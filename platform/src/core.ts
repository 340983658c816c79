// What the CLI and other light callers need from the platform package without loading the spec
// schemas, the drivers or the Kubernetes client: errors, names, durations, quantities, subjects
// and the wire contracts. \`fn --help\` starts in a fraction of the time the whole package takes.

export * from './errors.js';
export * from './duration.js';
export * from './quantity.js';
export * from './names.js';
export * from './subjects.js';
export * from './events-contract.js';
export * from './scaling-contract.js';
export * from './runtime-contract.js';
export * from './rollout.js';
export * from './secrets.js';
