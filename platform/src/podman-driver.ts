// The `podman` driver: every replica is a container of the function's OCI image, run by podman
// on this machine with its own published ports, its output as the function's log and the spec's
// resources as container limits.

import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ColdStartPath, WarmPoolStats } from './driver.js';
import { KubefnError } from './errors.js';
import { parseBundleImageRef } from './bundle-store.js';
import { Podman, podmanError, type PodmanOptions } from './podman.js';
import { PodmanPool, placeApp } from './podman-pool.js';
import { PodmanReplica } from './podman-replica.js';
import { contractEnv } from './process-launch.js';
import { removeSecretFiles, secretFiles, writeSecretFiles } from './secret-mounts.js';
import { readSpecSecrets, secretEnvValues, secretsMountPath, type SecretStore } from './secrets.js';
import { parseQuantity } from './quantity.js';
import type { Replica, ReplicaLauncher, ReplicaStart } from './replica.js';
import { ReplicaDriver, type ReplicaDriverOptions } from './replica-driver.js';
import type { FunctionSpec } from './spec.js';

export interface PodmanDriverOptions extends ReplicaDriverOptions, PodmanOptions {
  /** Where replicas' decrypted secret files go, one directory per replica (default `<stateDir>/secret-files`); needed with `secrets`. */
  secretFilesDir?: string;
  /**
   * Names this driver's containers (label kubefn.dev/owner) so a restarted driver can remove the
   * ones a crashed predecessor left behind. Default "default".
   */
  owner?: string;
  /** 'bridge' (default): each replica's ports published on 127.0.0.1; 'host': host networking, faster to start, no isolation. */
  network?: 'bridge' | 'host';
  /** Registries pulled over plain HTTP (loopback ones always are). */
  insecureRegistries?: string[];
  /** Longest a pull may take, in ms (default 600000). */
  pullTimeoutMs?: number;
  /**
   * Warm containers kept ready for functions scaling from zero (podman-pool.ts): `size` idle
   * containers of `image` (the builder's buildWarmPoolImage, in podman's storage) within
   * `memoryBytes` of resident memory (default 256 MiB). Default: no pool. They start once
   * checkPodman() has removed the leftovers of a driver before this one.
   */
  pool?: { size?: number | undefined; memoryBytes?: number | undefined; image: string };
  /** Where the pool reports a container that failed to start. */
  onPoolLog?: (message: string) => void;
}

export const podmanLabels = {
  owner: 'kubefn.dev/owner',
  function: 'kubefn.dev/function',
  replica: 'kubefn.dev/replica',
  pool: 'kubefn.dev/pool',
} as const;

/** What a podman replica starts from: the pulled image and its secrets' values. */
interface PodmanArtifact {
  image: string;
  secrets: Map<string, Buffer>;
}

/** Whether a warm container can become a replica of an image: its /app unpacked, or why not. */
type PoolFit = { fits: true; app: string; bundle: string } | { fits: false; reason: string };

/** An image as `podman image inspect` describes it, the parts the pool compares. */
interface ImageFacts {
  id: string;
  layers: string[];
  entrypoint: string[];
  user: string;
}

class PodmanLauncher implements ReplicaLauncher<PodmanArtifact> {
  readonly kind = 'podman';
  readonly podman: Podman;
  readonly owner: string;
  readonly #options: PodmanDriverOptions;
  /** Per driver, so two drivers (or a restarted one) never pick the same container name. */
  readonly #tag = randomBytes(3).toString('hex');
  readonly #pulls = new Map<string, Promise<void>>();
  readonly #secrets: { store: SecretStore; filesDir: string } | undefined;
  #pool: PodmanPool | undefined;
  /** The pool image's facts, read when the pool starts. */
  #poolImage: Promise<ImageFacts | undefined> | undefined;
  /** Per image: whether the pool can take its functions, decided at its first prepare(). */
  readonly #fits = new Map<string, { decided: Promise<PoolFit>; fit?: PoolFit }>();
  /** The image each function was last prepared with: the images (and unpacked /app) worth keeping. */
  readonly #imageOf = new Map<string, string>();
  /** The cgroup controllers podman gives containers here (podman info), read at the first deploy with limits. */
  #controllers: Promise<string[] | undefined> | undefined;
  #knownControllers: string[] | undefined;

  constructor(options: PodmanDriverOptions) {
    this.#options = options;
    this.#secrets = secretFiles(options);
    this.podman = new Podman(options);
    this.owner = options.owner ?? 'default';
  }

  async prepare(spec: FunctionSpec): Promise<PodmanArtifact> {
    const image = spec.image;
    if (!image) {
      throw new KubefnError('BAD_REQUEST', `function "${spec.name}" has no image to run`, {
        hint: '`fn deploy` builds the image, pushes it and sets it',
      });
    }
    if (parseBundleImageRef(image)) {
      throw new KubefnError('NOT_SUPPORTED', `the podman driver runs OCI images, not bundles ("${image}")`, {
        hint: 'deploy with `fn deploy --registry <host:port>` so the function is built into an image',
      });
    }
    if (spec.resources?.gpu) {
      throw new KubefnError('NOT_SUPPORTED', `the podman driver does not assign GPUs (function "${spec.name}" asks for ${spec.resources.gpu})`, {
        hint: 'run GPU functions on the kubernetes driver, on a node pool with nvidia.com/gpu',
      });
    }
    let secrets = new Map<string, Buffer>();
    if (spec.secrets?.length) {
      if (!this.#secrets) {
        throw new KubefnError('NOT_SUPPORTED', `this podman driver has no secret store (function "${spec.name}" lists secrets)`, {
          hint: 'run it under `fn up`, which keeps secrets in its home directory',
        });
      }
      secrets = await readSpecSecrets(this.#secrets.store, spec);
    }
    await this.#ensureImage(image);
    if (spec.resources?.memory || spec.resources?.cpu) this.#knownControllers = await this.#cgroupControllers();
    if (this.#pool) {
      await this.#poolFit(image);
      this.#imageOf.set(spec.name, image);
      this.#collect();
    }
    return { image, secrets };
  }

  async forget(name: string): Promise<void> {
    this.#imageOf.delete(name);
    this.#collect();
  }

  /**
   * Drops what the pool kept of images no function runs any more: their decision and their
   * unpacked /app (containers specialized from it hold their own links to its files).
   */
  #collect(): void {
    const used = new Set(this.#imageOf.values());
    for (const [image, { fit }] of this.#fits) {
      if (used.has(image) || !fit) continue;
      this.#fits.delete(image);
      if (fit.fits) rmSync(fit.app, { recursive: true, force: true });
    }
  }

  /** The warm pool's dirs: the containers' /app and secrets, and the functions' unpacked /app per image. */
  get #poolDirs(): { containers: string; apps: string } {
    const root = this.#options.stateDir ?? path.join(tmpdir(), `kubefn-podman-${this.owner}`);
    return { containers: path.join(root, 'pool'), apps: path.join(root, 'pool-apps') };
  }

  /** Starts the warm pool, when one is asked for: after the leftovers are gone. */
  startPool(): void {
    const p = this.#options.pool;
    if (!p || !(p.size && p.size > 0) || this.#pool) return;
    const dirs = this.#poolDirs;
    // What a driver before this one left: the containers are gone, so are their directories.
    rmSync(dirs.containers, { recursive: true, force: true });
    rmSync(dirs.apps, { recursive: true, force: true });
    this.#poolImage = imageFacts(this.podman, p.image);
    this.#pool = new PodmanPool({
      size: p.size,
      memoryBytes: p.memoryBytes,
      podman: this.podman,
      image: p.image,
      labels: [`${podmanLabels.owner}=${this.owner}`, `${podmanLabels.pool}=true`],
      tag: this.#tag,
      dir: dirs.containers,
      network: this.#options.network ?? 'bridge',
      log: this.#options.onPoolLog,
    });
  }

  poolStats(): WarmPoolStats | undefined {
    return this.#pool?.stats();
  }

  /** Whether a function's replicas can come from the warm pool; a running container cannot take some settings. */
  coldStartPath(spec: FunctionSpec): ColdStartPath {
    if (!this.#pool) return { path: 'container-start', reason: 'the warm pool is off (fn up --pool 0)' };
    if (spec.resources?.memory || spec.resources?.cpu) return { path: 'container-start', reason: 'resources are container limits, set when a container starts' };
    const startupEnv = Object.keys(spec.env ?? {}).find((k) => /^(NODE_|UV_)/.test(k));
    if (startupEnv) return { path: 'container-start', reason: `env ${startupEnv} is read only when node starts` };
    const fit = spec.image ? this.#fits.get(spec.image)?.fit : undefined;
    if (!fit) return { path: 'container-start', reason: 'its image has not been looked at yet' };
    return fit.fits ? { path: 'warm-pool' } : { path: 'container-start', reason: fit.reason };
  }

  /** Decides once per image whether the pool can take it, unpacking its /app when it can. */
  #poolFit(image: string): Promise<PoolFit> {
    let entry = this.#fits.get(image);
    if (!entry) {
      const decided = this.#decideFit(image);
      const made: { decided: Promise<PoolFit>; fit?: PoolFit } = { decided };
      decided.then((fit) => (made.fit = fit), () => this.#fits.delete(image));
      this.#fits.set(image, (entry = made));
    }
    return entry.decided;
  }

  async #decideFit(image: string): Promise<PoolFit> {
    const [pool, fn] = await Promise.all([this.#poolImage, imageFacts(this.podman, image)]);
    if (!pool) return { fits: false, reason: 'podman could not describe the warm pool image' };
    if (!fn) return { fits: false, reason: 'podman could not describe its image' };
    const sameBase = fn.layers.length === pool.layers.length && fn.layers.slice(0, -1).every((l, i) => l === pool.layers[i]);
    if (!sameBase) return { fits: false, reason: "its image is not the warm pool's base plus the function's own layer" };
    const bundle = /^\/app\/(fn\.(?:cjs|mjs))$/.exec(fn.entrypoint[fn.entrypoint.length - 1] ?? '')?.[1];
    if (fn.entrypoint[0] !== 'node' || !bundle) return { fits: false, reason: 'its image does not start a bundle in /app with node' };
    if (fn.user !== pool.user) return { fits: false, reason: `its image runs as "${fn.user}", the warm pool as "${pool.user}"` };
    const app = path.join(this.#poolDirs.apps, fn.id);
    try {
      if (!existsSync(app)) await this.#unpackApp(image, app);
    } catch (err) {
      // Rootless podman, say, cannot mount an image: the function starts as new containers.
      return { fits: false, reason: `its /app could not be read out of podman's storage: ${(err as Error).message}` };
    }
    return { fits: true, app, bundle };
  }

  /** Copies the image's /app out of podman's storage (podman image mount), once per image. */
  async #unpackApp(image: string, app: string): Promise<void> {
    const mounted = (await this.podman.check(['image', 'mount', image], { timeoutMs: 60_000 })).trim();
    const temp = `${app}.tmp-${randomBytes(4).toString('hex')}`;
    try {
      cpSync(path.join(mounted, 'app'), temp, { recursive: true, verbatimSymlinks: true });
      renameSync(temp, app);
    } finally {
      rmSync(temp, { recursive: true, force: true });
      await this.podman.run(['image', 'unmount', image], { timeoutMs: 60_000 });
    }
  }

  async close(): Promise<void> {
    await this.#pool?.close();
  }

  /** The limits podman cannot hold on this machine: its containers get no cgroup controller for them. */
  warnings(spec: FunctionSpec): string[] {
    const out: string[] = [];
    const controllers = this.#knownControllers;
    const limits: [string | undefined, string, string][] = [
      [spec.resources?.memory, 'memory', 'memory'],
      [spec.resources?.cpu, 'cpu', 'cpu'],
    ];
    for (const [value, field, controller] of limits) {
      if (!value || controllers?.includes(controller)) continue;
      out.push(
        controllers
          ? `resources.${field} ${value} is not enforced by podman on this machine: its containers get no ${controller} cgroup controller (podman info lists ${controllers.join(', ') || 'none'})`
          : `resources.${field} ${value} may not be enforced: podman info did not say which cgroup controllers its containers get`,
      );
    }
    return out;
  }

  #cgroupControllers(): Promise<string[] | undefined> {
    this.#controllers ??= this.podman.run(['info', '--format', '{{json .Host.CgroupControllers}}'], { timeoutMs: 30_000 }).then((r) => {
      if (r.code !== 0) return undefined;
      try {
        const list: unknown = JSON.parse(r.stdout);
        return Array.isArray(list) ? list.filter((c): c is string => typeof c === 'string') : undefined;
      } catch {
        return undefined;
      }
    });
    return this.#controllers;
  }

  start(artifact: PodmanArtifact, start: ReplicaStart): Replica {
    const { spec } = start;
    const { image } = artifact;
    // Looked up now, not carried from prepare(): a rollout may have dropped the image's /app since.
    const fit = this.#fits.get(image)?.fit;
    const warm = fit?.fits && this.coldStartPath(spec).path === 'warm-pool' ? this.#pool?.take() : undefined;
    if (warm && fit?.fits) {
      // Its /app and secrets in the directories the container has mounted, then the runtime told.
      placeApp(fit.app, warm.appDir);
      if (this.#secrets && spec.secrets?.length) writeSecretFiles(path.dirname(warm.secretsDir), warm.secretsDir, artifact.secrets, 0o444);
      const replica = new PodmanReplica({
        ...start,
        podman: this.podman,
        image,
        containerName: warm.name,
        runFlags: [],
        env: { ...contractEnv(spec, start.id, this.#options.maxBodyBytes), ...secretEnvValues(spec, artifact.secrets) },
        network: this.#options.network ?? 'bridge',
        warm,
        warmBundle: fit.bundle,
      });
      void replica.exited.then(() => rmSync(path.dirname(warm.appDir), { recursive: true, force: true }));
      return replica;
    }
    const runFlags = [
      '--label', `${podmanLabels.owner}=${this.owner}`,
      '--label', `${podmanLabels.function}=${spec.name}`,
      '--label', `${podmanLabels.replica}=${start.id}`,
    ];
    if (spec.resources?.memory) runFlags.push('--memory', String(Math.floor(parseQuantity(spec.resources.memory))));
    if (spec.resources?.cpu) runFlags.push('--cpus', String(parseQuantity(spec.resources.cpu)));
    if (this.#secrets && spec.secrets?.length) {
      // Each replica gets its own copy, mounted read-only where OpenFaaS functions look, and
      // removed when the container is gone. The image's user (often not this user's uid in the
      // container) must read the files: 0444 under this user's 0700 secret-files directory.
      const dir = path.join(this.#secrets.filesDir, `${start.id}-${this.#tag}`);
      writeSecretFiles(this.#secrets.filesDir, dir, artifact.secrets, 0o444);
      runFlags.push('--volume', `${dir}:${secretsMountPath}:ro`);
      const replica = this.#replica(image, start, runFlags, secretEnvValues(spec, artifact.secrets));
      void replica.exited.then(() => removeSecretFiles(dir));
      return replica;
    }
    return this.#replica(image, start, runFlags, {});
  }

  #replica(image: string, start: ReplicaStart, runFlags: string[], secretEnv: Record<string, string>): Replica {
    const { spec } = start;
    return new PodmanReplica({
      ...start,
      podman: this.podman,
      image,
      containerName: `kubefn-${start.id}-${this.#tag}`,
      runFlags,
      env: { ...contractEnv(spec, start.id, this.#options.maxBodyBytes), ...secretEnv },
      network: this.#options.network ?? 'bridge',
    });
  }

  /** Removes containers of this owner that a driver before this one left running. */
  async removeLeftovers(): Promise<number> {
    const ids = (await this.podman.check(['ps', '--all', '--quiet', '--filter', `label=${podmanLabels.owner}=${this.owner}`]))
      .split('\n')
      .filter(Boolean);
    if (ids.length) await this.podman.run(['rm', '--force', '--time', '0', '--ignore', ...ids]);
    // Their secret files too: every directory there belonged to a replica of a driver before this one.
    if (this.#secrets) removeSecretFiles(this.#secrets.filesDir);
    return ids.length;
  }

  /** Pulls the image unless podman has it; concurrent deploys of one image share the pull. */
  #ensureImage(image: string): Promise<void> {
    let pull = this.#pulls.get(image);
    if (!pull) {
      pull = this.#pull(image).finally(() => this.#pulls.delete(image));
      this.#pulls.set(image, pull);
    }
    return pull;
  }

  async #pull(image: string): Promise<void> {
    if ((await this.podman.run(['image', 'exists', image])).code === 0) return;
    const registry = image.split('/')[0]!;
    const plainHttp = isLoopbackRegistry(registry) || (this.#options.insecureRegistries ?? []).includes(registry);
    const r = await this.podman.run(['pull', '--quiet', ...(plainHttp ? ['--tls-verify=false'] : []), image], {
      timeoutMs: this.#options.pullTimeoutMs ?? 600_000,
    });
    if (r.code !== 0) {
      throw new KubefnError('BAD_REQUEST', `podman cannot pull image "${image}": ${podmanError(r) || `exit code ${r.code}`}`, {
        hint: 'check that the image was pushed and the registry is reachable from this machine (`podman login` for private ones)',
      });
    }
  }
}

/** What the pool compares of an image, or undefined when podman cannot say. */
async function imageFacts(podman: Podman, image: string): Promise<ImageFacts | undefined> {
  // podman 4.3 refuses a format that starts with {{json ...}}: the id and user go plain.
  const r = await podman.run(['image', 'inspect', '--format', '{{.Id}}\t{{json .RootFS.Layers}}\t{{json .Config.Entrypoint}}\t{{.Config.User}}', image], { timeoutMs: 30_000 });
  if (r.code !== 0) return undefined;
  try {
    const [id, layers, entrypoint, user] = r.stdout.replace(/\n$/, '').split('\t');
    return { id: id!, layers: (JSON.parse(layers!) as string[] | null) ?? [], entrypoint: (JSON.parse(entrypoint!) as string[] | null) ?? [], user: user ?? '' };
  } catch {
    return undefined;
  }
}

/** Whether a registry host (with or without port) is this machine: those are reached over plain HTTP. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.toLowerCase().replace(/:[0-9]+$/, '');
  return host === 'localhost' || host === '[::1]' || /^127(?:\.[0-9]{1,3}){3}$/.test(host);
}

export class PodmanDriver extends ReplicaDriver<PodmanArtifact> {
  readonly #launcher: PodmanLauncher;

  constructor(options: PodmanDriverOptions = {}) {
    const launcher = new PodmanLauncher(options);
    super(launcher, options);
    this.#launcher = launcher;
  }

  /**
   * A driver that has checked podman answers, removed its owner's leftover containers and
   * brought back the functions saved in `stateDir`.
   */
  static async open(options: PodmanDriverOptions = {}): Promise<PodmanDriver> {
    const driver = new PodmanDriver(options);
    await driver.checkPodman();
    await driver.restore();
    return driver;
  }

  /** Fails with a hint when podman does not answer; removes the owner's leftover containers. */
  async checkPodman(): Promise<void> {
    const version = await this.#launcher.podman.run(['version', '--format', '{{.Client.Version}}'], { timeoutMs: 30_000 });
    if (version.code !== 0) {
      throw new KubefnError('NOT_SUPPORTED', `podman does not answer: ${podmanError(version) || `exit code ${version.code}`}`, {
        hint: 'install podman (apt-get install podman runc) or pick another driver: fn up --driver process',
      });
    }
    await this.#launcher.removeLeftovers();
    this.#launcher.startPool();
  }

  /** The warm pool's counts, or undefined when it is off. */
  poolStats(): WarmPoolStats | undefined {
    return this.#launcher.poolStats();
  }
}
