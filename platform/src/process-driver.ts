// The `process` driver: every replica is a local `node` child process running a function bundle.

import path from 'node:path';
import type { BundleStore } from './bundle-store.js';
import { KubefnError } from './errors.js';
import { replicaEnv, resolveBundleFile } from './process-launch.js';
import { ProcessReplica } from './process-replica.js';
import type { Replica, ReplicaLauncher, ReplicaStart } from './replica.js';
import { ReplicaDriver, type ReplicaDriverOptions } from './replica-driver.js';
import { removeSecretFiles, secretFiles, writeSecretFiles } from './secret-mounts.js';
import { readSpecSecrets, secretEnvValues, secretsDirEnv, type SecretStore } from './secrets.js';
import type { FunctionSpec } from './spec.js';

export interface ProcessDriverOptions extends ReplicaDriverOptions {
  bundles: BundleStore;
  /** The node binary replicas run on (default: this process's). */
  nodePath?: string;
  /**
   * Where each function's decrypted secret files go, one 0700 directory per function (default
   * `<stateDir>/secret-files`); needed with `secrets`.
   */
  secretFilesDir?: string;
}

/** What a process replica starts from: the bundle and the environment its secrets add. */
interface ProcessArtifact {
  bundleFile: string;
  secretEnv: Record<string, string>;
}

/** Starts a replica as `node --enable-source-maps <bundle>` with the runtime contract's environment. */
class ProcessLauncher implements ReplicaLauncher<ProcessArtifact> {
  readonly kind = 'process';

  constructor(
    readonly bundles: BundleStore,
    readonly nodePath: string,
    readonly secrets: { store: SecretStore; filesDir: string } | undefined,
  ) {}

  async prepare(spec: FunctionSpec): Promise<ProcessArtifact> {
    const bundleFile = await resolveBundleFile(this.bundles, spec);
    if (!spec.secrets?.length) {
      if (this.secrets) removeSecretFiles(this.#filesDir(spec.name));
      return { bundleFile, secretEnv: {} };
    }
    if (!this.secrets) {
      throw new KubefnError('NOT_SUPPORTED', `this process driver has no secret store (function "${spec.name}" lists secrets)`, {
        hint: 'run it under `fn up`, which keeps secrets in its home directory',
      });
    }
    const values = await readSpecSecrets(this.secrets.store, spec);
    // A process cannot mount at /var/openfaas/secrets: the files go to a private directory of
    // the function, and the replica is told where through KUBEFN_SECRETS_DIR.
    const dir = this.#filesDir(spec.name);
    writeSecretFiles(this.secrets.filesDir, dir, values, 0o600);
    return { bundleFile, secretEnv: { ...secretEnvValues(spec, values), [secretsDirEnv]: dir } };
  }

  start(artifact: ProcessArtifact, start: ReplicaStart): Replica {
    return new ProcessReplica({
      ...start,
      nodePath: this.nodePath,
      args: ['--enable-source-maps', artifact.bundleFile],
      env: { ...replicaEnv(start.spec, start.id), ...artifact.secretEnv },
    });
  }

  async forget(name: string): Promise<void> {
    if (this.secrets) removeSecretFiles(this.#filesDir(name));
  }

  #filesDir(name: string): string {
    return path.join(this.secrets!.filesDir, name);
  }
}

export class ProcessDriver extends ReplicaDriver<ProcessArtifact> {
  constructor(options: ProcessDriverOptions) {
    super(new ProcessLauncher(options.bundles, options.nodePath ?? process.execPath, secretFiles(options)), options);
  }

  /** A driver with the functions saved in `stateDir` already coming back up. */
  static async open(options: ProcessDriverOptions): Promise<ProcessDriver> {
    const driver = new ProcessDriver(options);
    await driver.restore();
    return driver;
  }
}
