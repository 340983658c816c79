// The cluster's warm pool, as a gateway uses it: `kubefn-pool` is a Deployment of generic pods in
// the functions' namespace (deploy/pool.yaml), each a warm runtime holding no function, no
// secret and no service-account token. When a request finds a function at zero, the gateway
// claims one: it relabels the pod, which leaves the pool's ReplicaSet (the ReplicaSet starts a
// replacement), signs a claim for that pod alone, and sends it the claim and the function's app
// layer from the registry (../warm-claim.ts). The pod unpacks the layer, checks its digest and
// loads the bundle; the gateway routes to it as soon as its /readyz answers. Meanwhile the
// autoscaler scales the function's Deployment from zero as always; once a pod of its own is
// ready, the claimed pod is taken out of routing and deleted, so the steady state is plain
// Deployments. Every gateway watches the pool's pods: a pod another gateway claimed is routed
// to once it is marked serving.

import type { KeyObject } from 'node:crypto';
import http from 'node:http';
import type { Readable } from 'node:stream';
import type { V1Pod } from '@kubernetes/client-node';
import type { ColdStartPath, Endpoint } from '../driver.js';
import { contractEnv } from '../process-launch.js';
import { parseQuantity } from '../quantity.js';
import { adminPaths, runtimeEnv, warmPaths } from '../runtime-contract.js';
import type { FunctionSpec } from '../spec.js';
import { signClaim, warmSignatureHeader, type WarmClaim } from '../warm-claim.js';
import { isApiError } from './errors.js';
import { KeptInformer, watchedInformer } from './informers.js';
import { containerPorts, kubefnLabels } from './manifests.js';
import type { KubefnObjects } from './objects.js';
import type { KubernetesSecretStore } from './secrets.js';

/** The labels and annotations of pool pods. deploy/pool.yaml's selector is name + pool-member. */
export const warmPodLabels = {
  name: 'kubefn-pool',
  /** "warm" while it waits in the pool, "claimed" once a gateway took it. */
  pool: 'kubefn.dev/pool',
  /**
   * The pool's ReplicaSet selects on this, not on `pool`: a claimed pod stays its own (and is not
   * replaced yet) until it serves, so the replacement's start does not compete with the claim.
   */
  member: 'kubefn.dev/pool-member',
  /** On a claimed pod: the function it was given. */
  warmFor: 'kubefn.dev/warm-for',
} as const;
export const warmPodAnnotations = {
  claimedBy: 'kubefn.dev/claimed-by',
  claimedAt: 'kubefn.dev/claimed-at',
  /** Set by the claiming gateway once the function answers in it: every gateway may route there. */
  serving: 'kubefn.dev/serving',
} as const;

/** What the registry says of an image: what the pool compares. */
export interface ImageFacts {
  layers: { digest: string; size: number; mediaType: string }[];
  /** Entrypoint then cmd. */
  command: string[];
  user: string;
}

export interface WarmPodsOptions {
  objects: KubefnObjects;
  secrets: KubernetesSecretStore;
  /** Signs claims; its public key is every pool pod's KUBEFN_WARM_PUBLIC_KEY. */
  privateKey: KeyObject;
  /** This gateway's pod name, written on the pods it claims. */
  self: string;
  /** The image's layers, command and user, from its registry. */
  imageFacts: (image: string) => Promise<ImageFacts>;
  /** A layer's blob, from the image's registry. */
  layerBlob: (image: string, digest: string) => Promise<Readable>;
  /** Longest a claim takes from the relabel to the function answering, ms (default 30000). */
  claimTimeoutMs?: number;
  /** A claimed pod not serving after this, or left behind, is deleted, ms (default 60000). */
  staleMs?: number;
  /** How often the left-behind claimed pods are looked for, ms (default 10000). */
  sweepMs?: number;
  /** Told of each function started in a pool pod, with where the time went. */
  onStarted?: (started: WarmStart) => void;
}

/** One function started in a pool pod: ms from the activation to each step. */
export interface WarmStart {
  function: string;
  pod: string;
  /** The function's image checked against the pool's (read from the registry the first time). */
  fitMs: number;
  /** The pod relabelled (the claim's API call answered). */
  claimedMs: number;
  /** The claim signed and its POST begun (the layer in hand). */
  sentMs: number;
  /** The pod answered the claim: the layer sent, unpacked and checked. */
  unpackedMs: number;
  /** The pod's own account of unpacking the layer, in ms, when its answer gave one. */
  podUnpackMs?: number;
  /** The function's /readyz answered in the pod. */
  readyMs: number;
}

type Fit = { fits: true; layer: ImageFacts['layers'][number]; bundle: string; poolImage: string } | { fits: false; reason: string };

/** A fit decision, made once per (pool image, function image); `retryAt` when it failed to read. */
interface FitEntry {
  decided: Promise<Fit>;
  fit?: Fit;
  retryAt?: number;
}

/** The layers a gateway keeps in memory: each at most largestBytes, all at most totalBytes. */
const layerCache = { largestBytes: 8 * 1024 * 1024, totalBytes: 32 * 1024 * 1024 } as const;

/** How long a failed read of an image stands before it is tried again, ms. */
const fitRetryMs = 10_000;

/** What the pool's pods are started from: their image and the limits every pod gets. */
interface PoolShape {
  image: string;
  memoryBytes: number | undefined;
  cpu: number | undefined;
}

export class WarmPods {
  readonly pods: KeptInformer<V1Pod>;
  readonly #o: WarmPodsOptions;
  readonly #claimTimeoutMs: number;
  readonly #staleMs: number;
  /** Fit decisions per (pool image, function image). */
  readonly #fits = new Map<string, FitEntry>();
  /** Per function: the claim this gateway has in flight. */
  readonly #claiming = new Map<string, Promise<void>>();
  /** Pods this gateway claimed that serve, by function: routed before the informer says so. */
  readonly #serving = new Map<string, Map<string, Endpoint>>();
  /** Pods taken out of routing (the function has its own pods now), not to be routed again. */
  readonly #retired = new Set<string>();
  readonly #listeners = new Set<(name: string) => void>();
  /** Small layers' bytes by digest, least recently used first (the registry checked each digest). */
  readonly #layers = new Map<string, Buffer>();
  readonly #sweep: NodeJS.Timeout;
  #closed = false;
  /** Claims made and failed since start (for tests and /stats). */
  claims = { made: 0, failed: 0 };

  constructor(options: WarmPodsOptions) {
    this.#o = options;
    this.#claimTimeoutMs = options.claimTimeoutMs ?? 30_000;
    this.#staleMs = options.staleMs ?? 60_000;
    const { objects } = options;
    const ns = objects.namespace;
    const selector = `${kubefnLabels.name}=${warmPodLabels.name}`;
    this.pods = new KeptInformer(
      watchedInformer<V1Pod>(objects.k8s, objects.kc, `/api/v1/namespaces/${ns}/pods`, () => objects.core.listNamespacedPod({ namespace: ns, labelSelector: selector }), {
        labelSelector: selector,
      }),
      { what: `pool pods in ${ns}`, namespace: ns, onWarning: objects.onWarning },
    );
    const changed = (pod: V1Pod): void => {
      const name = pod.metadata?.labels?.[warmPodLabels.warmFor];
      if (name && !this.#closed) this.#changed(name);
    };
    this.pods.on('add', changed);
    this.pods.on('update', changed);
    this.pods.on('delete', (pod) => {
      this.#retired.delete(pod.metadata?.name ?? '');
      for (const serving of this.#serving.values()) serving.delete(pod.metadata?.name ?? '');
      changed(pod);
    });
    this.#sweep = setInterval(() => void this.#sweepClaimed(), options.sweepMs ?? 10_000);
    this.#sweep.unref();
  }

  static async open(options: WarmPodsOptions): Promise<WarmPods> {
    const pool = new WarmPods(options);
    await pool.pods.start();
    return pool;
  }

  /** Calls `listener(name)` whenever servingFor(name) may have changed. */
  subscribe(listener: (name: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Warm pods ready to be claimed now. */
  idle(): V1Pod[] {
    return this.pods.cache.list(this.#o.objects.namespace).filter((p) => p.metadata?.labels?.[warmPodLabels.pool] === 'warm' && isReady(p) && !p.metadata?.deletionTimestamp && p.status?.podIP);
  }

  /** Claimed pods serving `name` that no pod of its own has replaced yet: routed to. */
  servingFor(name: string): Endpoint[] {
    const out = new Map(this.#serving.get(name));
    for (const pod of this.pods.cache.list(this.#o.objects.namespace)) {
      const podName = pod.metadata?.name ?? '';
      if (pod.metadata?.labels?.[warmPodLabels.warmFor] !== name || pod.metadata?.annotations?.[warmPodAnnotations.serving] !== 'true') continue;
      if (pod.metadata?.deletionTimestamp || !pod.status?.podIP || out.has(podName)) continue;
      out.set(podName, endpointOf(podName, pod.status.podIP));
    }
    for (const id of this.#retired) out.delete(id);
    return [...out.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /**
   * The function has ready pods of its own: its claimed pods leave routing now, and this gateway
   * deletes those it claimed (each drains what it holds: the pool pod's grace period).
   */
  handOver(name: string): void {
    for (const e of this.servingFor(name)) {
      this.#retired.add(e.id);
      this.#serving.get(name)?.delete(e.id);
      const pod = this.pods.cache.get(e.id, this.#o.objects.namespace);
      if (!pod || pod.metadata?.annotations?.[warmPodAnnotations.claimedBy] === this.#o.self) void this.#delete(e.id, `function "${name}" has pods of its own`);
    }
  }

  /** How `spec` starts from zero here: from the pool when its decision is made and says so. */
  coldStartPath(spec: FunctionSpec): ColdStartPath {
    const shape = this.#shape();
    if (!shape) return { path: 'pod-start', reason: 'the warm pool (kubefn-pool) has no pods' };
    const unfit = specUnfit(spec, shape);
    if (unfit) return { path: 'pod-start', reason: unfit };
    const entry = spec.image ? this.#fitEntry(shape.image, spec.image) : undefined;
    if (!entry?.fit) return { path: 'pod-start', reason: 'its image has not been looked at yet' };
    return entry.fit.fits ? { path: 'warm-pool' } : { path: 'pod-start', reason: entry.fit.reason };
  }

  /**
   * A request found `name` at zero: claim a pool pod for it, unless this gateway already has a
   * claim in flight or a claimed pod serves it. Never throws; a failed claim leaves the function
   * to its Deployment. Settles once the claim does: a pool pod serves `name`, or none will.
   */
  activate(name: string): Promise<void> {
    if (this.#closed || this.#claimedFor(name)) return Promise.resolve();
    const inFlight = this.#claiming.get(name);
    if (inFlight) return inFlight;
    const claim = this.#activate(name)
      .catch((err: unknown) => {
        this.claims.failed++;
        this.#o.objects.onWarning(`warm pool: could not start function "${name}" in a pool pod; its Deployment starts it`, err);
      })
      .finally(() => this.#claiming.delete(name));
    this.#claiming.set(name, claim);
    return claim;
  }

  /** Whether a pod is claimed for `name` (by any gateway) and not on its way out: one is enough. */
  #claimedFor(name: string): boolean {
    if (this.#serving.get(name)?.size) return true;
    return this.pods.cache
      .list(this.#o.objects.namespace)
      .some((p) => p.metadata?.labels?.[warmPodLabels.warmFor] === name && !p.metadata?.deletionTimestamp && !this.#retired.has(p.metadata?.name ?? ''));
  }

  close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweep);
    this.#listeners.clear();
    return this.pods.stop();
  }

  async #activate(name: string): Promise<void> {
    const started = performance.now();
    const fn = this.#o.objects.cachedFunction(name);
    const spec = fn && this.#o.objects.specOf(fn);
    if (!spec || spec instanceof Error || !spec.image) return;
    const shape = this.#shape();
    if (!shape || specUnfit(spec, shape)) return;
    const fit = await this.#fit(shape.image, spec.image);
    if (!fit.fits) return;
    const fitMs = performance.now() - started;
    // The layer comes while the pod is claimed.
    const blob = this.#layerBytes(spec.image, fit.layer);
    blob.catch(() => {});
    const pod = await this.#claimOne(name, fit.poolImage);
    if (!pod) return;
    this.claims.made++;
    const claimedMs = performance.now() - started;
    const podName = pod.metadata!.name!;
    const endpoint = endpointOf(podName, pod.status!.podIP!);
    const steps = { sentMs: 0, unpackedMs: 0, podUnpackMs: undefined as number | undefined };
    try {
      await this.#specialize(spec, podName, endpoint, fit, await blob, (step, podUnpackMs) => {
        steps[step] = performance.now() - started;
        if (podUnpackMs !== undefined) steps.podUnpackMs = podUnpackMs;
      });
    } catch (err) {
      void this.#delete(podName, 'its specialization failed');
      throw err;
    }
    let serving = this.#serving.get(name);
    if (!serving) this.#serving.set(name, (serving = new Map()));
    serving.set(podName, endpoint);
    this.#changed(name);
    this.#o.onStarted?.({ function: name, pod: podName, fitMs, claimedMs, ...steps, readyMs: performance.now() - started });
    // The other gateways route to it once they see this; and it leaves the pool's ReplicaSet,
    // which starts a replacement.
    const ops: object[] = [{ op: 'add', path: `/metadata/annotations/${escape(warmPodAnnotations.serving)}`, value: 'true' }];
    if (pod.metadata?.labels?.[warmPodLabels.member] !== undefined) ops.push({ op: 'remove', path: `/metadata/labels/${escape(warmPodLabels.member)}` });
    await this.#patch(podName, ops).catch((err: unknown) => this.#o.objects.onWarning(`warm pool: could not mark pod ${podName} serving for the other gateways`, err));
  }

  /** Relabels one idle pod of `image` for `name`; undefined when none could be had. */
  async #claimOne(name: string, image: string): Promise<V1Pod | undefined> {
    const candidates = this.idle().filter((p) => p.spec?.containers?.[0]?.image === image);
    // Gateways claiming at once should not all race for the same pod.
    for (let tries = 0; tries < 3 && candidates.length; tries++) {
      const pod = candidates.splice(Math.floor(Math.random() * candidates.length), 1)[0]!;
      const annotations = {
        [warmPodAnnotations.claimedBy]: this.#o.self,
        [warmPodAnnotations.claimedAt]: new Date().toISOString(),
      };
      const ops: object[] = [
        // Only a pod still in the pool: two gateways never take the same one.
        { op: 'test', path: `/metadata/labels/${escape(warmPodLabels.pool)}`, value: 'warm' },
        { op: 'replace', path: `/metadata/labels/${escape(warmPodLabels.pool)}`, value: 'claimed' },
        { op: 'add', path: `/metadata/labels/${escape(warmPodLabels.warmFor)}`, value: name },
        ...(pod.metadata?.annotations
          ? Object.entries(annotations).map(([k, value]) => ({ op: 'add', path: `/metadata/annotations/${escape(k)}`, value }))
          : [{ op: 'add', path: '/metadata/annotations', value: annotations }]),
      ];
      try {
        return await this.#patch(pod.metadata!.name!, ops);
      } catch (err) {
        // 422: the test failed, another gateway took it; 404, 409: gone or changing.
        if (isApiError(err, 422) || isApiError(err, 404) || isApiError(err, 409)) continue;
        throw err;
      }
    }
    return undefined;
  }

  async #specialize(spec: FunctionSpec, podName: string, endpoint: Endpoint, fit: Extract<Fit, { fits: true }>, layer: Buffer | Readable, step: (done: 'sentMs' | 'unpackedMs', podUnpackMs?: number) => void): Promise<void> {
    const deadline = Date.now() + this.#claimTimeoutMs;
    const names = [...new Set([...(spec.secrets ?? []), ...Object.values(spec.secretEnv ?? {})])];
    const secrets = names.length ? await this.#o.secrets.read(names) : new Map<string, Buffer>();
    const env: Record<string, string> = {
      ...contractEnv(spec, podName),
      POD_NAME: spec.env?.POD_NAME ?? podName,
      [runtimeEnv.port]: String(containerPorts.http),
      [runtimeEnv.adminPort]: String(containerPorts.admin),
      [runtimeEnv.host]: '0.0.0.0',
    };
    for (const [key, secret] of Object.entries(spec.secretEnv ?? {})) {
      const value = secrets.get(secret);
      if (value) env[key] = value.toString('utf8');
    }
    const files: Record<string, string> = {};
    for (const name of spec.secrets ?? []) {
      const value = secrets.get(name);
      if (value) files[name] = value.toString('base64');
    }
    const claim: WarmClaim = { pod: podName, function: spec.name, layer: { digest: fit.layer.digest, size: fit.layer.size }, bundle: fit.bundle, env, files, expires: deadline };
    const { head, signature } = signClaim(claim, this.#o.privateKey);
    step('sentMs');
    const answer = await postClaim(`${endpoint.adminUrl}${warmPaths.specialize}`, signature, head, layer, deadline - Date.now());
    if (answer.status !== 202) throw new Error(`pool pod ${podName} refused the claim: ${answer.status} ${answer.text}`);
    const podUnpackMs = /unpacked in ([\d.]+) ms/.exec(answer.text)?.[1];
    step('unpackedMs', podUnpackMs === undefined ? undefined : Number(podUnpackMs));
    // The bundle loads now; the function's runtime then takes the admin port.
    for (;;) {
      const res = await fetch(`${endpoint.adminUrl}${adminPaths.ready}`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined);
      await res?.body?.cancel();
      if (res?.ok) return;
      if (Date.now() > deadline) throw new Error(`function "${spec.name}" was not ready in pool pod ${podName} within ${this.#claimTimeoutMs} ms`);
      if (!this.pods.cache.get(podName, this.#o.objects.namespace) || this.#closed) throw new Error(`pool pod ${podName} went away while it specialized`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * A layer's bytes: small ones from memory after their first fetch (most functions' layers are a
   * bundle of some hundred KiB), large ones streamed from the registry each time.
   */
  async #layerBytes(image: string, layer: ImageFacts['layers'][number]): Promise<Buffer | Readable> {
    const cached = this.#layers.get(layer.digest);
    if (cached) {
      // Most recently used last.
      this.#layers.delete(layer.digest);
      this.#layers.set(layer.digest, cached);
      return cached;
    }
    const stream = await this.#o.layerBlob(image, layer.digest);
    if (layer.size > layerCache.largestBytes) return stream;
    const parts: Buffer[] = [];
    for await (const chunk of stream) parts.push(chunk as Buffer);
    const bytes = Buffer.concat(parts);
    this.#layers.set(layer.digest, bytes);
    let total = 0;
    for (const b of this.#layers.values()) total += b.length;
    for (const [digest, b] of this.#layers) {
      if (total <= layerCache.totalBytes) break;
      this.#layers.delete(digest);
      total -= b.length;
    }
    return bytes;
  }

  #patch(name: string, ops: object[]): Promise<V1Pod> {
    const { objects } = this.#o;
    return objects.core.patchNamespacedPod(
      { name, namespace: objects.namespace, body: ops },
      objects.k8s.setHeaderOptions('Content-Type', 'application/json-patch+json'),
    );
  }

  async #delete(podName: string, why: string): Promise<void> {
    const { objects } = this.#o;
    try {
      await objects.core.deleteNamespacedPod({ name: podName, namespace: objects.namespace });
    } catch (err) {
      if (!isApiError(err, 404)) objects.onWarning(`warm pool: could not delete pod ${podName} (${why})`, err);
    }
  }

  /**
   * Claimed pods no gateway will hand over: their function is gone or scaled back to zero, or
   * their claim never came to serve (the gateway that made it died). Any gateway deletes them.
   */
  async #sweepClaimed(): Promise<void> {
    const { objects } = this.#o;
    const now = Date.now();
    for (const pod of this.pods.cache.list(objects.namespace)) {
      const name = pod.metadata?.labels?.[warmPodLabels.warmFor];
      if (!name || pod.metadata?.deletionTimestamp) continue;
      const age = now - Date.parse(pod.metadata?.annotations?.[warmPodAnnotations.claimedAt] ?? '');
      if (!(age > this.#staleMs)) continue;
      const serving = pod.metadata?.annotations?.[warmPodAnnotations.serving] === 'true';
      const deployment = objects.cachedDeployment(name);
      const why = !objects.cachedFunction(name)
        ? `function "${name}" is gone`
        : !serving
          ? 'its claim never came to serve'
          : deployment?.spec?.replicas === 0
            ? `function "${name}" was scaled to zero`
            : (deployment?.status?.readyReplicas ?? 0) > 0
              ? `function "${name}" has pods of its own`
              : undefined;
      if (why) await this.#delete(pod.metadata!.name!, why);
    }
  }

  /** The pool's image and limits, read off its pods; undefined when it has none. */
  #shape(): PoolShape | undefined {
    const pods = this.pods.cache.list(this.#o.objects.namespace).filter((p) => p.metadata?.labels?.[warmPodLabels.pool] === 'warm' && !p.metadata?.deletionTimestamp);
    // The newest pods: after an upgrade of the pool, its new image.
    const pod = pods.sort((a, b) => String(b.metadata?.creationTimestamp ?? '').localeCompare(String(a.metadata?.creationTimestamp ?? '')))[0];
    const container = pod?.spec?.containers?.[0];
    if (!container?.image) return undefined;
    const limits = container.resources?.limits ?? {};
    return {
      image: container.image,
      memoryBytes: limits.memory ? parseQuantity(String(limits.memory)) : undefined,
      cpu: limits.cpu ? parseQuantity(String(limits.cpu)) : undefined,
    };
  }

  #fitEntry(poolImage: string, image: string): FitEntry {
    const key = `${poolImage}\n${image}`;
    let entry = this.#fits.get(key);
    // A registry that did not answer is asked again after a while; until then its reason stands.
    if (entry?.retryAt !== undefined && Date.now() >= entry.retryAt) entry = undefined;
    if (!entry) {
      const decided = this.#decideFit(poolImage, image);
      const made: FitEntry = { decided };
      decided.then(
        (fit) => (made.fit = fit),
        () => this.#fits.delete(key),
      );
      this.#fits.set(key, (entry = made));
    }
    return entry;
  }

  #fit(poolImage: string, image: string): Promise<Fit> {
    return this.#fitEntry(poolImage, image).decided;
  }

  async #decideFit(poolImage: string, image: string): Promise<Fit> {
    let pool: ImageFacts;
    let fn: ImageFacts;
    try {
      [pool, fn] = await Promise.all([this.#o.imageFacts(poolImage), this.#o.imageFacts(image)]);
    } catch (err) {
      // Kept for a while only: a registry that did not answer now may later.
      const entry = this.#fits.get(`${poolImage}\n${image}`);
      if (entry) entry.retryAt = Date.now() + fitRetryMs;
      this.#o.objects.onWarning(`warm pool: cannot read image ${image} or the pool's ${poolImage} from the registry`, err);
      return { fits: false, reason: `its image could not be read from the registry: ${(err as Error).message}` };
    }
    return imageFit(pool, fn, poolImage);
  }

  #changed(name: string): void {
    for (const listener of this.#listeners) listener(name);
  }
}

/** Whether a function image is the pool image's base plus its own layer, started as a bundle in /app. */
export function imageFit(pool: ImageFacts, fn: ImageFacts, poolImage: string): Fit {
  const sameBase = fn.layers.length === pool.layers.length && fn.layers.slice(0, -1).every((l, i) => l.digest === pool.layers[i]!.digest);
  if (!sameBase) return { fits: false, reason: "its image is not the warm pool's base plus the function's own layer" };
  const bundle = /^\/app\/(fn\.(?:cjs|mjs))$/.exec(fn.command[fn.command.length - 1] ?? '')?.[1];
  // The builder's `node --enable-source-maps /app/fn.cjs`: the warm runtime maps stacks itself.
  // Any other node flag is read only when node starts.
  const flags = fn.command.slice(1, -1);
  if (fn.command[0] !== 'node' || !bundle || flags.some((f) => f !== '--enable-source-maps')) return { fits: false, reason: 'its image does not start a bundle in /app with node' };
  const layer = fn.layers[fn.layers.length - 1]!;
  if (!/gzip$/.test(layer.mediaType)) return { fits: false, reason: `its own layer is ${layer.mediaType}, not a gzip tar` };
  if (fn.user !== pool.user) return { fits: false, reason: `its image runs as "${fn.user}", the warm pool as "${pool.user}"` };
  return { fits: true, layer, bundle, poolImage };
}

/** Why the pool cannot honour the spec whatever its image, or undefined. */
export function specUnfit(spec: FunctionSpec, shape: Pick<PoolShape, 'memoryBytes' | 'cpu'>): string | undefined {
  const r = spec.resources;
  if (r?.gpu) return 'it asks for a GPU';
  if (r?.memory && (shape.memoryBytes === undefined || parseQuantity(r.memory) > shape.memoryBytes)) return `its memory (${r.memory}) is more than a pool pod's`;
  if (r?.cpu && (shape.cpu === undefined || parseQuantity(r.cpu) > shape.cpu)) return `its cpu (${r.cpu}) is more than a pool pod's`;
  if (spec.placement?.nodeSelector || spec.placement?.tolerations?.length) return 'it asks for node placement';
  if (spec.serviceAccount) return 'it runs as its own ServiceAccount';
  if (spec.imagePullSecrets?.length) return 'its image needs pull secrets of its own';
  const startupEnv = Object.keys(spec.env ?? {}).find((k) => /^(NODE_|UV_)/.test(k));
  if (startupEnv) return `env ${startupEnv} is read only when node starts`;
  return undefined;
}

function isReady(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

function endpointOf(id: string, ip: string): Endpoint {
  const host = ip.includes(':') ? `[${ip}]` : ip;
  return { id, url: `http://${host}:${containerPorts.http}`, adminUrl: `http://${host}:${containerPorts.admin}` };
}

/** A JSON pointer's escaping of a map key. */
function escape(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1');
}

/** POSTs the claim's head and then the blob; the answer's status and text. */
function postClaim(url: string, signature: string, head: Buffer, blob: Buffer | Readable, timeoutMs: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { [warmSignatureHeader]: signature, 'content-type': 'application/octet-stream' }, timeout: Math.max(1, timeoutMs) });
    req.once('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.once('error', (err) => {
      if (!Buffer.isBuffer(blob)) blob.destroy();
      reject(err);
    });
    req.once('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8').slice(0, 500) }));
      res.once('error', reject);
    });
    if (Buffer.isBuffer(blob)) {
      req.end(Buffer.concat([head, blob]));
      return;
    }
    req.write(head);
    blob.once('error', (err) => req.destroy(err));
    blob.pipe(req);
  });
}

/**
 * The kubefn-warm-key Secret (platform namespace, mounted in the gateways) holds the key pair's
 * private half as this file; the kubefn-warm-key ConfigMap (functions' namespace, the pool pods'
 * environment) its public half under `warmPublicKeyFile`.
 */
export const warmKeyFile = 'private.pem';
export const warmPublicKeyFile = 'public.pem';
export const warmKeyName = 'kubefn-warm-key';
