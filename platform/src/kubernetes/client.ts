// Loads @kubernetes/client-node on demand, so importing @kubefn/platform (the CLI, the gateway,
// every test) does not pay for the client unless a kubernetes driver is opened.

import type { KubeConfig } from '@kubernetes/client-node';

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

/** How long one API call may take before it fails, ms (watches are not API calls: see informers.ts). */
export const defaultApiTimeoutMs = 15_000;

const timed = Symbol('kubefn.apiTimeout');

let apiRequests = 0;
const apiRequestsByKind = new Map<string, number>();
const maxKinds = 64;

/**
 * API calls this process has made through a KubeConfig given withApiTimeout (every one kubefn's
 * components make; watches not counted): what the controller costs the API server.
 */
export function apiRequestCount(): number {
  return apiRequests;
}

/** The same, by kind of call: "PATCH deployments/scale", "GET leases/1", "GET pods" (a list). */
export function apiRequestCounts(): Record<string, number> {
  return Object.fromEntries(apiRequestsByKind);
}

/** `GET /apis/apps/v1/namespaces/ns/deployments/hello/scale` -> "GET deployments/scale". */
export function apiRequestKind(method: string, url: string): string {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    path = url;
  }
  const parts = path.split('/').filter(Boolean);
  const at = parts.indexOf('namespaces');
  const rest = at >= 0 && parts.length > at + 2 ? parts.slice(at + 2) : parts.slice(-1);
  const [resource, name, sub] = rest;
  return `${method.toUpperCase()} ${resource ?? '?'}${sub ? `/${sub}` : name ? '/1' : ''}`;
}

function countRequest(method: string, url: string): void {
  apiRequests++;
  let kind = apiRequestKind(method, url);
  if (!apiRequestsByKind.has(kind) && apiRequestsByKind.size >= maxKinds) kind = 'other';
  apiRequestsByKind.set(kind, (apiRequestsByKind.get(kind) ?? 0) + 1);
}

/**
 * `kc`, with a deadline on every API call made through the clients it makes (makeApiClient and
 * KubernetesObjectApi): client-node sets none, so a blackholed API server would hang a call, and
 * whatever awaits it, until the kernel gives up on the connection. A call past `timeoutMs` fails
 * with an AbortError. Watches (and log streams) are long-lived and keep no deadline. Applied
 * once: a second call changes nothing.
 */
export function withApiTimeout(kc: KubeConfig, timeoutMs: number = defaultApiTimeoutMs): KubeConfig {
  const marked = kc as KubeConfig & { [timed]?: true };
  if (marked[timed]) return kc;
  marked[timed] = true;
  const apply = kc.applySecurityAuthentication.bind(kc);
  kc.applySecurityAuthentication = async (context) => {
    countRequest(String(context.getHttpMethod()), context.getUrl());
    await apply(context);
    if (!context.getSignal()) context.setSignal(AbortSignal.timeout(timeoutMs));
  };
  return kc;
}
