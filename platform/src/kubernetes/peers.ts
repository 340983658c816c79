// The ready pods behind one of the platform's own Services, from its EndpointSlices: how kubefn's
// components find each other in a cluster. The autoscaler needs every gateway replica (a Service's
// virtual IP would pick one), and reading slices needs no cluster DNS or kube-proxy on the node.

import type { KubeConfig, V1EndpointSlice } from '@kubernetes/client-node';
import { loadKubernetesClient } from './client.js';
import { sliceAddresses } from './endpoints.js';
import { KeptInformer, watchedInformer } from './informers.js';
import { serviceNameLabel } from './manifests.js';

export interface Peer {
  /** The pod's name, or its address when the slice names no pod. */
  id: string;
  /** http://address:port of the named port. */
  url: string;
}

export interface ServicePeersOptions {
  kubeconfig: KubeConfig;
  namespace: string;
  /** The Service whose pods are wanted. */
  service: string;
  /** The name of the port in the Service (e.g. "http"). */
  port: string;
  onWarning?: (message: string, err?: unknown) => void;
}

export class ServicePeers {
  readonly #informer: KeptInformer<V1EndpointSlice>;
  readonly #options: ServicePeersOptions;

  private constructor(informer: KeptInformer<V1EndpointSlice>, options: ServicePeersOptions) {
    this.#informer = informer;
    this.#options = options;
  }

  /** Watches the Service's slices; resolves after the first list. */
  static async open(options: ServicePeersOptions): Promise<ServicePeers> {
    const k8s = await loadKubernetesClient();
    const discovery = options.kubeconfig.makeApiClient(k8s.DiscoveryV1Api);
    const selector = `${serviceNameLabel}=${options.service}`;
    const informer = new KeptInformer(
      watchedInformer<V1EndpointSlice>(
        k8s,
        options.kubeconfig,
        `/apis/discovery.k8s.io/v1/namespaces/${options.namespace}/endpointslices`,
        () => discovery.listNamespacedEndpointSlice({ namespace: options.namespace, labelSelector: selector }),
        { labelSelector: selector },
      ),
      { what: `endpointslices of service ${options.service}`, namespace: options.namespace, onWarning: options.onWarning ?? (() => {}) },
    );
    await informer.start();
    return new ServicePeers(informer, options);
  }

  /** The ready peers now, sorted by id. */
  list(): Peer[] {
    return peersOf(this.#informer.cache.list(this.#options.namespace), this.#options.port);
  }

  /** Calls `listener` after every change to the Service's slices; list() then has the new peers. */
  onChange(listener: () => void): void {
    for (const verb of ['add', 'update', 'delete'] as const) this.#informer.on(verb, () => listener());
  }

  /** Resolves once at least one peer is ready (true), or after timeoutMs (false). */
  async any(timeoutMs: number): Promise<boolean> {
    return this.#informer.until(() => this.list().length > 0, timeoutMs);
  }

  close(): Promise<void> {
    return this.#informer.stop();
  }
}

/** Ready endpoints of the slices on the port named `port`; an unset `ready` counts as ready. */
export function peersOf(slices: readonly V1EndpointSlice[], port: string): Peer[] {
  return sliceAddresses(slices, (e) => e.conditions?.ready !== false).flatMap(({ id, host, slice }) => {
    const number = slice.ports?.find((p) => p.name === port)?.port;
    return number === undefined ? [] : [{ id, url: `http://${host}:${number}` }];
  });
}
