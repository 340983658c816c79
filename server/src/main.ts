// `kubefn-platform <component>`: the entry point of the platform image. One image runs every
// component; deploy/ picks one per Deployment with the container's args.

import { isKubefnError } from '@kubefn/platform';
import { createLogger } from './logger.js';
import { componentEnv, componentNames, startComponent, type ComponentName } from './components.js';

const usage = `usage: kubefn-platform <${componentNames.join('|')}>

Runs one kubefn component in a cluster (see deploy/ in the kubefn repository). Settings come
from the environment: KUBEFN_TOKEN (required), KUBEFN_NAMESPACE (default: the pod's),
KUBEFN_PORT (8080), KUBEFN_REGISTRY, KUBEFN_BASE, KUBEFN_INSECURE_REGISTRIES, KUBEFN_NATS_URL
(the gateway's NATS servers, comma-separated; default: the pods of the kubefn-nats Service),
KUBEFN_LOG_LEVEL (info). Logs are JSON lines on stdout.
`;

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const name = argv[0];
  if (!name || name === '--help' || name === '-h') {
    process.stdout.write(usage);
    return name ? 0 : 2;
  }
  if (!(componentNames as readonly string[]).includes(name)) {
    process.stderr.write(`unknown component "${name}"\n${usage}`);
    return 2;
  }
  const log = createLogger({ json: true, level: env.KUBEFN_LOG_LEVEL || 'info' });
  // An error nothing awaited is a bug: logged with its cause rather than lost (or, for a
  // rejection, ending the process with only Node's own message).
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', { component: name, err }));
  process.on('uncaughtException', (err) => {
    // The process's state is unknown now: exit, and let the Deployment start a fresh one.
    log.error('uncaught exception: exiting', { component: name, err });
    process.exit(1);
  });
  let running;
  try {
    running = await startComponent[name as ComponentName](await componentEnv(env, (message, err) => log.warn(message, err === undefined ? undefined : { err })), log);
  } catch (err) {
    log.error(`${name} failed to start`, { err, ...(isKubefnError(err) && err.hint ? { hint: err.hint } : {}) });
    return 1;
  }
  return new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      log.info(`${name} stopping`, { signal });
      running.close().then(
        () => resolve(0),
        (err: unknown) => {
          log.error(`${name} stop failed`, { err });
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
