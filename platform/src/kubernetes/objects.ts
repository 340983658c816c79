// The kubefn objects of one namespace as the driver, the Function reconciler and the pending-pod
// prober see them: the API clients, and informer caches of Functions, kubefn's Deployments and
// their EndpointSlices. One KubefnObjects is shared by whatever a process composes from it (the
// gateway: driver + prober; the autoscaler's pod: driver + reconciler), so each object is listed
// and watched once per process.

import type {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  V1Deployment,
  V1EndpointSlice,
  V1Service,
} from '@kubernetes/client-node';
import { crdGroup, crdVersion } from '../crd.js';
import { KubefnError } from '../errors.js';
import { parseFunctionSpec, type FunctionSpec } from '../spec.js';
import { loadKubernetesClient, withApiTimeout, type KubernetesClient } from './client.js';
import { isApiError, kubeError } from './errors.js';
import { KeptInformer, watchedInformer } from './informers.js';
import { kubefnLabels, managedBy, serviceNameLabel } from './manifests.js';
import type { FunctionResource } from './status.js';

export interface KubefnObjectsOptions {
  /** A loaded KubeConfig, or the path of a kubeconfig file; default: KUBECONFIG, ~/.kube/config or in-cluster. */
  kubeconfig?: KubeConfig | string;
  /** Where Functions, Deployments and Services live. */
  namespace: string;
  /** Hears about failures that are recovered from (a watch restarting, a reconcile to retry). */
  onWarning?: (message: string, err?: unknown) => void;
  /**
   * Also watch kubefn's Services (the controller: a deleted or edited one is reconciled back at
   * once). Off for the gateways, whose role may not list Services.
   */
  watchServices?: boolean;
}

/** The field manager of everything kubefn applies. */
export const fieldManager = 'kubefn';
/** Content-Type of a server-side apply (PatchStrategy.ServerSideApply). */
export const applyPatchType = 'application/apply-patch+yaml';

/**
 * `object` (a manifest as its YAML reads) made safe for client-node's serializer, which sends
 * only the fields its model names and names a few of them differently: a NetworkPolicy rule's
 * `from` is `_from`, a CRD schema's `default` and `enum` are `_default` and `_enum`. Without
 * this, KubernetesObjectApi.patch() drops them: an ingress rule allowing only the gateways
 * became one allowing everyone. Every nested key `k` gets a non-enumerable alias `_k` (where
 * none exists), which the serializer reads where its model says `_k` and nothing else sees.
 */
export function withModelAliases<T>(object: T): T {
  const seen = new Set<object>();
  const visit = (value: unknown): void => {
    if (typeof value !== 'object' || value === null || seen.has(value)) return;
    seen.add(value);
    if (Array.isArray(value)) {
      for (const item of value) visit(item);
      return;
    }
    for (const key of Object.keys(value)) {
      const child = (value as Record<string, unknown>)[key];
      if (!key.startsWith('_') && !Object.prototype.hasOwnProperty.call(value, `_${key}`)) {
        Object.defineProperty(value, `_${key}`, { value: child, enumerable: false, configurable: true });
      }
      visit(child);
    }
  };
  visit(object);
  return object;
}
export const functionApiVersion = `${crdGroup}/${crdVersion}`;

export class KubefnObjects {
  readonly namespace: string;
  readonly k8s: KubernetesClient;
  readonly kc: KubeConfig;
  readonly objects: KubernetesObjectApi;
  readonly apps: AppsV1Api;
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  readonly onWarning: (message: string, err?: unknown) => void;
  readonly functions: KeptInformer<FunctionResource>;
  readonly deployments: KeptInformer<V1Deployment>;
  readonly slices: KeptInformer<V1EndpointSlice>;
  /** kubefn's Services, with `watchServices`. */
  readonly services: KeptInformer<V1Service> | undefined;
  /**
   * Each cached Function's spec, parsed once per object version: the informer replaces the
   * object on every change, so keying on the object itself parses a spec where it enters and
   * never again on a get or a list.
   */
  readonly #specs = new WeakMap<FunctionResource, FunctionSpec | Error>();
  #stopped = false;

  /** Use open(); `client` is what loadKubernetesClient() resolves to. */
  constructor(options: KubefnObjectsOptions, client: KubernetesClient) {
    const k8s = (this.k8s = client);
    this.namespace = options.namespace;
    this.kc = loadKubeConfig(k8s, options.kubeconfig);
    this.objects = k8s.KubernetesObjectApi.makeApiClient(this.kc);
    this.apps = this.kc.makeApiClient(k8s.AppsV1Api);
    this.core = this.kc.makeApiClient(k8s.CoreV1Api);
    this.custom = this.kc.makeApiClient(k8s.CustomObjectsApi);
    const discovery = this.kc.makeApiClient(k8s.DiscoveryV1Api);
    const warn = (this.onWarning = options.onWarning ?? (() => {}));
    const ns = this.namespace;
    const selector = `${kubefnLabels.managedBy}=${managedBy}`;
    this.functions = new KeptInformer(
      watchedInformer<FunctionResource>(
        k8s,
        this.kc,
        `/apis/${crdGroup}/${crdVersion}/namespaces/${ns}/functions`,
        () => this.custom.listNamespacedCustomObject({ group: crdGroup, version: crdVersion, namespace: ns, plural: 'functions' }),
      ),
      { what: `functions in ${ns}`, namespace: ns, onWarning: warn },
    );
    this.deployments = new KeptInformer(
      watchedInformer<V1Deployment>(
        k8s,
        this.kc,
        `/apis/apps/v1/namespaces/${ns}/deployments`,
        () => this.apps.listNamespacedDeployment({ namespace: ns, labelSelector: selector }),
        { labelSelector: selector },
      ),
      { what: `deployments in ${ns}`, namespace: ns, onWarning: warn },
    );
    // The EndpointSlice controller copies a Service's labels onto its slices, so the slices of
    // kubefn's Services carry managed-by=kubefn next to kubernetes.io/service-name.
    const sliceSelector = `${selector},${serviceNameLabel}`;
    this.slices = new KeptInformer(
      watchedInformer<V1EndpointSlice>(
        k8s,
        this.kc,
        `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`,
        () => discovery.listNamespacedEndpointSlice({ namespace: ns, labelSelector: sliceSelector }),
        { labelSelector: sliceSelector },
      ),
      { what: `endpointslices in ${ns}`, namespace: ns, onWarning: warn },
    );
    this.services = options.watchServices
      ? new KeptInformer(
          watchedInformer<V1Service>(
            k8s,
            this.kc,
            `/api/v1/namespaces/${ns}/services`,
            () => this.core.listNamespacedService({ namespace: ns, labelSelector: selector }),
            { labelSelector: selector },
          ),
          { what: `services in ${ns}`, namespace: ns, onWarning: warn },
        )
      : undefined;
  }

  /** Objects whose caches hold the namespace's Functions, Deployments and EndpointSlices. */
  static async open(options: KubefnObjectsOptions): Promise<KubefnObjects> {
    const objects = new KubefnObjects(options, await loadKubernetesClient());
    await objects.start();
    return objects;
  }

  /** Starts the informers and waits for their first list; stops them all when one fails. */
  async start(): Promise<void> {
    try {
      await Promise.all([this.functions.start(), this.deployments.start(), this.slices.start(), this.services?.start()]);
    } catch (err) {
      await this.stop();
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

  get stopped(): boolean {
    return this.#stopped;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await Promise.all([this.functions.stop(), this.deployments.stop(), this.slices.stop(), this.services?.stop()]);
  }

  /** The cached Function `name`, else undefined. */
  cachedFunction(name: string): FunctionResource | undefined {
    return this.functions.cache.get(name, this.namespace);
  }

  cachedDeployment(name: string): V1Deployment | undefined {
    return this.deployments.cache.get(name, this.namespace);
  }

  /** Function `name` read from the API server (not the cache); undefined when there is none. */
  async readFunction(name: string): Promise<FunctionResource | undefined> {
    try {
      return (await this.custom.getNamespacedCustomObject({
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

  /**
   * The validated spec of a Function object (parseFunctionSpec, once per object version), or the
   * INVALID_SPEC error it fails with: a Function applied with kubectl can hold what the CRD's
   * schema lets through and kubefn's own rules do not.
   */
  specOf(fn: FunctionResource): FunctionSpec | Error {
    let spec = this.#specs.get(fn);
    if (spec === undefined) {
      try {
        spec = parseFunctionSpec({ ...(fn.spec as object), name: fn.metadata?.name ?? '' });
      } catch (err) {
        spec = err instanceof Error ? err : new Error(String(err));
      }
      this.#specs.set(fn, spec);
    }
    return spec;
  }
}

function loadKubeConfig(k8s: KubernetesClient, kubeconfig: KubeConfig | string | undefined): KubeConfig {
  if (typeof kubeconfig === 'object') return withApiTimeout(kubeconfig);
  const kc = new k8s.KubeConfig();
  if (typeof kubeconfig === 'string') kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  return withApiTimeout(kc);
}
