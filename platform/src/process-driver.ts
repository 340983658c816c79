// The `process` driver: every replica is a local `node` child process running a function bundle,
// in the directory its app (the bundle and the files shipped next to it) was unpacked into.

import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AppStore } from './app-store.js';
import type { BundleStore } from './bundle-store.js';
import { KubefnError } from './errors.js';
import { ProcessIsolation, type IsolatedPlace } from './process-isolation.js';
import { replicaEnv, resolveProcessArtifact, type ProcessArtifact, type ReplicaDirs } from './process-launch.js';
import { memoryNodeArgs, ProcessLimiter, processMemoryLimit } from './process-limits.js';
import { ProcessReplica } from './process-replica.js';
import type { ColdStartPath, WarmPoolStats } from './driver.js';
import type { Replica, ReplicaLauncher, ReplicaStart } from './replica.js';
import { ReplicaDriver, type ReplicaDriverOptions } from './replica-driver.js';
import { removeSecretFiles, secretFiles, writeSecretFiles } from './secret-mounts.js';
import { readSpecSecrets, secretEnvValues, secretsDirEnv, type SecretStore } from './secrets.js';
import type { FunctionSpec } from './spec.js';
import { WarmPool } from './warm-pool.js';

export interface ProcessDriverOptions extends ReplicaDriverOptions {
  bundles: BundleStore;
  /** Apps (`app:sha256:` images); without it only bundle images run. */
  apps?: AppStore;
  /** The node binary replicas run on (default: this process's). */
  nodePath?: string;
  /**
   * Where each function's decrypted secret files go, one 0700 directory per function (default
   * `<stateDir>/secret-files`); needed with `secrets`.
   */
  secretFilesDir?: string;
  /**
   * Run each function as a user of its own, in a private directory (needs root; see
   * process-isolation.ts). Without it every replica runs as this process's user.
   */
  isolation?: ProcessIsolation;
  /**
   * Warm runtimes (`entry`, runtime-node's warm.js) kept ready for functions scaling from zero
   * (see warm-pool.ts): `size` idle
   * runtimes within `memoryBytes` of resident memory (default 256 MiB). Default: no pool (`fn up`
   * keeps defaultWarmPoolSize).
   */
  pool?: { size?: number | undefined; memoryBytes?: number | undefined; entry: string };
  /** Where the pool reports a runtime that failed to start. */
  onPoolLog?: (message: string) => void;
}

/** Node's flags on every replica; a replica's memory limit adds the heap flag before them. */
const replicaNodeArgs = ['--enable-source-maps'];
/** A warm runtime maps its bundle's stack traces itself, when first needed (runtime-node's lazy-source-maps.ts). */
const warmNodeArgs: string[] = [];


/** What a process replica starts from: its app (or bundle), as whom, and the environment its secrets add. */
interface ProcessStart extends ProcessArtifact {
  secretEnv: Record<string, string>;
  dirs: ReplicaDirs;
  user?: { uid: number; gid: number };
}

/** Starts a replica as `node --enable-source-maps <app>/fn.cjs` in its app root, with the runtime contract's environment. */
class ProcessLauncher implements ReplicaLauncher<ProcessStart> {
  readonly kind = 'process';
  readonly limits = new ProcessLimiter();

  constructor(
    readonly stores: { bundles: BundleStore; apps?: AppStore | undefined },
    readonly nodePath: string,
    readonly secrets: { store: SecretStore; filesDir: string } | undefined,
    readonly isolation: ProcessIsolation | undefined,
    readonly pool: WarmPool | undefined,
    readonly maxBodyBytes: number | undefined,
  ) {}

  /** Whether a function's replicas can come from the warm pool; a runtime that is already running cannot take some settings. */
  coldStartPath(spec: FunctionSpec): ColdStartPath {
    if (!this.pool) return { path: 'process-start', reason: 'the warm pool is off (fn up --pool 0)' };
    if (processMemoryLimit(spec)) return { path: 'process-start', reason: "resources.memory sets node's heap limit, which only a new process takes" };
    const startupEnv = Object.keys(spec.env ?? {}).find((k) => /^(NODE_|UV_)/.test(k));
    if (startupEnv) return { path: 'process-start', reason: `env ${startupEnv} is read only when node starts` };
    return { path: 'warm-pool' };
  }

  async prepare(spec: FunctionSpec): Promise<ProcessStart> {
    const artifact = await resolveProcessArtifact(this.stores, spec);
    const place: IsolatedPlace | undefined = await this.isolation?.place(spec.name, artifact);
    const start: ProcessStart = place
      ? { file: place.file, cwd: place.cwd, secretEnv: {}, dirs: { home: place.home, tmp: place.tmp }, user: { uid: place.uid, gid: place.gid } }
      : { ...artifact, secretEnv: {}, dirs: { home: tmpdir() } };
    if (!spec.secrets?.length) {
      if (this.secrets) removeSecretFiles(this.#filesDir(spec.name, place));
      return start;
    }
    if (!this.secrets) {
      throw new KubefnError('NOT_SUPPORTED', `this process driver has no secret store (function "${spec.name}" lists secrets)`, {
        hint: 'run it under `fn up`, which keeps secrets in its home directory',
      });
    }
    const values = await readSpecSecrets(this.secrets.store, spec);
    // A process cannot mount at /var/openfaas/secrets: the files go to a private directory of
    // the function, and the replica is told where through KUBEFN_SECRETS_DIR.
    const dir = this.#filesDir(spec.name, place);
    if (place) {
      writeSecretFiles(path.dirname(dir), dir, values, 0o600);
      await this.isolation!.ownSecrets(spec.name, dir);
    } else {
      writeSecretFiles(this.secrets.filesDir, dir, values, 0o600);
    }
    return { ...start, secretEnv: { ...secretEnvValues(spec, values), [secretsDirEnv]: dir } };
  }

  start(artifact: ProcessStart, start: ReplicaStart): Replica {
    const memoryLimit = processMemoryLimit(start.spec);
    const warm = this.coldStartPath(start.spec).path === 'warm-pool' ? this.pool?.take() : undefined;
    const replica = new ProcessReplica({
      ...start,
      nodePath: this.nodePath,
      cwd: artifact.cwd,
      args: [...memoryNodeArgs(memoryLimit), ...replicaNodeArgs, artifact.file],
      warm,
      env: { ...replicaEnv(start.spec, start.id, this.nodePath, artifact.dirs, this.maxBodyBytes), ...artifact.secretEnv },
      uid: artifact.user?.uid,
      gid: artifact.user?.gid,
      memoryLimit,
    });
    this.limits.hold(replica, start.spec, memoryLimit);
    return replica;
  }

  warnings(spec: FunctionSpec): string[] {
    return this.limits.warnings(spec);
  }

  async check(spec: FunctionSpec): Promise<void> {
    await resolveProcessArtifact(this.stores, spec);
  }

  async forget(name: string): Promise<void> {
    if (this.secrets) removeSecretFiles(path.join(this.secrets.filesDir, name));
    await this.isolation?.forget(name);
  }

  async close(): Promise<void> {
    await this.pool?.close();
    this.limits.close();
    await this.isolation?.close();
  }

  /** Under isolation, the function's private directory; else one 0700 directory per function under filesDir. */
  #filesDir(name: string, place: IsolatedPlace | undefined): string {
    return place ? place.secretsDir : path.join(this.secrets!.filesDir, name);
  }
}

export class ProcessDriver extends ReplicaDriver<ProcessStart> {
  constructor(options: ProcessDriverOptions) {
    const nodePath = options.nodePath ?? process.execPath;
    const size = options.pool?.size ?? 0;
    const pool = options.pool && size > 0 ? new WarmPool({ size, memoryBytes: options.pool.memoryBytes, entry: options.pool.entry, nodePath, nodeArgs: warmNodeArgs, log: options.onPoolLog }) : undefined;
    const launcher = new ProcessLauncher({ bundles: options.bundles, apps: options.apps }, nodePath, secretFiles(options), options.isolation, pool, options.maxBodyBytes);
    super(launcher, options);
    this.#launcher = launcher;
  }

  readonly #launcher: ProcessLauncher;

  /** The warm pool's counts, or undefined when it is off. */
  poolStats(): WarmPoolStats | undefined {
    return this.#launcher.pool?.stats();
  }

  /** A driver with the functions saved in `stateDir` already coming back up. */
  static async open(options: ProcessDriverOptions): Promise<ProcessDriver> {
    const driver = new ProcessDriver(options);
    await driver.restore();
    return driver;
  }
}
