// The `process` driver: every replica is a local `node` child process running a function bundle.

import type { BundleStore } from './bundle-store.js';
import { replicaEnv, resolveBundleFile } from './process-launch.js';
import { ProcessReplica } from './process-replica.js';
import type { Replica, ReplicaLauncher, ReplicaStart } from './replica.js';
import { ReplicaDriver, type ReplicaDriverOptions } from './replica-driver.js';
import type { FunctionSpec } from './spec.js';

export interface ProcessDriverOptions extends ReplicaDriverOptions {
  bundles: BundleStore;
  /** The node binary replicas run on (default: this process's). */
  nodePath?: string;
}

/** Starts a replica as `node --enable-source-maps <bundle>` with the runtime contract's environment. */
class ProcessLauncher implements ReplicaLauncher<string> {
  readonly kind = 'process';

  constructor(
    readonly bundles: BundleStore,
    readonly nodePath: string,
  ) {}

  prepare(spec: FunctionSpec): Promise<string> {
    return resolveBundleFile(this.bundles, spec);
  }

  start(bundleFile: string, start: ReplicaStart): Replica {
    return new ProcessReplica({
      ...start,
      nodePath: this.nodePath,
      args: ['--enable-source-maps', bundleFile],
      env: replicaEnv(start.spec, start.id),
    });
  }
}

export class ProcessDriver extends ReplicaDriver<string> {
  constructor(options: ProcessDriverOptions) {
    super(new ProcessLauncher(options.bundles, options.nodePath ?? process.execPath), options);
  }

  /** A driver with the functions saved in `stateDir` already coming back up. */
  static async open(options: ProcessDriverOptions): Promise<ProcessDriver> {
    const driver = new ProcessDriver(options);
    await driver.restore();
    return driver;
  }
}
