// 1,000 Functions applied at once on an installed platform, as `kubectl apply -f` of a directory
// of them would: what the controller makes of it (time until every one is reconciled, the API
// calls it made, failed reconciles), and what the autoscaler costs while it tracks them all
// (memory, CPU). Each Function starts at zero (initial 0), so no pod runs: the control path alone
// is measured. Shared by the cluster test and `npm run bench:cluster`.

import { waitFor } from '@kubefn/platform/testing';
import type { InstalledPlatform } from './platform-install.js';

export interface AutoscalerStatus {
  identity: string;
  leading: boolean;
  ticks: number;
  decided: Record<string, number>;
  reconciles?: { reconciled: number; failed: number };
  apiRequests: number;
  apiRequestsByKind?: Record<string, number>;
  rssBytes: number;
  heapUsedBytes: number;
  cpuSeconds: number;
}

export interface ManyFunctionsResult {
  count: number;
  /** From the first create to the last create answered, ms. */
  applyMs: number;
  /** From the first create until every Function's status says reconciled at its generation, ms. */
  settleMs: number;
  /** API calls the leading controller made meanwhile (its reconciles, status writes, events). */
  controllerApiRequests: number;
  reconciles: { reconciled: number; failed: number };
  /** Functions whose Ready condition is not the expected one once settled (none expected). */
  notReady: string[];
  /** The leader's API calls over the idle time after settling: a controller at rest makes none but its Lease's. */
  idleApiRequests: number;
  /** The same by kind of call, and the calls until settled by kind. */
  idleApiRequestsByPath: Record<string, number>;
  controllerApiRequestsByPath: Record<string, number>;
  autoscaler: { rssMiB: number; heapUsedMiB: number; cpuPercentIdle: number; functionsTracked: number };
}

export const manyLabel = 'kubefn-test/many';
const fnApi = (namespace: string) => ({ group: 'kubefn.dev', version: 'v1alpha1', namespace, plural: 'functions' });

/** The /status of every autoscaler pod that answers (with the components' token). */
export async function autoscalerStatuses(p: InstalledPlatform): Promise<AutoscalerStatus[]> {
  const core = p.cluster.kc.makeApiClient(p.cluster.k8s.CoreV1Api);
  const pods = (await core.listNamespacedPod({ namespace: p.namespace, labelSelector: 'app.kubernetes.io/name=kubefn-autoscaler' })).items.filter(
    (pod) => pod.status?.podIP && !pod.metadata?.deletionTimestamp,
  );
  const token = await p.componentToken();
  const statuses = await Promise.all(
    pods.map(async (pod) => {
      const res = await fetch(`http://${pod.status!.podIP}:8080/status`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) }).catch(() => undefined);
      return res?.ok ? ((await res.json()) as AutoscalerStatus) : undefined;
    }),
  );
  return statuses.filter((s): s is AutoscalerStatus => s !== undefined);
}

async function leader(p: InstalledPlatform): Promise<AutoscalerStatus> {
  return waitFor(async () => (await autoscalerStatuses(p)).find((s) => s.leading), { timeoutMs: 60_000, what: 'the leading autoscaler' });
}

export async function applyManyFunctions(p: InstalledPlatform, options: { count: number; image: string; idleMs?: number; onProgress?: (line: string) => void }): Promise<ManyFunctionsResult> {
  const custom = p.cluster.kc.makeApiClient(p.cluster.k8s.CustomObjectsApi);
  const api = fnApi(p.functionNamespace);
  const names = Array.from({ length: options.count }, (_, i) => `many-${String(i).padStart(4, '0')}`);
  const before = await leader(p);
  const t0 = performance.now();
  // 32 creates in flight: as fast as this client sends them.
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < names.length) {
        const name = names[next++]!;
        await custom.createNamespacedCustomObject({
          ...api,
          body: { apiVersion: 'kubefn.dev/v1alpha1', kind: 'Function', metadata: { name, labels: { [manyLabel]: '1' } }, spec: { image: options.image, scale: { initial: 0 } } },
        });
      }
    }),
  );
  const applyMs = performance.now() - t0;
  options.onProgress?.(`${options.count} Functions created in ${Math.round(applyMs)} ms; waiting for the controller`);
  type Listed = { items: { metadata: { name: string; generation?: number }; status?: { observedGeneration?: number; conditions?: { type: string; reason?: string }[] } }[] };
  const listMany = async () => ((await custom.listNamespacedCustomObject({ ...api, labelSelector: `${manyLabel}=1` })) as Listed).items;
  const reconciled = (f: Listed['items'][number]) => f.status?.observedGeneration === f.metadata.generation && f.status?.conditions?.some((c) => c.type === 'Ready');
  let lastSaid = 0;
  const items = await waitFor(
    async () => {
      const all = await listMany();
      const done = all.filter(reconciled).length;
      if (done - lastSaid >= 100) {
        lastSaid = done;
        options.onProgress?.(`${done}/${options.count} reconciled after ${Math.round(performance.now() - t0)} ms`);
      }
      return all.length === options.count && done === options.count ? all : undefined;
    },
    { timeoutMs: 600_000, maxIntervalMs: 500, what: `${options.count} Functions reconciled` },
  );
  const settleMs = performance.now() - t0;
  const settled = await leader(p);
  const notReady = items.filter((f) => !f.status?.conditions?.some((c) => c.type === 'Ready' && c.reason === 'ScaledToZero')).map((f) => f.metadata.name);
  // At rest with every Function tracked: API calls and CPU over the idle time.
  const idleMs = options.idleMs ?? 60_000;
  await new Promise((resolve) => setTimeout(resolve, idleMs));
  const idle = await leader(p);
  const sameLeader = idle.identity === settled.identity && settled.identity === before.identity;
  return {
    count: options.count,
    applyMs: Math.round(applyMs),
    settleMs: Math.round(settleMs),
    controllerApiRequests: sameLeader ? settled.apiRequests - before.apiRequests : -1,
    reconciles: settled.reconciles ?? { reconciled: 0, failed: 0 },
    notReady,
    idleApiRequests: idle.identity === settled.identity ? idle.apiRequests - settled.apiRequests : -1,
    idleApiRequestsByPath: delta(settled.apiRequestsByKind, idle.apiRequestsByKind),
    controllerApiRequestsByPath: delta(before.apiRequestsByKind, settled.apiRequestsByKind),
    autoscaler: {
      rssMiB: Math.round((idle.rssBytes / 2 ** 20) * 10) / 10,
      heapUsedMiB: Math.round((idle.heapUsedBytes / 2 ** 20) * 10) / 10,
      cpuPercentIdle: Math.round(((idle.cpuSeconds - settled.cpuSeconds) / (idleMs / 1000)) * 1000) / 10,
      functionsTracked: Object.keys(idle.decided).filter((n) => n.startsWith('many-')).length,
    },
  };
}

/** Deletes the Functions applyManyFunctions made (their Deployments and Services go by garbage collection). */
export async function removeManyFunctions(p: InstalledPlatform): Promise<void> {
  const custom = p.cluster.kc.makeApiClient(p.cluster.k8s.CustomObjectsApi);
  await custom.deleteCollectionNamespacedCustomObject({ ...fnApi(p.functionNamespace), labelSelector: `${manyLabel}=1` });
}

function delta(from: Record<string, number> = {}, to: Record<string, number> = {}): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(to)) if (v - (from[k] ?? 0) > 0) out[k] = v - (from[k] ?? 0);
  return out;
}
