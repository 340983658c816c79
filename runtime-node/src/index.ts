// Public API of the kubefn Node.js runtime: `run` for replicas, `serve` for embedding and tests, and the handler types.

export { run } from './run.js';
export { serve, StartError, type RuntimeServer, type ServeOptions } from './serve.js';
export {
  loadHandler,
  HandlerLoadError,
  type CloudEvent,
  type Context,
  type FetchHandler,
  type Handler,
  type HandlerModule,
  type HandlerResult,
} from './handler.js';
export type { Logger, LogFields, LogLevel, LogSink } from './logger.js';
export {
  configFromEnv,
  resolveConfig,
  ConfigError,
  logLevelEnv,
  defaultPort,
  defaultAdminPort,
  defaultTimeoutMs,
  defaultMaxBodyBytes,
  drainGraceMs,
  type RuntimeConfig,
} from './config.js';
