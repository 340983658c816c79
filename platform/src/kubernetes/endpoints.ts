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
  return collect(slices, (e) => e.conditions?.ready !== false);
}

/**
 * The endpoints not ready yet and not terminating: pods whose address is known and whose
 * readiness the kubelet has not reported, which a gateway may probe itself to route to them
 * sooner (what Knative's activator does).
 */
export function pendingEndpointsOf(slices: readonly V1EndpointSlice[]): Endpoint[] {
  return collect(slices, (e) => e.conditions?.ready === false && e.conditions?.terminating !== true);
}

type SliceEndpoint = NonNullable<V1EndpointSlice['endpoints']>[number];

/** One address of the slices' endpoints that `wanted` keeps. */
export interface SliceAddress {
  /** The pod's name, or its address when the slice names no pod. */
  id: string;
  /** The first address (those of one endpoint are interchangeable), bracketed when IPv6. */
  host: string;
  slice: V1EndpointSlice;
}

/**
 * The addresses of the endpoints `wanted` keeps, once per id (the last slice wins), sorted by id
 * so equal sets compare equal. FQDN slices are skipped.
 */
export function sliceAddresses(slices: readonly V1EndpointSlice[], wanted: (e: SliceEndpoint) => boolean): SliceAddress[] {
  const byId = new Map<string, SliceAddress>();
  for (const slice of slices) {
    if (slice.addressType === 'FQDN') continue;
    for (const e of slice.endpoints ?? []) {
      const address = e.addresses?.[0];
      if (!address || !wanted(e)) continue;
      const id = e.targetRef?.name ?? address;
      byId.set(id, { id, host: address.includes(':') ? `[${address}]` : address, slice });
    }
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function collect(slices: readonly V1EndpointSlice[], wanted: (e: SliceEndpoint) => boolean): Endpoint[] {
  return sliceAddresses(slices, wanted).map(({ id, host }) => ({
    id,
    url: `http://${host}:${containerPorts.http}`,
    adminUrl: `http://${host}:${containerPorts.admin}`,
  }));
}

export function sameEndpoints(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  return a.length === b.length && a.every((e, i) => e.id === b[i]!.id && e.url === b[i]!.url && e.adminUrl === b[i]!.adminUrl);
}
