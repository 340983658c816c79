// The Function resource as kubefn reads it, its status subresource, and the driver's FunctionStatus made from them.

import type { KubernetesObject, V1Deployment } from '@kubernetes/client-node';
import type { FunctionStatus } from '../driver.js';
import type { FunctionSpec } from '../spec.js';

/** metav1.Condition. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  /** RFC 3339, whole seconds. */
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export interface FunctionResourceStatus {
  observedGeneration?: number;
  replicas?: number;
  readyReplicas?: number;
  imageDigest?: string;
  url?: string;
  conditions?: Condition[];
}

/** A kubefn.dev/v1alpha1 Function as the API server returns it (untyped JSON: times are strings). */
export interface FunctionResource extends KubernetesObject {
  spec?: unknown;
  status?: FunctionResourceStatus;
}

/** Reasons of the Ready condition that say something is wrong (they become FunctionStatus.lastError). */
export const failureReasons = new Set(['InvalidSpec', 'ReconcileFailed', 'ReplicaFailure', 'ProgressDeadlineExceeded']);

/**
 * The Ready condition from the Deployment: True when a replica is ready, or when the function is
 * scaled to zero on purpose (the gateway starts one on the first request); False while replicas
 * are wanted and none is ready, with the Deployment's own failure reason when it has one.
 * lastTransitionTime moves only when the status does.
 */
export function readyCondition(
  previous: FunctionResourceStatus,
  deployment: V1Deployment | undefined,
  failure: { reason: string; message: string } | undefined,
  now: Date,
): Condition {
  let next: Pick<Condition, 'status' | 'reason' | 'message'>;
  const desired = deployment?.spec?.replicas ?? 0;
  const ready = deployment?.status?.readyReplicas ?? 0;
  const stuck = (deployment?.status?.conditions ?? []).find(
    (c) => (c.type === 'ReplicaFailure' && c.status === 'True') || (c.type === 'Progressing' && c.status === 'False'),
  );
  if (failure) next = { status: 'False', ...failure };
  else if (!deployment) next = { status: 'False', reason: 'Pending', message: 'the Deployment does not exist yet' };
  else if (desired === 0) next = { status: 'True', reason: 'ScaledToZero', message: 'no replicas; the first request starts one' };
  else if (ready > 0) next = { status: 'True', reason: 'Ready', message: `${ready} of ${desired} replica(s) ready` };
  else if (stuck) next = { status: 'False', reason: stuck.type === 'ReplicaFailure' ? 'ReplicaFailure' : (stuck.reason ?? 'ProgressDeadlineExceeded'), message: stuck.message ?? '' };
  else next = { status: 'False', reason: 'ReplicasNotReady', message: `0 of ${desired} replica(s) ready` };
  if (!/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/.test(next.reason)) next.reason = 'Unknown';
  const before = previous.conditions?.find((c) => c.type === 'Ready');
  const lastTransitionTime = before && before.status === next.status ? rfc3339(before.lastTransitionTime) : rfc3339(now);
  return { type: 'Ready', ...next, lastTransitionTime };
}

/** What the Driver interface reports for a Function whose spec (already validated) is `spec`. */
export function functionStatusOf(fn: FunctionResource, spec: FunctionSpec, deployment: V1Deployment | undefined): FunctionStatus {
  const createdAt = rfc3339(fn.metadata?.creationTimestamp ?? new Date(0), true);
  // The last write to the Function's spec or metadata (not its status): its latest managedFields time.
  const times = (fn.metadata?.managedFields ?? [])
    .filter((m) => !m.subresource && m.time !== undefined)
    .map((m) => new Date(m.time as unknown as string).getTime());
  const updatedAt = times.length ? new Date(Math.max(...times)).toISOString() : createdAt;
  const status: FunctionStatus = {
    spec,
    replicas: deployment?.spec?.replicas ?? fn.status?.replicas ?? 0,
    readyReplicas: deployment ? (deployment.status?.readyReplicas ?? 0) : (fn.status?.readyReplicas ?? 0),
    createdAt,
    updatedAt,
  };
  const ready = fn.status?.conditions?.find((c) => c.type === 'Ready');
  if (ready && ready.status === 'False' && failureReasons.has(ready.reason)) {
    status.lastError = { code: ready.reason === 'InvalidSpec' ? 'INVALID_SPEC' : 'START_FAILED', message: ready.message };
  }
  return status;
}

/** A date as RFC 3339 in whole seconds (metav1.Time), or with milliseconds when `precise`. */
function rfc3339(value: Date | string, precise = false): string {
  const iso = new Date(value).toISOString();
  return precise ? iso : iso.replace(/\.\d+Z$/, 'Z');
}
