// Loads @kubernetes/client-node on demand, so importing @kubefn/platform (the CLI, the gateway,
// every test) does not pay for the client unless a kubernetes driver is opened.

type KubernetesClient = typeof import('@kubernetes/client-node');

let loading: Promise<KubernetesClient> | undefined;

/**
 * The client module, loaded once. kubefn pins @kubernetes/client-node 1.x: 2.x depends on
 * undici 8, which needs Node >= 22.19 and fails to load on Node 20.
 */
export function loadKubernetesClient(): Promise<KubernetesClient> {
  loading ??= import('@kubernetes/client-node');
  return loading;
}

export type { KubernetesClient };
