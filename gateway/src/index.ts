export * from './app.js';
export * from './context.js';
export * from './stats.js';
export * from './router.js';
export * from './openfaas.js';
export { checkToken } from './auth.js';
export { buildProxyPlugin, type BuildProxyOptions } from './build-proxy.js';
export { kubefnErrorHandler } from './error-handler.js';
export { requestLogController } from './request-log.js';
