// The `kubernetes` driver: a function is a Function custom resource (the source of truth, so
// `kubectl apply` and GitOps work without the CLI), which the Function controller (reconciler.ts)
// turns into a Deployment and a Service; endpoints come from EndpointSlices, scaling from the
// Deployment's scale subresource, logs from the pods. The driver is the client of those objects;
// what a process composes around it (the controller, the pending-pod prober) is the caller's
// choice: see open() for all in one process, and server/'s components for the cluster.

import type { KubernetesObject } from '@kubernetes/client-node';
import type { Driver, EndpointSet, FunctionStatus, LogLine, LogOptions } from '../driver.js';
import { EndpointSets } from '../endpoint-sets.js';
import { KubefnError } from '../errors.js';
import { readSpecSecrets } from '../secrets.js';
import type { FunctionSpec } from '../spec.js';
import { crdGroup, crdVersion } from '../crd.js';
import { endpointsOf, pendingEndpointsOf, sameEndpoints } from './endpoints.js';
import { podLogs } from './logs.js';
import { kubefnLabels, managedBy, serviceNameLabel } from './manifests.js';
import { isApiError, kubeError } from './errors.js';
import { applyPatchType, fieldManager, functionApiVersion, KubefnObjects, type KubefnObjectsOptions } from './objects.js';
import type { PendingPodProber } from './pending-prober.js';
import type { WarmPods } from './warm-pods.js';
import type { FunctionEventRecorder } from './events.js';
import { checkPlacement, type PlacementAllowlist } from './placement.js';
import { FunctionReconciler } from './reconciler.js';
import { KubernetesSecretStore } from './secrets.js';
import { functionStatusOf, loadErrorOf, unschedulableOf, type FunctionResource } from './status.js';
import { rolloutState } from '../rollout.js';

export interface KubernetesDriverOptions {
  /**
   * The Function controller of this process, when it runs one: deploy() then waits for its
   * reconcile. Without one, another process reconciles (the autoscaler's pod in a cluster), and
   * deploy() waits for the Function's status.observedGeneration to catch up.
   */
  reconciler?: FunctionReconciler;
  /** Routes to pods the kubelet has not reported ready yet once their own probe answers (the gateway). */
  prober?: PendingPodProber;
  /** Longest remove() waits for the Function and its dependents to go, in ms (default 120000). */
  removeTimeoutMs?: number;
  /** Longest deploy() waits for another process's controller to pick a Function up, ms (default 60000). */
  controllerTimeoutMs?: number;
  /** Kubernetes Events about the Functions this driver scales (a Scaled event per change). */
  events?: FunctionEventRecorder;
  /** The node placement functions may ask for (kubefn-config); a deploy asking for more is refused. */
  placement?: PlacementAllowlist;
  /**
   * The warm pool's pods (the gateway): a function with no ready pod of its own is routed to the
   * pool pod claimed for it, and status.coldStart says whether the pool can take a function.
   */
  warmPods?: WarmPods;
}

/** The field manager of scale(): an update of the scale subresource. */
export const scaleFieldManager = 'kubefn-scale';

export class KubernetesDriver implements Driver {
  readonly kind = 'kubernetes';
  readonly namespace: string;
  /** Secrets as labelled Secrets in the functions' namespace. */
  readonly secrets: KubernetesSecretStore;
  readonly #o: KubefnObjects;
  readonly #reconciler: FunctionReconciler | undefined;
  readonly #prober: PendingPodProber | undefined;
  readonly #warmPods: WarmPods | undefined;
  readonly #removeTimeoutMs: number;
  readonly #controllerTimeoutMs: number;
  readonly #events: FunctionEventRecorder | undefined;
  readonly #placement: PlacementAllowlist;
  readonly #endpointSets: EndpointSets;
  /** Unschedulable pods per function with replicas starting: the last count read, and when. */
  readonly #unschedulable = new Map<string, { count: number; at: number; reading: boolean }>();
  /** Log followers to end when their function goes. */
  readonly #goneListeners = new Map<string, Set<() => void>>();
  /** What close() also closes: the parts open() composed for this driver alone. */
  readonly #owned: (() => Promise<void>)[] = [];
  #unsubscribe: (() => void) | undefined;
  #closed = false;

  constructor(objects: KubefnObjects, options: KubernetesDriverOptions = {}) {
    this.#o = objects;
    this.namespace = objects.namespace;
    this.secrets = new KubernetesSecretStore(objects.core, objects.namespace);
    this.#reconciler = options.reconciler;
    this.#prober = options.prober;
    this.#warmPods = options.warmPods;
    this.#removeTimeoutMs = options.removeTimeoutMs ?? 120_000;
    this.#controllerTimeoutMs = options.controllerTimeoutMs ?? 60_000;
    this.#events = options.events;
    this.#placement = options.placement ?? {};
    this.#endpointSets = new EndpointSets((name) => objects.cachedFunction(name) !== undefined);
    objects.functions.on('delete', (fn) => {
      for (const gone of this.#goneListeners.get(fn.metadata?.name ?? '') ?? []) gone();
    });
    const ofSlice = (s: { metadata?: { labels?: Record<string, string> } }): void => {
      const name = s.metadata?.labels?.[serviceNameLabel];
      if (name && !this.#closed) this.#refreshEndpoints(name);
    };
    objects.slices.on('add', ofSlice);
    objects.slices.on('update', ofSlice);
    objects.slices.on('delete', ofSlice);
    const refresh = (name: string): void => {
      if (!this.#closed) this.#refreshEndpoints(name);
    };
    const unsubscribe = [this.#prober?.subscribe(refresh), this.#warmPods?.subscribe(refresh)];
    this.#unsubscribe = () => unsubscribe.forEach((u) => u?.());
  }

  /**
   * The driver, its objects and a Function controller, all in this process: what a single
   * process that both serves and reconciles uses (the tests, tools). close() closes all three.
   */
  static async open(options: KubefnObjectsOptions & Omit<KubernetesDriverOptions, 'reconciler'>): Promise<KubernetesDriver> {
    const objects = await KubefnObjects.open({ watchServices: true, ...options });
    const reconciler = new FunctionReconciler(objects);
    const driver = new KubernetesDriver(objects, { ...options, reconciler });
    driver.#owned.push(() => reconciler.close(), () => objects.stop());
    return driver;
  }

  async deploy(spec: FunctionSpec): Promise<FunctionStatus> {
    this.#checkOpen();
    checkPlacement(spec, this.#placement);
    // A pod naming a missing Secret would wait in ContainerCreating: say so now instead.
    await readSpecSecrets(this.secrets, spec);
    const { name: _name, ...fields } = spec;
    let applied: FunctionResource;
    try {
      applied = (await this.#o.objects.patch(
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
      )) as FunctionResource;
    } catch (err) {
      throw kubeError(err, `applying Function "${spec.name}"`);
    }
    const status = this.#reconciler ? await this.#reconciler.reconcile(spec.name, applied.metadata?.generation) : await this.#reconciledBy(applied);
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
      const fn = this.#o.cachedFunction(name);
      return fn?.metadata?.uid === uid ? fn : undefined;
    };
    const seen = await this.#o.functions.until(() => (current()?.status?.observedGeneration ?? -1) >= generation, this.#controllerTimeoutMs);
    const late = seen
      ? undefined
      : `function "${name}" was applied but no controller reconciled it within ${this.#controllerTimeoutMs} ms (not reconciled yet); is kubefn-autoscaler running?`;
    if (late) this.#o.onWarning(late);
    const fn = current() ?? (await this.#o.readFunction(name));
    const status = fn && this.#statusOf(fn);
    return status && late ? { ...status, notReconciled: late } : status;
  }

  async remove(name: string): Promise<void> {
    this.#checkOpen();
    const fn = await this.#o.readFunction(name);
    if (!fn) throw notFound(name);
    try {
      // Foreground: the garbage collector deletes the Deployment (and its pods) and the Service
      // before the Function itself goes, so "gone" means the replicas are stopped.
      await this.#o.custom.deleteNamespacedCustomObject({
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
    const gone = await this.#o.functions.until(() => this.#o.cachedFunction(name)?.metadata?.uid !== uid, this.#removeTimeoutMs);
    if (!gone && (await this.#o.readFunction(name))?.metadata?.uid === uid) {
      throw new KubefnError('INTERNAL', `function "${name}" is still being deleted after ${this.#removeTimeoutMs} ms`, {
        hint: `see what holds it: kubectl -n ${this.namespace} get function,deployment,pods -l ${kubefnLabels.function}=${name}`,
      });
    }
  }

  async list(): Promise<FunctionStatus[]> {
    this.#checkOpen();
    const out: FunctionStatus[] = [];
    const live = new Set<string>();
    for (const fn of this.#o.functions.cache.list(this.namespace)) {
      const status = this.#statusOf(fn);
      if (!status) continue;
      live.add(status.spec.name);
      const unschedulable = this.#unschedulableOf(status);
      if (unschedulable) status.unschedulable = unschedulable;
      out.push(status);
    }
    for (const name of this.#unschedulable.keys()) if (!live.has(name)) this.#unschedulable.delete(name);
    return out.sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1));
  }

  /**
   * Pods the scheduler could not place, for a function with replicas not ready: the last count
   * read, refreshed in the background at most every 5 s (no informer holds pods), so a list stays
   * a cache read. A function with every replica ready has none.
   */
  #unschedulableOf(status: FunctionStatus): number | undefined {
    const name = status.spec.name;
    if (status.replicas <= status.readyReplicas) {
      this.#unschedulable.delete(name);
      return undefined;
    }
    const now = Date.now();
    let entry = this.#unschedulable.get(name);
    if (!entry) this.#unschedulable.set(name, (entry = { count: 0, at: 0, reading: false }));
    if (!entry.reading && now - entry.at >= 5000) {
      const e = entry;
      e.reading = true;
      this.#o.core
        .listNamespacedPod({ namespace: this.namespace, labelSelector: `${kubefnLabels.function}=${name}` })
        .then((pods) => {
          e.count = unschedulableOf(pods.items);
        })
        .catch((err: unknown) => this.#o.onWarning(`cannot read the pods of function "${name}" for unschedulable ones`, err))
        .finally(() => {
          e.at = Date.now();
          e.reading = false;
        });
    }
    return entry.count;
  }

  /** Read from the API server: the informer's cache may not have seen a create or delete yet. */
  async exists(name: string): Promise<boolean> {
    this.#checkOpen();
    return (await this.#o.readFunction(name)) !== undefined;
  }

  /** The status; while a rollout waits for replicas, also the current spec's load error from its pods. */
  async get(name: string): Promise<FunctionStatus> {
    this.#checkOpen();
    const fn = this.#o.cachedFunction(name);
    const status = fn && this.#statusOf(fn);
    if (!status) throw notFound(name);
    await this.#addLoadError(status);
    return status;
  }

  /**
   * Reads the function's pods only while the rollout of its applied spec is waiting for ready
   * replicas (a pod crash moves neither the Deployment nor the Function, so no cache holds it).
   * A failed read leaves the status without it: the wait then ends at its deadline, as before.
   */
  async #addLoadError(status: FunctionStatus): Promise<void> {
    const name = status.spec.name;
    const deployment = this.#o.cachedDeployment(name);
    if (!deployment || status.replicas === 0) return;
    const rollout = rolloutState({
      replicas: status.replicas,
      readyReplicas: status.readyReplicas,
      updatedReplicas: status.updatedReplicas ?? 0,
      generation: status.generation ?? 0,
      observedGeneration: status.observedGeneration ?? 0,
    });
    if (rollout.state !== 'progressing' || (status.observedGeneration ?? 0) < (status.generation ?? 0)) return;
    try {
      const pods = await this.#o.core.listNamespacedPod({ namespace: this.namespace, labelSelector: `${kubefnLabels.function}=${name}` });
      const loadError = loadErrorOf(name, deployment, pods.items);
      if (loadError) {
        status.loadError = loadError;
        status.lastError ??= loadError;
      }
    } catch (err) {
      this.#o.onWarning(`cannot read the pods of function "${name}" for its load error`, err);
    }
  }

  async scale(name: string, replicas: number): Promise<void> {
    if (!Number.isInteger(replicas) || replicas < 0) {
      throw new KubefnError('BAD_REQUEST', `invalid replica count ${String(replicas)} for function "${name}"`, {
        hint: 'the replica count must be a whole number, 0 or more',
      });
    }
    this.#checkOpen();
    const fn = this.#o.cachedFunction(name) ?? (await this.#o.readFunction(name));
    if (!fn) throw notFound(name);
    const max = (fn.spec as { scale?: { max?: number } } | undefined)?.scale?.max;
    const target = Math.min(replicas, max ?? replicas);
    const patch = async (): Promise<string | undefined> => {
      const scale = await this.#o.apps.patchNamespacedDeploymentScale(
        { name, namespace: this.namespace, body: { spec: { replicas: target } }, fieldManager: scaleFieldManager },
        this.#o.k8s.setHeaderOptions('Content-Type', 'application/merge-patch+json'),
      );
      return scale.metadata?.resourceVersion;
    };
    const from = this.#o.cachedDeployment(name)?.spec?.replicas;
    let resourceVersion: string | undefined;
    try {
      resourceVersion = await patch();
    } catch (err) {
      if (!isApiError(err, 404)) throw kubeError(err, `scaling function "${name}"`);
      // The Function exists but its Deployment does not yet (or was deleted): reconcile, then scale.
      if (!this.#reconciler) {
        throw new KubefnError('UNAVAILABLE', `function "${name}" has no Deployment yet; its controller has not reconciled it`, {
          hint: "check the controller: kubectl logs deploy/kubefn-autoscaler in the platform's namespace",
        });
      }
      if (!(await this.#reconciler.reconcile(name))) throw notFound(name);
      resourceVersion = await patch().catch((e: unknown) => {
        throw kubeError(e, `scaling function "${name}"`);
      });
    }
    if (from !== target) {
      this.#events?.record({ name, uid: fn.metadata?.uid }, 'Normal', 'Scaled', `scaled from ${from ?? 'none'} to ${target} replica(s)`);
    }
    await this.#o.deployments.caughtUp(name, resourceVersion);
  }

  endpoints(name: string): EndpointSet {
    const set = this.#endpointSets.get(name);
    this.#refreshEndpoints(name);
    return set;
  }

  async *logs(name: string, options: LogOptions, signal: AbortSignal): AsyncIterable<LogLine> {
    this.#checkOpen();
    if (!this.#o.cachedFunction(name) && !(await this.#o.readFunction(name))) throw notFound(name);
    const stop = new AbortController();
    const onAbort = (): void => stop.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    let listeners = this.#goneListeners.get(name);
    if (!listeners) this.#goneListeners.set(name, (listeners = new Set()));
    const gone = (): void => stop.abort(new Error(`function "${name}" was removed`));
    listeners.add(gone);
    try {
      const { k8s, kc, core, onWarning } = this.#o;
      yield* podLogs({ k8s, kc, core, namespace: this.namespace, name, options, signal: stop.signal, onWarning });
    } finally {
      signal.removeEventListener('abort', onAbort);
      listeners.delete(gone);
      if (listeners.size === 0) this.#goneListeners.delete(name);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe?.();
    for (const set of this.#goneListeners.values()) for (const gone of set) gone();
    for (const close of this.#owned) await close();
  }

  /** The function's status; undefined for a Function whose spec kubefn cannot run (its status says why). */
  #statusOf(fn: FunctionResource): FunctionStatus | undefined {
    const spec = this.#o.specOf(fn);
    if (spec instanceof Error) return undefined;
    const name = fn.metadata?.name ?? '';
    const status = functionStatusOf(fn, spec, this.#o.cachedDeployment(name));
    // The Deployment may count an old pod gone before its EndpointSlice says so: until then it is
    // still routable and may answer, so it counts as a ready replica that does not run the new spec.
    const routable = endpointsOf(this.#slicesOf(name)).length;
    if (routable > status.readyReplicas) status.readyReplicas = routable;
    if (this.#warmPods) status.coldStart = this.#warmPods.coldStartPath(spec);
    return status;
  }

  #slicesOf(name: string) {
    return this.#o.slices.cache.list(this.namespace).filter((s) => s.metadata?.labels?.[serviceNameLabel] === name);
  }

  #refreshEndpoints(name: string): void {
    const slices = this.#slicesOf(name);
    const set = this.#endpointSets.get(name);
    let next = endpointsOf(slices);
    if (this.#prober) {
      const probed = this.#prober.track(name, pendingEndpointsOf(slices));
      if (probed.length) next = [...next, ...probed].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    }
    if (this.#warmPods) {
      // A pool pod serves the function only until a pod of its own is ready.
      if (next.length) this.#warmPods.handOver(name);
      else next = this.#warmPods.servingFor(name);
    }
    if (!sameEndpoints(set.current(), next)) set.set(next);
  }

  #checkOpen(): void {
    if (this.#closed) throw new KubefnError('SHUTTING_DOWN', 'the kubernetes driver is closed');
  }
}

function notFound(name: string): KubefnError {
  return new KubefnError('NOT_FOUND', `function "${name}" not found`, { hint: 'list functions with `fn list`' });
}
