// The OCI distribution API: image references, stored logins, and the registry client.

export * from './reference.js';
export * from './credentials.js';
export * from './client.js';
