// Ready replicas from EndpointSlices: what the gateway needs from Kubernetes, as our own Endpoints.

import type { V1EndpointSlice } from '@kubernetes/client-node';
import type { Endpoint } from '../driver.js';
import { containerPorts } from './manifests.js';

/**
 * Every ready endpoint of the slices (one Service's), one Endpoint each: the pod's name as id, its
 * first address (the addresses of one endpoint are interchangeable) on the function and admin
 * ports. An endpoint whose `ready` is unset counts as ready, as the EndpointSlice API says.
 * Sorted by id so equal sets compare equal.
 */
export function endpointsOf(slices: readonly V1EndpointSlice[]): Endpoint[] {
  const byId = new Map<string, Endpoint>();
  for (const slice of slices) {
    if (slice.addressType === 'FQDN') continue;
    for (const e of slice.endpoints ?? []) {
      const address = e.addresses?.[0];
      if (!address || e.conditions?.ready === false) continue;
      const host = address.includes(':') ? `[${address}]` : address;
      const id = e.targetRef?.name ?? address;
      byId.set(id, { id, url: `http://${host}:${containerPorts.http}`, adminUrl: `http://${host}:${containerPorts.admin}` });
    }
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

export function sameEndpoints(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  return a.length === b.length && a.every((e, i) => e.id === b[i]!.id && e.url === b[i]!.url && e.adminUrl === b[i]!.adminUrl);
}
