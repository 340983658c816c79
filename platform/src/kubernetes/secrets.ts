// The kubernetes driver's secret store: one Secret per secret in the functions' namespace,
// labelled as kubefn's, with the value under a key named like the secret (as OpenFaaS keeps
// them), so a pod mounts it as /var/openfaas/secrets/<name>.

import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { KubefnError } from '../errors.js';
import { validateName } from '../names.js';
import { checkSecret, type SecretStore } from '../secrets.js';
import { isApiError, kubeError } from './errors.js';
import { kubefnLabels, managedBy } from './manifests.js';

/**
 * Marks the Secrets this API made or may hand to functions. Others in the namespace (the
 * platform's token when it shares the namespace, service-account tokens) are never listed,
 * changed or mounted: a Secret made with kubectl needs this label to be used.
 */
export const secretLabel = 'kubefn.dev/secret';

const labels = { [kubefnLabels.managedBy]: managedBy, [secretLabel]: 'true' };
const selector = `${kubefnLabels.managedBy}=${managedBy},${secretLabel}=true`;

export class KubernetesSecretStore implements SecretStore {
  constructor(
    readonly core: CoreV1Api,
    readonly namespace: string,
  ) {}

  async list(): Promise<string[]> {
    try {
      const list = await this.core.listNamespacedSecret({ namespace: this.namespace, labelSelector: selector });
      return list.items.map((s) => s.metadata?.name ?? '').filter(Boolean).sort();
    } catch (err) {
      throw kubeError(err, `listing Secrets in ${this.namespace}`);
    }
  }

  async create(name: string, value: Uint8Array): Promise<void> {
    checkSecret(name, value);
    try {
      await this.core.createNamespacedSecret({ namespace: this.namespace, body: this.#body(name, value) });
    } catch (err) {
      if (isApiError(err, 409)) throw new KubefnError('ALREADY_EXISTS', `secret "${name}" already exists`, { hint: 'update it instead (PUT, or `fn secret create --update`)' });
      throw kubeError(err, `creating Secret ${this.namespace}/${name}`);
    }
  }

  async update(name: string, value: Uint8Array): Promise<void> {
    checkSecret(name, value);
    const live = await this.#ours(name);
    if (!live) throw notFound(name);
    const body = this.#body(name, value);
    // The resourceVersion read makes a concurrent delete or update fail rather than be undone.
    body.metadata!.resourceVersion = live.metadata?.resourceVersion;
    try {
      await this.core.replaceNamespacedSecret({ name, namespace: this.namespace, body });
    } catch (err) {
      if (isApiError(err, 404)) throw notFound(name);
      throw kubeError(err, `updating Secret ${this.namespace}/${name}`);
    }
  }

  async remove(name: string): Promise<void> {
    validateName(name, 'secret');
    if (!(await this.#ours(name))) throw notFound(name);
    try {
      await this.core.deleteNamespacedSecret({ name, namespace: this.namespace });
    } catch (err) {
      if (isApiError(err, 404)) throw notFound(name);
      throw kubeError(err, `deleting Secret ${this.namespace}/${name}`);
    }
  }

  async read(names: readonly string[]): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    for (const name of names) {
      const data = (await this.#ours(name))?.data?.[name];
      if (data !== undefined) out.set(name, Buffer.from(data, 'base64'));
    }
    return out;
  }

  /** The Secret if it exists and carries kubefn's labels. */
  async #ours(name: string): Promise<V1Secret | undefined> {
    validateName(name, 'secret');
    let secret: V1Secret;
    try {
      secret = await this.core.readNamespacedSecret({ name, namespace: this.namespace });
    } catch (err) {
      if (isApiError(err, 404)) return undefined;
      throw kubeError(err, `reading Secret ${this.namespace}/${name}`);
    }
    const l = secret.metadata?.labels ?? {};
    return l[secretLabel] === 'true' && l[kubefnLabels.managedBy] === managedBy ? secret : undefined;
  }

  #body(name: string, value: Uint8Array): V1Secret {
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: this.namespace, labels: { ...labels } },
      type: 'Opaque',
      data: { [name]: Buffer.from(value).toString('base64') },
    };
  }
}

function notFound(name: string): KubefnError {
  return new KubefnError('NOT_FOUND', `no secret named "${name}"`, { hint: 'fn secret list shows the secrets there are' });
}
