// The replica entry point: config from the environment, readiness over IPC, drain on SIGTERM, exit on crashes.

import { hostname } from 'node:os';
import { runtimeEnv, type RuntimeMessage } from '@kubefn/platform/runtime-contract';
import { configFromEnv, type RuntimeConfig } from './config.js';
import { HandlerLoadError, type HandlerModule } from './handler.js';
import { endLoadGuard, entryDir, exitWithLoadFailure, loadFailureOf } from './load-failure.js';
import { RootLogger } from './logger.js';
import { serve, StartError, type RuntimeServer } from './serve.js';

/**
 * Runs a function module as this process's whole job: what the generated entry calls,
 * `import * as m from './handler.js'; run(m);`. Reports ready on IPC and stdout once init()
 * finished and both ports listen; exits 0 after a SIGTERM drain, loadFailedExitCode with a
 * load-failed line when the handler cannot load (no usable default export, init() threw), 1 on
 * any other startup failure or uncaught error (the platform then replaces the replica).
 */
export function run(handlerModule: HandlerModule): void {
  endLoadGuard();
  let config: RuntimeConfig;
  try {
    config = configFromEnv(process.env);
  } catch (err) {
    fatal('cannot start: ' + (err as Error).message, err);
  }
  const logger = new RootLogger(config.functionName, config.instance, config.logLevel);
  installCrashHandlers(logger);

  let server: RuntimeServer | undefined;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn('second signal during drain; exiting without waiting', { signal });
      process.exit(1);
    }
    stopping = true;
    if (server === undefined) {
      // Nothing is in flight before ready; init() work in progress is simply abandoned.
      logger.info('stopping before ready', { signal });
      process.exit(0);
    }
    logger.info('draining', { signal });
    const drained = server.drain();
    const told = send({ type: 'kubefn:draining' });
    Promise.all([drained, told]).then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error('drain failed', { err });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // The parent that started us over IPC is gone (even by SIGKILL): drain and exit rather than
  // live on as an orphan nobody routes to.
  if (process.send !== undefined) process.once('disconnect', () => onSignal('SIGTERM'));

  serve(handlerModule, config).then(
    (started) => {
      server = started;
      void send({ type: 'kubefn:ready', port: started.port, adminPort: started.adminPort });
      logger.info('ready', { port: started.port, adminPort: started.adminPort });
    },
    (err: unknown) => {
      const stage = err instanceof HandlerLoadError ? 'export' : err instanceof StartError && err.code === 'INIT_FAILED' ? 'init' : undefined;
      if (stage) {
        logger.error(stage === 'init' ? 'init() failed' : (err as Error).message, { err: stage === 'init' ? (err as StartError).cause : err });
        exitWithLoadFailure(loadFailureOf(stage, stage === 'init' ? (err as StartError).cause : err, entryDir()));
      }
      if (err instanceof StartError) {
        logger.error(err.message, { err: err.cause });
      } else {
        logger.error('cannot start: ' + (err as Error).message, { err });
      }
      process.exit(1);
    },
  );
}

/** Logs a startup failure as JSON, with whatever identity the environment gives, and exits 1. */
export function fatal(message: string, err?: unknown): never {
  const name = process.env[runtimeEnv.functionName] || 'function';
  const instance = process.env[runtimeEnv.instance] || hostname();
  new RootLogger(name, instance).error(message, err === undefined ? undefined : { err });
  process.exit(1);
}

function installCrashHandlers(logger: RootLogger): void {
  // After an uncaught error the process state is unknown: log it with its stack and let the platform replace us.
  process.on('uncaughtException', (err) => {
    logger.error('uncaught exception', { err });
    process.exit(1);
  });
  process.on('unhandledRejection', (reason) => {
    logger.error('unhandled promise rejection', { err: reason });
    process.exit(1);
  });
}

/** Sends over the IPC channel when there is one; resolves once the message is handed to the channel. */
function send(message: RuntimeMessage): Promise<void> {
  if (process.send === undefined || !process.connected) return Promise.resolve();
  return new Promise((resolve) => {
    try {
      // The callback also swallows a closed channel (parent gone), which would otherwise be an 'error' event.
      process.send?.(message, () => resolve());
    } catch {
      resolve();
    }
  });
}
