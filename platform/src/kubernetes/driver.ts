// The `kubernetes` driver: a function is a Function custom resource (the source of truth, so
// `kubectl apply` and GitOps work without the CLI), reconciled into a Deployment and a Service it
// owns; endpoints come from EndpointSlices, scaling from the Deployment's scale subresource, logs
// from the pods.

import type {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObject,
  KubernetesObjectApi,
  V1Deployment,
  V1EndpointSlice,
} from '@kubernetes/client-node';
import { loadKubernetesClient, type KubernetesClient } from './client.js';
import { crdGroup, crdVersion } from '../crd.js';
import type { Driver, Endpoint, EndpointSet, FunctionStatus, LogLine, LogOptions } from '../driver.js';
import { EndpointSets } from '../endpoint-sets.js';
import { KubefnError } from '../errors.js';
import { parseFunctionSpec, type FunctionSpec } from '../spec.js';
import { adminPaths } from '../runtime-contract.js';
import { endpointsOf, pendingEndpointsOf, sameEndpoints } from './endpoints.js';
import { KeptInformer } from './informers.js';
import { podLogs } from './logs.js';
import {
  deploymentFor,
  imageDigest,
  initialReplicas,
  kubefnLabels,
  managedBy,
  serviceFor,
  serviceNameLabel,
  servicePort,
  type Owner,
} from './manifests.js';
import { isApiError, kubeError } from './errors.js';
import { functionStatusOf, readyCondition, type FunctionResource, type FunctionResourceStatus } from './status.js';

export interface KubernetesDriverOptions {
  /** A loaded KubeConfig, or the path of a kubeconfig file; default: KUBECONFIG, ~/.kube/config or in-cluster. */
  kubeconfig?: KubeConfig | string;
  /** Where Functions, Deployments and Services live. */
  namespace: string;
  /** Hears about failures the driver recovers from (a watch restarting, a reconcile to retry). */
  onWarning?: (message: string, err?: unknown) => void;
  /** Longest remove() waits for the Function and its dependents to go, in ms (default 120000). */
  removeTimeoutMs?: number;
  /**
   * Whether this driver reconciles Functions into Deployments and Services (default true). In a
   * cluster one controller does (the autoscaler's pod); the gateways apply Functions, read
   * endpoints and wait for the controller's status.
   */
  reconcile?: boolean;
  /** Longest deploy() waits for the controller to pick a Function up when not reconciling, ms (default 60000). */
  controllerTimeoutMs?: number;
  /**
   * Probe the runtime's /readyz of pods the kubelet has not reported ready yet, and route to
   * them as soon as it answers (default false; the gateway turns it on). The kubelet probes at
   * most once a second, so this takes up to a second off a cold start. A pod found ready this
   * way counts for `probedReadyMs` (default 5000) unless its EndpointSlice confirms it.
   */
  probePending?: boolean;
  probedReadyMs?: number;
}

/** A not-yet-ready pod the driver probes itself. */
interface PendingProbe {
  endpoint: Endpoint;
  /** Until when its own probe's answer counts; 0 while not (yet) ready. */
  readyUntil: number;
  stop: AbortController;
}

/** The field manager of everything kubefn applies. */
export const fieldManager = 'kubefn';
/**
 * The field manager that holds spec.replicas of a Deployment after its creation, so that kubefn's
 * own applies (which leave replicas out) never reset it. Scaling through the scale subresource
 * moves the field to whoever scaled.
 */
export const replicasFieldManager = 'kubefn-replicas';
/** The field manager of scale(): an update of the scale subresource. */
export const scaleFieldManager = 'kubefn-scale';

const functionApiVersion = `${crdGroup}/${crdVersion}`;
/** Content-Type of a server-side apply (PatchStrategy.ServerSideApply). */
const applyPatchType = 'application/apply-patch+yaml';

export class KubernetesDriver implements Driver {
  readonly kind = 'kubernetes';
  readonly namespace: string;
  readonly #k8s: KubernetesClient;
  readonly #kc: KubeConfig;
  readonly #objects: KubernetesObjectApi;
  readonly #apps: AppsV1Api;
  readonly #core: CoreV1Api;
  readonly #custom: CustomObjectsApi;
  readonly #onWarning: (message: string, err?: unknown) => void;
  readonly #removeTimeoutMs: number;
  readonly #reconciles: boolean;
  readonly #controllerTimeoutMs: number;
  readonly #probePending: boolean;
  readonly #probedReadyMs: number;
  /** Per function, per endpoint id: the pods probed while the kubelet has not reported them ready. */
  readonly #pending = new Map<string, Map<string, PendingProbe>>();
  readonly #functions: KeptInformer<FunctionResource>;
  readonly #deployments: KeptInformer<V1Deployment>;
  readonly #slices: KeptInformer<V1EndpointSlice>;
  readonly #endpointSets: EndpointSets;
  /** Per function: the reconcile running now, and one queued behind it (coalesced). */
  readonly #running = new Map<string, Promise<FunctionStatus | undefined>>();
  readonly #queued = new Map<string, Promise<FunctionStatus | undefined>>();
  readonly #retries = new Map<string, { timer: NodeJS.Timeout; delayMs: number }>();
  /** Log followers to end when their function goes. */
  readonly #goneListeners = new Map<string, Set<() => void>>();
  #closed = false;

  /** Use open(); `client` is what loadKubernetesClient() resolves to. */
  constructor(options: KubernetesDriverOptions, client: KubernetesClient) {
    const k8s = (this.#k8s = client);
    const makeInformer = k8s.makeInformer;
    this.namespace = options.namespace;
    this.#kc = loadKubeConfig(k8s, options.kubeconfig);
    this.#objects = k8s.KubernetesObjectApi.makeApiClient(this.#kc);
    this.#apps = this.#kc.makeApiClient(k8s.AppsV1Api);
    this.#core = this.#kc.makeApiClient(k8s.CoreV1Api);
    this.#custom = this.#kc.makeApiClient(k8s.CustomObjectsApi);
    const discovery = this.#kc.makeApiClient(k8s.DiscoveryV1Api);
    this.#onWarning = options.onWarning ?? (() => {});
    this.#removeTimeoutMs = options.removeTimeoutMs ?? 120_000;
    this.#reconciles = options.reconcile ?? true;
    this.#controllerTimeoutMs = options.controllerTimeoutMs ?? 60_000;
    this.#probePending = options.probePending ?? false;
    this.#probedReadyMs = options.probedReadyMs ?? 5000;
    const ns = this.namespace;
    const selector = `${kubefnLabels.managedBy}=${managedBy}`;
    const warn = this.#onWarning;

    this.#functions = new KeptInformer(
      makeInformer<FunctionResource>(
        this.#kc,
        `/apis/${crdGroup}/${crdVersion}/namespaces/${ns}/functions`,
        () => this.#custom.listNamespacedCustomObject({ group: crdGroup, version: crdVersion, namespace: ns, plural: 'functions' }),
      ),
      { what: `functions in ${ns}`, namespace: ns, onWarning: warn },
    );
    this.#deployments = new KeptInformer(
      makeInformer<V1Deployment>(
        this.#kc,
        `/apis/apps/v1/namespaces/${ns}/deployments`,
        () => this.#apps.listNamespacedDeployment({ namespace: ns, labelSelector: selector }),
        selector,
      ),
      { what: `deployments in ${ns}`, namespace: ns, onWarning: warn },
    );
    // The EndpointSlice controller copies a Service's labels onto its slices, so the slices of
    // kubefn's Services carry managed-by=kubefn next to kubernetes.io/service-name.
    const sliceSelector = `${selector},${serviceNameLabel}`;
    this.#slices = new KeptInformer(
      makeInformer<V1EndpointSlice>(
        this.#kc,
        `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`,
        () => discovery.listNamespacedEndpointSlice({ namespace: ns, labelSelector: sliceSelector }),
        sliceSelector,
      ),
      { what: `endpointslices in ${ns}`, namespace: ns, onWarning: warn },
    );
    this.#endpointSets = new EndpointSets((name) => this.#functions.cache.get(name, ns) !== undefined);

    const reconcileLater = (name: string | undefined): void => {
      if (name && !this.#closed && this.#reconciles) void this.#schedule(name).catch(() => {});
    };
    this.#functions.on('add', (fn) => reconcileLater(fn.metadata?.name));
    this.#functions.on('update', (fn) => reconcileLater(fn.metadata?.name));
    this.#functions.on('delete', (fn) => {
      const name = fn.metadata?.name ?? '';
      for (const gone of this.#goneListeners.get(name) ?? []) gone();
    });
    // A Deployment that changed (its status, or someone edited or deleted it) is reconciled back
    // and its Function's status brought up to date.
    const ofDeployment = (d: V1Deployment): void => reconcileLater(d.metadata?.labels?.[kubefnLabels.function]);
    this.#deployments.on('add', ofDeployment);
    this.#deployments.on('update', ofDeployment);
    this.#deployments.on('delete', ofDeployment);
    const ofSlice = (s: V1EndpointSlice): void => {
      const name = s.metadata?.labels?.[serviceNameLabel];
      if (name) this.#refreshEndpoints(name);
    };
    this.#slices.on('add', ofSlice);
    this.#slices.on('update', ofSlice);
    this.#slices.on('delete', ofSlice);
  }

  /** A driver whose caches hold the namespace's Functions, Deployments and EndpointSlices. */
  static async open(options: KubernetesDriverOptions): Promise<KubernetesDriver> {
    const driver = new KubernetesDriver(options, await loadKubernetesClient());
    try {
      await driver.start();
    } catch (err) {
      await driver.close();
      throw err;
    }
    return driver;
  }

  /** Starts the informers and waits for their first list. */
  async start(): Promise<void> {
    try {
      await Promise.all([this.#functions.start(), this.#deployments.start(), this.#slices.start()]);
    } catch (err) {
      const e = kubeError(err, `watching kubefn objects in namespace "${this.namespace}"`);
      if (e.code === 'NOT_FOUND') {
        throw new KubefnError('NOT_FOUND', `the Function resource (functions.${crdGroup}) is not installed: ${e.message}`, {
          cause: err,
          hint: 'install the CRD first: kubectl apply -f deploy/crd/function.yaml',
        });
      }
      throw e;
    }
  }

  async deploy(input: FunctionSpec): Promise<FunctionStatus> {
    this.#checkOpen();
    const spec = parseFunctionSpec(input);
    const { name: _name, ...fields } = spec;
    let applied: FunctionResource;
    try {
      applied = await this.#objects.patch(
        {
          apiVersion: functionApiVersion,
          kind: 'Function',
          metadata: { name: spec.name, namespace: this.namespace, labels: { [kubefnLabels.managedBy]: managedBy } },
          spec: fields,
        } as KubernetesObject,
        undefined,
        undefined,
        fieldManager,
        true,
        applyPatchType,
      ) as FunctionResource;
    } catch (err) {
      throw kubeError(err, `applying Function "${spec.name}"`);
    }
    const status = this.#reconciles ? await this.#schedule(spec.name) : await this.#reconciledBy(applied);
    if (!status) throw new KubefnError('NOT_FOUND', `function "${spec.name}" was deleted while it was deployed`);
    return status;
  }

  /**
   * The status once the controller has seen this generation of the Function (its
   * status.observedGeneration caught up); after controllerTimeoutMs, the status as it stands.
   */
  async #reconciledBy(applied: FunctionResource): Promise<FunctionStatus | undefined> {
    const name = applied.metadata?.name ?? '';
    const uid = applied.metadata?.uid;
    const generation = applied.metadata?.generation ?? 0;
    const current = (): FunctionResource | undefined => {
      const fn = this.#functions.cache.get(name, this.namespace);
      return fn?.metadata?.uid === uid ? fn : undefined;
    };
    const seen = await this.#functions.until(() => (current()?.status?.observedGeneration ?? -1) >= generation, this.#controllerTimeoutMs);
    if (!seen) {
      this.#onWarning(`function "${name}" was applied but no controller reconciled it within ${this.#controllerTimeoutMs} ms; is kubefn-autoscaler running?`);
    }
    const fn = current() ?? (await this.#readFunction(name));
    return fn && this.#statusOf(fn, this.#deployments.cache.get(name, this.namespace));
  }

  async remove(name: string): Promise<void> {
    this.#checkOpen();
    const fn = await this.#readFunction(name);
    if (!fn) throw notFound(name);
    try {
      // Foreground: the garbage collector deletes the Deployment (and its pods) and the Service
      // before the Function itself goes, so "gone" means the replicas are stopped.
      await this.#custom.deleteNamespacedCustomObject({
        group: crdGroup,
        version: crdVersion,
        namespace: this.namespace,
        plural: 'functions',
        name,
        propagationPolicy: 'Foreground',
      });
    } catch (err) {
      const e = kubeError(err, `deleting Function "${name}"`);
      if (e.code === 'NOT_FOUND') throw notFound(name);
      throw e;
    }
    const uid = fn.metadata?.uid;
    const gone = await this.#functions.until(() => this.#functions.cache.get(name, this.namespace)?.metadata?.uid !== uid, this.#removeTimeoutMs);
    if (!gone && (await this.#readFunction(name))?.metadata?.uid === uid) {
      throw new KubefnError('INTERNAL', `function "${name}" is still being deleted after ${this.#removeTimeoutMs} ms`, {
        hint: `see what holds it: kubectl -n ${this.namespace} get function,deployment,pods -l ${kubefnLabels.function}=${name}`,
      });
    }
  }

  async list(): Promise<FunctionStatus[]> {
    this.#checkOpen();
    const out: FunctionStatus[] = [];
    for (const fn of this.#functions.cache.list(this.namespace)) {
      const status = this.#statusOf(fn, this.#deployments.cache.get(fn.metadata?.name ?? '', this.namespace));
      if (status) out.push(status);
    }
    return out.sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1));
  }

  async get(name: string): Promise<FunctionStatus> {
    this.#checkOpen();
    const fn = this.#functions.cache.get(name, this.namespace);
    const status = fn && this.#statusOf(fn, this.#deployments.cache.get(name, this.namespace));
    if (!status) throw notFound(name);
    return status;
  }

  async scale(name: string, replicas: number): Promise<void> {
    if (!Number.isInteger(replicas) || replicas < 0) {
      throw new KubefnError('BAD_REQUEST', `invalid replica count ${String(replicas)} for function "${name}"`, {
        hint: 'the replica count must be a whole number, 0 or more',
      });
    }
    this.#checkOpen();
    const fn = this.#functions.cache.get(name, this.namespace) ?? (await this.#readFunction(name));
    if (!fn) throw notFound(name);
    const max = (fn.spec as { scale?: { max?: number } } | undefined)?.scale?.max;
    const target = Math.min(replicas, max ?? replicas);
    const patch = async (): Promise<string | undefined> => {
      const scale = await this.#apps.patchNamespacedDeploymentScale(
        { name, namespace: this.namespace, body: { spec: { replicas: target } }, fieldManager: scaleFieldManager },
        this.#k8s.setHeaderOptions('Content-Type', 'application/merge-patch+json'),
      );
      return scale.metadata?.resourceVersion;
    };
    let resourceVersion: string | undefined;
    try {
      resourceVersion = await patch();
    } catch (err) {
      if (!(isApiError(err, 404))) throw kubeError(err, `scaling function "${name}"`);
      // The Function exists but its Deployment does not yet (or was deleted): reconcile, then scale.
      if (!this.#reconciles) {
        throw new KubefnError('UNAVAILABLE', `function "${name}" has no Deployment yet; its controller has not reconciled it`, {
          hint: `check the controller: kubectl -n ${this.namespace} logs deploy/kubefn-autoscaler`,
        });
      }
      if (!(await this.#schedule(name))) throw notFound(name);
      resourceVersion = await patch().catch((e: unknown) => {
        throw kubeError(e, `scaling function "${name}"`);
      });
    }
    await this.#deployments.caughtUp(name, resourceVersion);
  }

  endpoints(name: string): EndpointSet {
    const set = this.#endpointSets.get(name);
    this.#refreshEndpoints(name);
    return set;
  }

  async *logs(name: string, options: LogOptions, signal: AbortSignal): AsyncIterable<LogLine> {
    this.#checkOpen();
    if (!this.#functions.cache.get(name, this.namespace) && !(await this.#readFunction(name))) throw notFound(name);
    const stop = new AbortController();
    const onAbort = (): void => stop.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    let listeners = this.#goneListeners.get(name);
    if (!listeners) this.#goneListeners.set(name, (listeners = new Set()));
    const gone = (): void => stop.abort(new Error(`function "${name}" was removed`));
    listeners.add(gone);
    try {
      yield* podLogs({ k8s: this.#k8s, kc: this.#kc, core: this.#core, namespace: this.namespace, name, options, signal: stop.signal, onWarning: this.#onWarning });
    } finally {
      signal.removeEventListener('abort', onAbort);
      listeners.delete(gone);
      if (listeners.size === 0) this.#goneListeners.delete(name);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const { timer } of this.#retries.values()) clearTimeout(timer);
    this.#retries.clear();
    for (const set of this.#goneListeners.values()) for (const gone of set) gone();
    for (const probes of this.#pending.values()) for (const p of probes.values()) p.stop.abort();
    this.#pending.clear();
    await Promise.all([this.#functions.stop(), this.#deployments.stop(), this.#slices.stop()]);
    await Promise.allSettled([...this.#running.values()]);
  }

  /**
   * Runs #reconcile(name) after the one running now; calls made while one is queued share it (it
   * reads the objects when it starts, so it sees every change that led to those calls).
   */
  #schedule(name: string): Promise<FunctionStatus | undefined> {
    const queued = this.#queued.get(name);
    if (queued) return queued;
    const previous = this.#running.get(name) ?? Promise.resolve(undefined);
    const next = previous
      .catch(() => undefined)
      .then(() => {
        this.#queued.delete(name);
        return this.#closed ? undefined : this.#reconcileOrRetry(name);
      });
    this.#queued.set(name, next);
    this.#running.set(name, next);
    void next.finally(() => {
      if (this.#running.get(name) === next) this.#running.delete(name);
    }).catch(() => {});
    return next;
  }

  async #reconcileOrRetry(name: string): Promise<FunctionStatus | undefined> {
    try {
      const status = await this.#reconcile(name);
      const retry = this.#retries.get(name);
      if (retry) {
        clearTimeout(retry.timer);
        this.#retries.delete(name);
      }
      return status;
    } catch (err) {
      // Level-triggered: try again later with backoff (1 s doubling to 60 s), whoever asked.
      const delayMs = Math.min((this.#retries.get(name)?.delayMs ?? 500) * 2, 60_000);
      this.#onWarning(`reconciling function "${name}" failed; retrying in ${delayMs} ms`, err);
      clearTimeout(this.#retries.get(name)?.timer);
      const timer = setTimeout(() => void this.#schedule(name).catch(() => {}), delayMs);
      timer.unref();
      this.#retries.set(name, { timer, delayMs });
      throw err;
    }
  }

  /**
   * Brings the Deployment and Service of Function `name` in line with its spec and writes its
   * status. Every write is a server-side apply, so a reconcile with nothing to change changes
   * nothing (no new resourceVersion, no event). Undefined when the Function does not exist.
   */
  async #reconcile(name: string): Promise<FunctionStatus | undefined> {
    const fn = await this.#readFunction(name);
    if (!fn || fn.metadata?.deletionTimestamp) return undefined;
    let spec: FunctionSpec;
    try {
      spec = parseFunctionSpec({ ...(fn.spec as object), name });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const written = await this.#writeStatus(fn, undefined, { reason: 'InvalidSpec', message });
      return this.#statusOf(written, undefined);
    }
    const owner: Owner = { apiVersion: functionApiVersion, kind: 'Function', name, uid: fn.metadata?.uid ?? '' };
    let deployment: V1Deployment;
    try {
      deployment = await this.#applyDeployment(spec, owner);
      await this.#apply(serviceFor(spec, this.namespace, owner));
    } catch (err) {
      const e = kubeError(err, `applying the Deployment and Service of function "${name}"`);
      await this.#writeStatus(fn, undefined, { reason: 'ReconcileFailed', message: e.message }).catch(() => {});
      throw e;
    }
    const written = await this.#writeStatus(fn, deployment);
    await Promise.all([
      this.#functions.caughtUp(name, written.metadata?.resourceVersion),
      this.#deployments.caughtUp(name, deployment.metadata?.resourceVersion),
    ]);
    return this.#statusOf(written, deployment);
  }

  /**
   * Applies the Deployment without spec.replicas, so kubefn's applies never fight the autoscaler.
   * On create replicas must be set (else the API server defaults them to 1), so:
   *   1. absent: apply with replicas = max(min, initial) (kubefn owns the field for a moment);
   *   2. kubefn owns replicas: apply just replicas, at their live value, as `kubefn-replicas`
   *      (without force: a conflict means a scaler already owns it, which is as good);
   *   3. apply without replicas: kubefn gives the field up, and it keeps its value because
   *      another manager (kubefn-replicas, or whoever scaled) still owns it.
   * Step 2 is decided from managedFields, not from memory, so a driver that crashed between
   * steps finishes the hand-over on its next reconcile.
   */
  async #applyDeployment(spec: FunctionSpec, owner: Owner): Promise<V1Deployment> {
    let live = await this.#apps.readNamespacedDeployment({ name: spec.name, namespace: this.namespace }).catch((err: unknown) => {
      if (isApiError(err, 404)) return undefined;
      throw err;
    });
    if (!live) live = await this.#apply(deploymentFor(spec, this.namespace, owner, { replicas: initialReplicas(spec) }));
    if (appliedReplicasOwner(live)) {
      try {
        await this.#apply(
          { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: spec.name, namespace: this.namespace }, spec: { replicas: live.spec?.replicas ?? 0 } } as KubernetesObject,
          { manager: replicasFieldManager, force: false },
        );
      } catch (err) {
        if (!(isApiError(err, 409))) throw err;
      }
    }
    return this.#apply(deploymentFor(spec, this.namespace, owner));
  }

  #apply<T extends KubernetesObject>(object: T, options: { manager?: string; force?: boolean } = {}): Promise<T> {
    return this.#objects.patch(object, undefined, undefined, options.manager ?? fieldManager, options.force ?? true, applyPatchType);
  }

  /** Applies the Function's status (only kubefn's fields) unless it already reads the same. */
  async #writeStatus(fn: FunctionResource, deployment: V1Deployment | undefined, failure?: { reason: string; message: string }): Promise<FunctionResource> {
    const name = fn.metadata?.name ?? '';
    const previous = fn.status ?? {};
    const spec = fn.spec as { image?: string } | undefined;
    const digest = imageDigest(spec?.image);
    const status: FunctionResourceStatus = {
      observedGeneration: fn.metadata?.generation ?? 0,
      replicas: deployment?.spec?.replicas ?? previous.replicas ?? 0,
      readyReplicas: deployment?.status?.readyReplicas ?? (failure ? (previous.readyReplicas ?? 0) : 0),
      ...(digest ? { imageDigest: digest } : {}),
      url: `http://${name}.${this.namespace}.svc:${servicePort}`,
      conditions: [readyCondition(previous, deployment, failure, new Date())],
    };
    if (sameStatus(previous, status)) return fn;
    const written = (await this.#custom.patchNamespacedCustomObjectStatus(
      {
        group: crdGroup,
        version: crdVersion,
        namespace: this.namespace,
        plural: 'functions',
        name,
        body: { apiVersion: functionApiVersion, kind: 'Function', metadata: { name, namespace: this.namespace }, status },
        fieldManager,
        force: true,
      },
      this.#k8s.setHeaderOptions('Content-Type', applyPatchType),
    )) as FunctionResource;
    return written;
  }

  #statusOf(fn: FunctionResource, deployment: V1Deployment | undefined): FunctionStatus | undefined {
    return functionStatusOf(fn, deployment);
  }

  async #readFunction(name: string): Promise<FunctionResource | undefined> {
    try {
      return (await this.#custom.getNamespacedCustomObject({
        group: crdGroup,
        version: crdVersion,
        namespace: this.namespace,
        plural: 'functions',
        name,
      })) as FunctionResource;
    } catch (err) {
      if (isApiError(err, 404)) return undefined;
      throw kubeError(err, `reading Function "${name}"`);
    }
  }

  #refreshEndpoints(name: string): void {
    const slices = this.#slices.cache.list(this.namespace).filter((s) => s.metadata?.labels?.[serviceNameLabel] === name);
    const set = this.#endpointSets.get(name);
    let next = endpointsOf(slices);
    if (this.#probePending) {
      const probed = this.#trackPending(name, pendingEndpointsOf(slices));
      if (probed.length) next = [...next, ...probed].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    }
    if (!sameEndpoints(set.current(), next)) set.set(next);
  }

  /**
   * Starts probing pods that became pending, stops for those that are no longer (ready per their
   * slice, terminating or gone), and returns the pending ones whose own probe says ready.
   */
  #trackPending(name: string, pending: Endpoint[]): Endpoint[] {
    const probes = this.#pending.get(name) ?? new Map<string, PendingProbe>();
    for (const [id, p] of probes) {
      if (!pending.some((e) => e.id === id && e.adminUrl === p.endpoint.adminUrl)) {
        p.stop.abort();
        probes.delete(id);
      }
    }
    for (const endpoint of pending) {
      if (probes.has(endpoint.id)) continue;
      const probe: PendingProbe = { endpoint, readyUntil: 0, stop: new AbortController() };
      probes.set(endpoint.id, probe);
      void this.#probeUntilReady(name, probe);
    }
    if (probes.size) this.#pending.set(name, probes);
    else this.#pending.delete(name);
    const now = Date.now();
    return [...probes.values()].filter((p) => p.readyUntil > now).map((p) => p.endpoint);
  }

  /** GET /readyz every 50 ms (for at most 60 s) until it answers 200, then refreshes the endpoints. */
  async #probeUntilReady(name: string, probe: PendingProbe): Promise<void> {
    const { signal } = probe.stop;
    const deadline = Date.now() + 60_000;
    while (!signal.aborted && Date.now() < deadline) {
      try {
        const res = await fetch(`${probe.endpoint.adminUrl}${adminPaths.ready}`, { signal: AbortSignal.any([signal, AbortSignal.timeout(1000)]) });
        await res.body?.cancel();
        if (res.ok) {
          probe.readyUntil = Date.now() + this.#probedReadyMs;
          this.#refreshEndpoints(name);
          // When the slice has not confirmed it by then, stop counting on the probe.
          setTimeout(() => {
            if (!signal.aborted) this.#refreshEndpoints(name);
          }, this.#probedReadyMs + 10).unref();
          return;
        }
      } catch {
        // not listening yet
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
      });
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new KubefnError('SHUTTING_DOWN', 'the kubernetes driver is closed');
  }
}

function loadKubeConfig(k8s: KubernetesClient, kubeconfig: KubeConfig | string | undefined): KubeConfig {
  if (typeof kubeconfig === 'object') return kubeconfig;
  const kc = new k8s.KubeConfig();
  if (typeof kubeconfig === 'string') kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  return kc;
}

/** Whether kubefn's own apply (not a scaler, not the hand-over manager) owns spec.replicas. */
function appliedReplicasOwner(d: V1Deployment): boolean {
  return (d.metadata?.managedFields ?? []).some((m) => {
    const fields = m.fieldsV1 as { 'f:spec'?: { 'f:replicas'?: unknown } } | undefined;
    return m.manager === fieldManager && m.operation === 'Apply' && !m.subresource && fields?.['f:spec']?.['f:replicas'] !== undefined;
  });
}

function sameStatus(a: FunctionResourceStatus, b: FunctionResourceStatus): boolean {
  return JSON.stringify(normalize(a)) === JSON.stringify(normalize(b));
}

function normalize(s: FunctionResourceStatus): unknown {
  return {
    observedGeneration: s.observedGeneration,
    replicas: s.replicas,
    readyReplicas: s.readyReplicas,
    imageDigest: s.imageDigest,
    url: s.url,
    conditions: (s.conditions ?? []).map((c) => ({ ...c, lastTransitionTime: new Date(c.lastTransitionTime).toISOString() })),
  };
}

function notFound(name: string): KubefnError {
  return new KubefnError('NOT_FOUND', `function "${name}" not found`, { hint: 'list functions with `fn list`' });
}
