// Starts a runtime in this process: loads the handler, runs init(), listens on both ports. No env, signals or exit.

import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdminServer, type Readiness } from './admin.js';
import { resolveConfig, type RuntimeConfig } from './config.js';
import { loadHandler, type HandlerModule } from './handler.js';
import { RootLogger, type LogSink } from './logger.js';
import { RuntimeMetrics } from './metrics.js';
import { FunctionServer } from './server.js';

export interface ServeOptions extends Partial<RuntimeConfig> {
  /** Where JSON log lines go; default stdout. */
  log?: LogSink;
}

export interface RuntimeServer {
  /** The function port actually bound (useful with port 0). */
  readonly port: number;
  readonly adminPort: number;
  /** Readiness goes 503, new calls are refused, in-flight calls finish (up to drainMs), then both servers close. */
  drain(): Promise<void>;
  /** Closes both servers now, cutting in-flight calls. Safe to call more than once. */
  close(): Promise<void>;
}

export class StartError extends Error {
  override readonly name = 'StartError';
  constructor(
    readonly code: 'INIT_FAILED' | 'LISTEN_FAILED',
    message: string,
    options: { cause: unknown },
  ) {
    super(message, options);
  }
}

export async function serve(handlerModule: HandlerModule, options: ServeOptions = {}): Promise<RuntimeServer> {
  const config = resolveConfig(options);
  const logger = new RootLogger(config.functionName, config.instance, config.logLevel, options.log);
  const handler = loadHandler(handlerModule);
  const fn = new FunctionServer(config, logger, handler.invoke);
  const metrics = new RuntimeMetrics(config.functionName, fn);
  fn.setMetrics(metrics);
  let readiness: Readiness = 'starting';
  const admin = createAdminServer(() => readiness, metrics, logger);

  // The admin port comes up first so liveness probes pass during a long init(); readiness says "starting".
  let adminPort: number;
  try {
    adminPort = await listen(admin, config.adminPort, config.host);
  } catch (err) {
    throw new StartError('LISTEN_FAILED', `cannot listen on the admin port ${config.host}:${config.adminPort}`, {
      cause: err,
    });
  }
  logger.debug('admin port listening', { adminPort });
  let port: number;
  try {
    try {
      if (handler.init) await handler.init();
    } catch (err) {
      throw new StartError('INIT_FAILED', 'init() failed', { cause: err });
    }
    try {
      port = await listen(fn.http, config.port, config.host);
    } catch (err) {
      throw new StartError('LISTEN_FAILED', `cannot listen on the function port ${config.host}:${config.port}`, {
        cause: err,
      });
    }
  } catch (err) {
    await closeServer(admin);
    throw err;
  }
  readiness = 'ready';

  let closed: Promise<void> | undefined;
  const closeAdmin = (): Promise<void> => (closed ??= closeServer(admin));
  return {
    port,
    adminPort,
    async drain() {
      readiness = 'draining';
      await fn.drain();
      await closeAdmin();
    },
    async close() {
      readiness = 'draining';
      await Promise.all([fn.closeNow(), closeAdmin()]);
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
