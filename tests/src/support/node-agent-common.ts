// What the node agent's modules share: its labels, the node's own address, the containers' names
// and the small helpers for the API's answers.

import * as k8s from '@kubernetes/client-node';

/** Label on every container and network of an agent, value the node name: what cleanup removes. */
export const nodeAgentLabel = 'kubefn.dev/node-agent';
/** Label on every container of a pod, value the pod's uid. */
export const podUidLabel = 'kubefn.dev/pod-uid';
/** The node's own address: pods' hostIP, the Node's InternalIP. */
export const hostIP = '127.0.0.1';

/** Every container of the pod is named <prefix><container>. */
export const containerPrefix = (namespace: string, pod: string): string => `k8s-${namespace}-${pod}-`;

export const isoNow = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
export const mergePatch = () => k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
export const statusCode = (err: unknown): number | undefined => (err as { code?: unknown }).code as number | undefined;
export const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
