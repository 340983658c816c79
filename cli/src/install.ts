// `fn install`: puts the platform on a cluster from deploy/ — the same kustomization
// `kubectl apply -k deploy/` reads, rendered here (resources, namespace, images, JSON 6902
// patches: enough for deploy/ and its overlays such as deploy/nats-ephemeral/) — with the
// platform image built by kubefn's builder when asked, the token Secret created when missing,
// server-side apply throughout, and a wait until every component is ready.
// `fn platform-image`: just builds and pushes that image. Their command lines are in install-command.ts.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import jsonPatch, { type Operation } from 'fast-json-patch';
import type { KubeConfig, KubernetesObject, V1CustomResourceDefinition } from '@kubernetes/client-node';
import { buildPlatformImage, buildWarmPoolImage, formatBytes, hostBaseName, parseReference, pushBaseImage, pushFunctionImage } from '@kubefn/builder';
import { KubefnError, isApiError, kubeError, loadKubernetesClient, warmKeyFile, warmKeyName, warmPublicKeyFile, withModelAliases } from '@kubefn/platform';
import { registryClient } from './image.js';
import { imageCacheDir } from './image-options.js';
import type { Progress } from './output.js';

export { defaultDeployDir } from './install-command.js';
/** The compiled entry point the platform image runs. */
/** The platform image's entry module: @kubefn/server's, resolved without loading the server. */
export const platformEntry = fileURLToPath(import.meta.resolve('@kubefn/server/entry'));
/** The image name deploy/'s manifests use for every kubefn component. */
export const platformImageName = 'kubefn-platform';
export const natsImageName = 'nats';
export const poolImageName = 'kubefn-pool';
const poolDeploymentName = 'kubefn-pool';
const fieldManager = 'kubefn-install';

type Manifest = KubernetesObject & { spec?: Record<string, unknown>; data?: Record<string, string> };

interface ImageOverride {
  name: string;
  newName?: string;
  newTag?: string;
  digest?: string;
}

/** A `patches` entry: a JSON 6902 patch (inline or in a file) for the objects `target` selects. */
interface KustomizePatch {
  patch?: string;
  path?: string;
  target?: { group?: string; version?: string; kind?: string; name?: string } & Record<string, unknown>;
  options?: unknown;
}

interface Kustomization {
  namespace?: string;
  resources?: string[];
  images?: ImageOverride[];
  patches?: KustomizePatch[];
}

/** The keys of a kustomization.yaml this renderer understands; anything else is refused. */
const supportedKeys = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'images', 'patches']);
/** What a patch's target may select on here. */
const supportedTargetKeys = new Set(['group', 'version', 'kind', 'name']);

/** Kinds that are not namespaced (what kustomize leaves without a namespace). */
const clusterScoped = new Set(['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding', 'PersistentVolume', 'StorageClass', 'PriorityClass']);

/**
 * Renders a kustomization: its resources in order (files, or directories with their own
 * kustomization.yaml, rendered first), its JSON 6902 `patches` applied to the objects their
 * target names, the namespace set on every namespaced object (and the Namespace renamed; an
 * overlay without one keeps its base's), container images replaced by `images` and then by
 * `overrides` (which reach into bases too, so an overlay's platform image is still the one given).
 * Enough for deploy/ and its overlays; a kustomization using more is refused with a pointer to kubectl.
 */
export async function renderKustomization(dir: string, overrides: ImageOverride[] = []): Promise<{ namespace: string | undefined; objects: Manifest[] }> {
  const file = path.join(dir, 'kustomization.yaml');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new KubefnError('NOT_FOUND', `no kustomization.yaml in ${dir}`, { hint: 'point --from at kubefn\'s deploy/ directory', cause: err });
  }
  const k = (YAML.parse(text) ?? {}) as Kustomization & Record<string, unknown>;
  const unknown = Object.keys(k).filter((key) => !supportedKeys.has(key));
  if (unknown.length) {
    throw new KubefnError('NOT_SUPPORTED', `${file} uses ${unknown.join(', ')}, which fn install does not render`, {
      hint: `apply it with kubectl instead: kubectl apply -k ${dir}`,
    });
  }
  const objects: Manifest[] = [];
  let baseNamespace: string | undefined;
  for (const entry of k.resources ?? []) {
    const target = path.resolve(dir, entry);
    if ((await stat(target).catch(() => null))?.isDirectory()) {
      const base = await renderKustomization(target, overrides);
      baseNamespace ??= base.namespace;
      objects.push(...base.objects);
      continue;
    }
    const docs = YAML.parseAllDocuments(await readFile(target, 'utf8'));
    for (const doc of docs) {
      if (doc.errors.length) throw new KubefnError('INVALID_SPEC', `${target}: ${doc.errors[0]!.message}`);
      const obj = doc.toJS() as Manifest | null;
      if (!obj) continue;
      if (!obj.apiVersion || !obj.kind || !obj.metadata?.name) throw new KubefnError('INVALID_SPEC', `${target}: a document without apiVersion, kind or metadata.name`);
      objects.push(obj);
    }
  }
  for (const [i, p] of (k.patches ?? []).entries()) await applyPatch(objects, p, `${file} patches[${i}]`, dir);
  const own = k.namespace;
  for (const obj of objects) {
    if (!own) continue;
    if (obj.kind === 'Namespace') obj.metadata!.name = own;
    else if (!clusterScoped.has(obj.kind!)) obj.metadata!.namespace = own;
    // kustomize also places the ServiceAccount subjects of role bindings in the namespace.
    if (obj.kind === 'RoleBinding' || obj.kind === 'ClusterRoleBinding') {
      for (const subject of (obj as { subjects?: { kind?: string; namespace?: string }[] }).subjects ?? []) {
        if (subject.kind === 'ServiceAccount' && !subject.namespace) subject.namespace = own;
      }
    }
  }
  const images = [...(k.images ?? []), ...overrides];
  for (const obj of objects) for (const c of containersOf(obj)) c.image = replaceImage(c.image, images);
  return { namespace: own ?? baseNamespace, objects };
}

/** The platform's namespace: the kustomization's, else the one its gateway Deployment names, else default. */
export function platformNamespaceOf({ namespace, objects }: { namespace: string | undefined; objects: Manifest[] }): string {
  return namespace ?? objects.find((o) => o.kind === 'Deployment' && o.metadata?.name === 'kubefn-gateway')?.metadata?.namespace ?? 'default';
}

/** Applies one `patches` entry: JSON 6902 operations on every object its target selects. */
async function applyPatch(objects: Manifest[], p: KustomizePatch, where: string, dir: string): Promise<void> {
  const refuse = (what: string) =>
    new KubefnError('NOT_SUPPORTED', `${where}: ${what}, which fn install does not render`, { hint: `apply it with kubectl instead: kubectl apply -k ${dir}` });
  const target = p.target;
  if (!target?.kind) throw refuse('a patch without a target kind');
  const unknown = Object.keys(target).filter((key) => !supportedTargetKeys.has(key));
  if (unknown.length || p.options !== undefined) throw refuse(`a patch target selecting by ${[...unknown, ...(p.options !== undefined ? ['options'] : [])].join(', ')}`);
  const text = p.patch ?? (p.path ? await readFile(path.resolve(dir, p.path), 'utf8') : undefined);
  if (text === undefined) throw refuse('a patch with neither patch nor path');
  const ops = YAML.parse(text) as unknown;
  if (!Array.isArray(ops)) throw refuse('a strategic-merge patch (only JSON 6902 lists of operations are)');
  const selected = objects.filter((o) => {
    const [group, version] = o.apiVersion!.includes('/') ? o.apiVersion!.split('/') : ['', o.apiVersion!];
    return (
      o.kind === target.kind &&
      (target.name === undefined || o.metadata?.name === target.name) &&
      (target.group === undefined || group === target.group) &&
      (target.version === undefined || version === target.version)
    );
  });
  for (const obj of selected) {
    try {
      jsonPatch.applyPatch(obj, ops as Operation[], true, true);
    } catch (err) {
      throw new KubefnError('INVALID_SPEC', `${where} does not apply to ${obj.kind} ${obj.metadata?.name}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`, { cause: err });
    }
  }
}

function containersOf(obj: Manifest): { image: string }[] {
  const pod = (obj.spec?.template as { spec?: { containers?: { image: string }[]; initContainers?: { image: string }[] } } | undefined)?.spec;
  return [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])];
}

/** kustomize's `images` rule: match on the name before tag or digest; the last matching entry wins. */
export function replaceImage(image: string, images: readonly ImageOverride[]): string {
  const at = image.indexOf('@');
  const lastSlash = image.lastIndexOf('/');
  const colon = image.indexOf(':', lastSlash + 1);
  const end = at >= 0 ? at : colon >= 0 ? colon : image.length;
  const name = image.slice(0, end);
  let out = image;
  for (const o of images) {
    if (o.name !== name) continue;
    let tag = at >= 0 ? image.slice(at) : colon >= 0 ? image.slice(colon) : '';
    if (o.newTag) tag = `:${o.newTag}`;
    if (o.digest) tag = `@${o.digest}`;
    out = `${o.newName ?? name}${tag}`;
  }
  return out;
}

export interface InstallOptions {
  from: string;
  kubeconfig?: string;
  /** The platform image; else built and pushed to `registry`. */
  image?: string;
  registry?: string;
  /** Function base image; "host" pushes this machine's node base to the registry. */
  base?: string;
  /** Base of the platform image (default "host"). */
  platformBase?: string;
  natsImage?: string;
  /** Warm pool pods (default: deploy/pool.yaml's replicas); 0 turns the pool off. */
  pool?: number;
  /** The warm pool's image; else built on the function base and pushed to `registry`. */
  poolImage?: string;
  insecureRegistry?: string[];
  dryRun: boolean;
  timeoutMs: number;
  home: string;
}

export interface InstallResult {
  namespace: string;
  image: string;
  objects: { kind: string; name: string }[];
  /** The warm pool's image; absent when the pool is off. */
  poolImage?: string;
  /** Set when the token Secret was created now. */
  tokenCreated: boolean;
  ready: boolean;
}

export async function install(options: InstallOptions, progress: Progress, note: (s: string) => void): Promise<InstallResult> {
  // Before any image is built: no cluster, nothing to do.
  const kc = await loadClusterConfig(options.kubeconfig);
  const client = registryClient({ insecureRegistry: options.insecureRegistry ?? [] });
  const cacheDir = imageCacheDir(options.home);
  let image = options.image;
  if (!image && !options.registry) {
    throw new KubefnError('BAD_REQUEST', 'fn install needs the platform image: --image <ref>, or --registry <host:port> to build and push it', {
      hint: 'e.g. fn install --registry registry.example.com/kubefn',
    });
  }
  if (!image) image = await buildAndPushPlatformImage({ registry: options.registry!, base: options.platformBase ?? hostBaseName, client, cacheDir, progress });
  let base = options.base;
  if (base === hostBaseName) {
    if (!options.registry) throw new KubefnError('BAD_REQUEST', '--base host needs --registry: the base is pushed there for the cluster to pull');
    const target = `${options.registry.replace(/\/+$/, '')}/kubefn/node-base:host`;
    base = await progress.step(`pushing this machine's node as the function base`, () => pushBaseImage(client, hostBaseName, target, cacheDir), (r) => `function base ${r}`);
  }
  const poolImage = options.pool === 0 ? undefined : await poolImageFor(options, base, client, cacheDir, progress, note);
  const overrides: ImageOverride[] = [
    imageOverride(platformImageName, image),
    ...(options.natsImage ? [imageOverride(natsImageName, options.natsImage)] : []),
    ...(poolImage ? [imageOverride(poolImageName, poolImage)] : []),
  ];
  const rendered = await renderKustomization(options.from, overrides);
  const { objects } = rendered;
  const namespace = platformNamespaceOf(rendered);
  let functionNamespace = namespace;
  for (const obj of objects) {
    if (obj.kind === 'Deployment' && obj.metadata?.name === poolDeploymentName) {
      // No image, no pool: its pods would wait on a pull that cannot succeed.
      if (!poolImage) obj.spec = { ...obj.spec, replicas: 0 };
      else if (options.pool !== undefined) obj.spec = { ...obj.spec, replicas: options.pool };
    }
    if (obj.kind === 'ConfigMap' && obj.metadata?.name === 'kubefn-config') {
      functionNamespace = obj.data?.['function-namespace'] || namespace;
      obj.data = {
        ...obj.data,
        ...(options.registry ? { registry: options.registry } : {}),
        ...(base ? { base } : {}),
        ...(options.insecureRegistry?.length ? { 'insecure-registries': options.insecureRegistry.join(',') } : {}),
      };
    }
  }

  const k8s = await loadKubernetesClient();
  const api = k8s.KubernetesObjectApi.makeApiClient(kc);
  const dryRun = options.dryRun ? 'All' : undefined;
  const apply = async (obj: Manifest): Promise<void> => {
    try {
      await api.patch(withModelAliases(obj), undefined, dryRun, fieldManager, true, 'application/apply-patch+yaml');
    } catch (err) {
      const e = kubeError(err, `${obj.kind} ${obj.metadata?.namespace ? obj.metadata.namespace + '/' : ''}${obj.metadata?.name} was refused`);
      // NATS's store moving between a claim and an emptyDir (deploy/ and deploy/nats-ephemeral/).
      if (obj.kind === 'StatefulSet' && /updates to statefulset spec for fields other than/.test(e.message)) {
        throw new KubefnError(e.code, e.message, {
          cause: err,
          hint: `a StatefulSet's volumeClaimTemplates cannot change in place: kubectl -n ${obj.metadata?.namespace} delete statefulset ${obj.metadata?.name} (its claims stay), then install again`,
        });
      }
      throw e;
    }
  };
  // The Namespace and the CRD first: the rest lives in the one and may use the other.
  const first = objects.filter((o) => o.kind === 'Namespace' || o.kind === 'CustomResourceDefinition');
  const rest = objects.filter((o) => !first.includes(o));
  await progress.step(`${options.dryRun ? 'checking (server dry run)' : 'applying'} the namespace and the Function CRD`, async () => {
    for (const o of first) await apply(o);
    if (!options.dryRun) await waitEstablished(kc, first, options.timeoutMs);
  });
  let tokenCreated = false;
  if (!options.dryRun) tokenCreated = await ensureToken(kc, namespace);
  if (!options.dryRun) await ensureWarmKey(kc, namespace, functionNamespace);
  await progress.step(`${options.dryRun ? 'checking (server dry run)' : 'applying'} ${rest.length} objects in ${namespace}`, async () => {
    for (const o of rest) await apply(o);
  });
  let ready = false;
  if (!options.dryRun) {
    const workloads = rest.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');
    ready = await progress.step(`waiting for ${workloads.map((w) => w.metadata!.name).join(', ')}`, () => waitReady(kc, namespace, workloads, options.timeoutMs, note));
  }
  return {
    namespace,
    image,
    ...(poolImage ? { poolImage } : {}),
    objects: objects.map((o) => ({ kind: o.kind!, name: o.metadata!.name! })),
    tokenCreated,
    ready,
  };
}

/**
 * The warm pool's image: the one given, or built on the function base and pushed to the
 * registry. Without a registry, or when the build fails, the pool is off (said, not fatal).
 */
async function poolImageFor(
  options: InstallOptions,
  base: string | undefined,
  client: ReturnType<typeof registryClient>,
  cacheDir: string,
  progress: Progress,
  note: (s: string) => void,
): Promise<string | undefined> {
  if (options.poolImage) return options.poolImage;
  if (!options.registry || !base) {
    note('the warm pool is off: fn install builds its image on the function base (--base) and pushes it to --registry; give both, or --pool-image');
    return undefined;
  }
  try {
    const pi = await progress.step(`building the warm pool image on ${base}`, () => buildWarmPoolImage({ base, client, cacheDir }), (p) => `built warm pool image ${p.image.manifestDescriptor.digest.slice(0, 19)}`);
    const target = parseReference(`${options.registry.replace(/\/+$/, '')}/kubefn/warm-pool:${pi.image.manifestDescriptor.digest.slice('sha256:'.length, 'sha256:'.length + 20)}`);
    const report = await progress.step(`pushing to ${target.registry}/${target.repository}`, () => pushFunctionImage(client, pi, target), (r) => `pushed ${r.ref}`);
    return report.ref;
  } catch (err) {
    note(`the warm pool is off: its image could not be built or pushed: ${(err as Error).message}`);
    return undefined;
  }
}

/**
 * The key pair that signs warm pool claims: the kubefn-warm-key Secret (both halves; the
 * gateways mount it) is created when missing, and the kubefn-warm-key ConfigMap in the functions'
 * namespace (the pool pods' public key) is written from it, so the two always match.
 */
async function ensureWarmKey(kc: KubeConfig, namespace: string, functionNamespace: string): Promise<void> {
  const k8s = await loadKubernetesClient();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  let publicPem: string;
  try {
    const secret = await core.readNamespacedSecret({ name: warmKeyName, namespace });
    publicPem = Buffer.from(secret.data?.[warmPublicKeyFile] ?? '', 'base64').toString('utf8');
  } catch (err) {
    if (!isApiError(err, 404)) throw kubeError(err, `reading Secret ${namespace}/${warmKeyName}`);
    const pair = generateKeyPairSync('ed25519');
    publicPem = pair.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name: warmKeyName, labels: { 'app.kubernetes.io/part-of': 'kubefn' } },
        stringData: { [warmKeyFile]: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), [warmPublicKeyFile]: publicPem },
      },
    });
  }
  const api = k8s.KubernetesObjectApi.makeApiClient(kc);
  const configMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: warmKeyName, namespace: functionNamespace, labels: { 'app.kubernetes.io/part-of': 'kubefn' } },
    data: { [warmPublicKeyFile]: publicPem },
  };
  try {
    await api.patch(withModelAliases(configMap), undefined, undefined, fieldManager, true, 'application/apply-patch+yaml');
  } catch (err) {
    throw kubeError(err, `applying ConfigMap ${functionNamespace}/${warmKeyName}`);
  }
}

/** The kubeconfig to install with; a clear error when there is none at all. */
async function loadClusterConfig(file: string | undefined): Promise<KubeConfig> {
  const k8s = await loadKubernetesClient();
  const kc = new k8s.KubeConfig();
  if (file) {
    kc.loadFromFile(file);
    return kc;
  }
  const home = process.env.HOME ?? '';
  const candidates = [...(process.env.KUBECONFIG ?? '').split(path.delimiter).filter(Boolean), path.join(home, '.kube', 'config')];
  const found = await Promise.all(candidates.map((c) => stat(c).then(() => true, () => false)));
  if (!found.some(Boolean) && !process.env.KUBERNETES_SERVICE_HOST) {
    throw new KubefnError('NOT_FOUND', 'no Kubernetes cluster configured: no kubeconfig found', {
      hint: 'point KUBECONFIG or --kubeconfig at one, or make a context current in ~/.kube/config (kubectl config use-context ...)',
    });
  }
  kc.loadFromDefault();
  return kc;
}

function imageOverride(name: string, ref: string): ImageOverride {
  const r = parseReference(ref);
  const newName = `${r.registry}/${r.repository}`;
  return r.digest ? { name, newName, digest: r.digest } : { name, newName, newTag: r.tag ?? 'latest' };
}

export async function buildAndPushPlatformImage(options: {
  registry: string;
  base: string;
  client: ReturnType<typeof registryClient>;
  cacheDir: string;
  progress: Progress;
  version?: string;
}): Promise<string> {
  const pi = await options.progress.step(
    `building the platform image on ${options.base}`,
    () => buildPlatformImage({ entry: platformEntry, base: options.base, client: options.client, cacheDir: options.cacheDir, version: options.version ?? '0.1.0' }),
    (p) => `built platform image ${p.image.manifestDescriptor.digest.slice(0, 19)}: layer ${formatBytes(p.layer.blob.length)}`,
  );
  const target = parseReference(`${options.registry.replace(/\/+$/, '')}/kubefn/platform:${options.version ?? '0.1.0'}`);
  const report = await options.progress.step(`pushing to ${target.registry}/${target.repository}`, () => pushFunctionImage(options.client, pi, target), (r) => `pushed ${r.ref} (${formatBytes(r.bytesSent)} sent)`);
  return report.ref;
}

async function waitEstablished(kc: KubeConfig, objects: Manifest[], timeoutMs: number): Promise<void> {
  const k8s = await loadKubernetesClient();
  const apiext = kc.makeApiClient(k8s.ApiextensionsV1Api);
  const deadline = Date.now() + timeoutMs;
  for (const crd of objects.filter((o) => o.kind === 'CustomResourceDefinition')) {
    for (;;) {
      const live: V1CustomResourceDefinition = await apiext.readCustomResourceDefinition({ name: crd.metadata!.name! });
      if (live.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new KubefnError('TIMEOUT', `CRD ${crd.metadata!.name} is not established after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/**
 * The Secrets of the platform's tokens: kubefn-token (users: fn, faas-cli, the management API),
 * kubefn-component-token (the components among themselves) and kubefn-nats-token (NATS's
 * clients), each created with a random token unless it exists. True when the users' one was created.
 */
async function ensureToken(kc: KubeConfig, namespace: string): Promise<boolean> {
  const [user] = await Promise.all([
    ensureTokenSecret(kc, namespace, 'kubefn-token'),
    ensureTokenSecret(kc, namespace, 'kubefn-component-token'),
    ensureTokenSecret(kc, namespace, 'kubefn-nats-token'),
  ]);
  return user;
}

async function ensureTokenSecret(kc: KubeConfig, namespace: string, name: string): Promise<boolean> {
  const k8s = await loadKubernetesClient();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  try {
    await core.readNamespacedSecret({ name, namespace });
    return false;
  } catch (err) {
    if (!isApiError(err, 404)) throw kubeError(err, `reading Secret ${namespace}/${name}`);
  }
  await core.createNamespacedSecret({
    namespace,
    body: { metadata: { name, labels: { 'app.kubernetes.io/part-of': 'kubefn' } }, stringData: { token: generatedToken() } },
  });
  return true;
}

/**
 * A new token: 192 random bits as base64url, after a letter. NATS substitutes its token into its
 * config and parses it there, where a value starting with "-", or read as a number ("1e5...",
 * all digits) or a boolean, stops the server from starting; one that starts with a letter is a
 * plain string.
 */
export function generatedToken(): string {
  return `k${randomBytes(24).toString('base64url')}`;
}

/** Waits until every Deployment and StatefulSet has all replicas ready and updated; says which are not. */
async function waitReady(kc: KubeConfig, namespace: string, workloads: Manifest[], timeoutMs: number, note: (s: string) => void): Promise<boolean> {
  const k8s = await loadKubernetesClient();
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const deadline = Date.now() + timeoutMs;
  let pending: string[] = [];
  while (Date.now() < deadline) {
    pending = [];
    for (const w of workloads) {
      const name = w.metadata!.name!;
      const ns = w.metadata?.namespace ?? namespace;
      const live = w.kind === 'Deployment' ? await apps.readNamespacedDeployment({ name, namespace: ns }) : await apps.readNamespacedStatefulSet({ name, namespace: ns });
      const want = live.spec?.replicas ?? 1;
      const s = live.status;
      const observed = (s?.observedGeneration ?? 0) >= (live.metadata?.generation ?? 0);
      if (!observed || (s?.readyReplicas ?? 0) < want || (s?.updatedReplicas ?? 0) < want) pending.push(`${name} ${s?.readyReplicas ?? 0}/${want}`);
    }
    if (pending.length === 0) return true;
    await new Promise((r) => setTimeout(r, 500));
  }
  note(`not ready after ${Math.round(timeoutMs / 1000)} s: ${pending.join(', ')}; see kubectl -n ${namespace} get pods`);
  // Say why, as `kubectl describe` would: each unready pod's waiting reason or last exit.
  const core = kc.makeApiClient(k8s.CoreV1Api);
  for (const w of workloads) {
    const labels = (w.spec?.selector as { matchLabels?: Record<string, string> } | undefined)?.matchLabels ?? {};
    const selector = Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',');
    const pods = await core.listNamespacedPod({ namespace: w.metadata?.namespace ?? namespace, labelSelector: selector }).catch(() => undefined);
    for (const pod of pods?.items ?? []) {
      if (pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) continue;
      const why = (pod.status?.containerStatuses ?? []).map((c) => {
        const waiting = c.state?.waiting;
        const last = c.lastState?.terminated ?? c.state?.terminated;
        return [waiting && `${waiting.reason}: ${waiting.message ?? ''}`, last && `last exit ${last.exitCode} (${last.reason ?? ''})`, `restarts ${c.restartCount}`].filter(Boolean).join('; ');
      });
      const unscheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
      if (unscheduled) why.unshift(`not scheduled: ${unscheduled.message ?? unscheduled.reason ?? ''}`);
      note(`  pod ${pod.metadata?.name}: ${pod.status?.phase ?? 'Unknown'}${pod.status?.reason ? ` ${pod.status.reason}: ${pod.status.message ?? ''}` : ''} ${why.join(' | ')}`);
      // A container that exited: the last lines it wrote say why (kubectl logs --previous).
      for (const c of pod.status?.containerStatuses ?? []) {
        if (!c.lastState?.terminated) continue;
        const log = await core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace: pod.metadata!.namespace ?? namespace, container: c.name, previous: true, tailLines: 5, limitBytes: 2048 }).catch(() => undefined);
        for (const line of (typeof log === 'string' ? log : '').split('\n').filter(Boolean)) note(`    ${c.name}: ${line}`);
      }
    }
  }
  // NATS's store claim with nothing to bind it to: say what to do.
  const claims = await core.listNamespacedPersistentVolumeClaim({ namespace, labelSelector: 'app.kubernetes.io/part-of=kubefn' }).catch(() => undefined);
  for (const claim of claims?.items ?? []) {
    if (claim.status?.phase !== 'Pending') continue;
    note(
      `  claim ${claim.metadata?.name} is not bound: the cluster has no default StorageClass to provision it, or no PersistentVolume fits. ` +
        `Create one, or run NATS on an emptyDir (its streams die with the pod): fn install --from deploy/nats-ephemeral`,
    );
  }
  return false;
}
