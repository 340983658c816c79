export * from './app.js';
export * from './context.js';
export * from './stats.js';
export * from './router.js';
export * from './openfaas.js';
export { checkToken } from './auth.js';
