// The `process` driver: every replica is a local `node` child process running a function bundle,
// in the directory its app (the bundle and the files shipped next to it) was unpacked into.

import type { AppStore } from './app-store.js';
import type { BundleStore } from './bundle-store.js';
import { replicaEnv, resolveProcessArtifact, type ProcessArtifact } from './process-launch.js';
import { ProcessReplica } from './process-replica.js';
import type { Replica, ReplicaLauncher, ReplicaStart } from './replica.js';
import { ReplicaDriver, type ReplicaDriverOptions } from './replica-driver.js';
import type { FunctionSpec } from './spec.js';

export interface ProcessDriverOptions extends ReplicaDriverOptions {
  bundles: BundleStore;
  /** Apps (`app:sha256:` images); without it only bundle images run. */
  apps?: AppStore;
  /** The node binary replicas run on (default: this process's). */
  nodePath?: string;
}

/** Starts a replica as `node --enable-source-maps <app>/fn.cjs` in its app root, with the runtime contract's environment. */
class ProcessLauncher implements ReplicaLauncher<ProcessArtifact> {
  readonly kind = 'process';

  constructor(
    readonly stores: { bundles: BundleStore; apps?: AppStore | undefined },
    readonly nodePath: string,
  ) {}

  prepare(spec: FunctionSpec): Promise<ProcessArtifact> {
    return resolveProcessArtifact(this.stores, spec);
  }

  start(artifact: ProcessArtifact, start: ReplicaStart): Replica {
    return new ProcessReplica({
      ...start,
      nodePath: this.nodePath,
      cwd: artifact.cwd,
      args: ['--enable-source-maps', artifact.file],
      env: replicaEnv(start.spec, start.id),
    });
  }
}

export class ProcessDriver extends ReplicaDriver<ProcessArtifact> {
  constructor(options: ProcessDriverOptions) {
    super(new ProcessLauncher({ bundles: options.bundles, apps: options.apps }, options.nodePath ?? process.execPath), options);
  }

  /** A driver with the functions saved in `stateDir` already coming back up. */
  static async open(options: ProcessDriverOptions): Promise<ProcessDriver> {
    const driver = new ProcessDriver(options);
    await driver.restore();
    return driver;
  }
}
