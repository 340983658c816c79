// One ConfigMap, watched: its data now, and a callback on every change (a deletion included), for
// settings a component applies while it runs (the kubefn-autoscaler ConfigMap).

import type { KubeConfig, V1ConfigMap } from '@kubernetes/client-node';
import { loadKubernetesClient } from './client.js';
import { KeptInformer, watchedInformer } from './informers.js';

export interface ConfigMapWatchOptions {
  kubeconfig: KubeConfig;
  namespace: string;
  name: string;
  /**
   * Each watch asks the API server to end it after this long, s (default 300), and is started
   * again from the last resource version: a connection that silently died (a proxy, a node
   * gone) is found within this time instead of never.
   */
  timeoutSeconds?: number;
  /** A watch that failed and restarts with backoff (KeptInformer). */
  onWarning?: (message: string, err?: unknown) => void;
  /** First pause before restarting a failed watch, ms (default 500); doubles up to maxBackoffMs. */
  minBackoffMs?: number;
  /** Longest pause before restarting a failed watch, ms, before jitter (default 5000). */
  maxBackoffMs?: number;
}

/**
 * The ConfigMap `name`, listed and watched through a field selector on its name (so RBAC may
 * grant get, list and watch on that one name). A watch that ends is started again at once; one
 * that fails, after a growing pause (KeptInformer).
 */
export class ConfigMapWatch {
  readonly #informer: KeptInformer<V1ConfigMap>;
  readonly #options: ConfigMapWatchOptions;
  readonly #counts: { watches: number };

  private constructor(informer: KeptInformer<V1ConfigMap>, options: ConfigMapWatchOptions, counts: { watches: number }) {
    this.#informer = informer;
    this.#options = options;
    this.#counts = counts;
  }

  /** Watch requests made so far: one per watch the API server ended or that failed, plus the first. */
  get watchesStarted(): number {
    return this.#counts.watches;
  }

  /** Lists and starts watching; throws what the first list failed with (no RBAC, no API server). */
  static async open(options: ConfigMapWatchOptions): Promise<ConfigMapWatch> {
    const k8s = await loadKubernetesClient();
    const core = options.kubeconfig.makeApiClient(k8s.CoreV1Api);
    const fieldSelector = `metadata.name=${options.name}`;
    const counts = { watches: 0 };
    const listWatch = watchedInformer<V1ConfigMap>(
      k8s,
      options.kubeconfig,
      `/api/v1/namespaces/${options.namespace}/configmaps`,
      () => core.listNamespacedConfigMap({ namespace: options.namespace, fieldSelector }),
      {
        fieldSelector,
        ...(options.timeoutSeconds !== undefined ? { timeoutSeconds: options.timeoutSeconds } : {}),
        onWatch: () => (counts.watches += 1),
      },
    );
    const informer = new KeptInformer(listWatch, {
      what: `ConfigMap ${options.namespace}/${options.name}`,
      namespace: options.namespace,
      onWarning: options.onWarning ?? (() => {}),
      ...(options.minBackoffMs !== undefined ? { minBackoffMs: options.minBackoffMs } : {}),
      ...(options.maxBackoffMs !== undefined ? { maxBackoffMs: options.maxBackoffMs } : {}),
    });
    await informer.start();
    return new ConfigMapWatch(informer, options, counts);
  }

  /** The ConfigMap's data now; undefined when there is no such ConfigMap. */
  data(): Record<string, string> | undefined {
    const cm = this.#informer.cache.get(this.#options.name, this.#options.namespace);
    return cm ? (cm.data ?? {}) : undefined;
  }

  /**
   * Calls `listener` with the data after every change: created, updated, or deleted
   * (undefined). A re-list after a failed watch may call it with data that did not change.
   */
  onChange(listener: (data: Record<string, string> | undefined) => void): void {
    const named = (cm: V1ConfigMap) => cm.metadata?.name === this.#options.name;
    this.#informer.on('add', (cm) => named(cm) && listener(cm.data ?? {}));
    this.#informer.on('update', (cm) => named(cm) && listener(cm.data ?? {}));
    this.#informer.on('delete', (cm) => named(cm) && listener(undefined));
  }

  close(): Promise<void> {
    return this.#informer.stop();
  }
}
