// The Function resource as kubefn reads it, its status subresource, and the driver's FunctionStatus made from them.

import type { KubernetesObject, V1Deployment, V1Pod } from '@kubernetes/client-node';
import type { FunctionStatus } from '../driver.js';
import type { ActivationStall } from '../scaling-contract.js';
import { loadErrorBody } from '../rollout.js';
import { parseLoadFailure, type ErrorBody } from '../runtime-contract.js';
import type { FunctionSpec } from '../spec.js';
import { containerName, kubefnAnnotations } from './manifests.js';

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

/** The type of the condition a stalled activation is written as (FunctionStatus.activation). */
export const activationStalledCondition = 'ActivationStalled';

/**
 * A stalled activation as a Function condition: status True, the autoscaler's sentence as its
 * message, since when as its lastTransitionTime. Present only while stalled.
 */
export function activationCondition(stall: ActivationStall): Condition {
  return {
    type: activationStalledCondition,
    status: 'True',
    reason: 'NoReplicaReady',
    message: stall.reason,
    lastTransitionTime: rfc3339(Number.isNaN(Date.parse(stall.since)) ? new Date() : stall.since),
  };
}

/** What the Driver interface reports for a Function whose spec (already validated) is `spec`. */
export function functionStatusOf(fn: FunctionResource, spec: FunctionSpec, deployment: V1Deployment | undefined): FunctionStatus {
  const createdAt = rfc3339(fn.metadata?.creationTimestamp ?? new Date(0), true);
  // The last write to the Function's spec or metadata (not its status): its latest managedFields time.
  const times = (fn.metadata?.managedFields ?? [])
    .filter((m) => !m.subresource && m.time !== undefined)
    .map((m) => new Date(m.time as unknown as string).getTime());
  const updatedAt = times.length ? new Date(Math.max(...times)).toISOString() : createdAt;
  const generation = fn.metadata?.generation ?? 0;
  const caughtUp = rolledFrom(fn, deployment);
  const readyReplicas = deployment ? (deployment.status?.readyReplicas ?? 0) : (fn.status?.readyReplicas ?? 0);
  // The Deployment counts pods, not ready pods, per template: every pod not of the current
  // template may be a ready one, so this is the fewest ready pods that can run the current spec.
  const stale = Math.max(0, (deployment?.status?.replicas ?? 0) - (deployment?.status?.updatedReplicas ?? 0));
  const status: FunctionStatus = {
    spec,
    replicas: deployment?.spec?.replicas ?? fn.status?.replicas ?? 0,
    readyReplicas,
    updatedReplicas: caughtUp ? Math.max(0, readyReplicas - stale) : 0,
    generation,
    observedGeneration: caughtUp ? generation : Math.min(fn.status?.observedGeneration ?? 0, generation - 1),
    createdAt,
    updatedAt,
  };
  const ready = fn.status?.conditions?.find((c) => c.type === 'Ready');
  if (ready && ready.status === 'False' && failureReasons.has(ready.reason)) {
    status.lastError = { code: ready.reason === 'InvalidSpec' ? 'INVALID_SPEC' : 'START_FAILED', message: ready.message };
  }
  const stalled = fn.status?.conditions?.find((c) => c.type === activationStalledCondition && c.status === 'True');
  if (stalled) status.activation = { state: 'ActivationStalled', reason: stalled.message, since: stalled.lastTransitionTime };
  return status;
}

/**
 * Whether the pods the Deployment makes from now on run the Function's current spec: the
 * controller applied this generation (the Function's status and the Deployment's annotation say
 * so) and the Deployment controller observed that Deployment spec.
 */
export function rolledFrom(fn: FunctionResource, deployment: V1Deployment | undefined): boolean {
  const generation = fn.metadata?.generation ?? 0;
  if (!deployment || (fn.status?.observedGeneration ?? -1) < generation) return false;
  const applied = Number(deployment.metadata?.annotations?.[kubefnAnnotations.functionGeneration] ?? -1);
  return applied >= generation && (deployment.status?.observedGeneration ?? -1) >= (deployment.metadata?.generation ?? 0);
}

/**
 * The load error of the current spec, from its pods' function containers: the runtime's
 * load-failed line in a termination message (the file the runtime wrote, or the log's tail).
 * Pods of an older template (their spec-revision annotation differs) say nothing about it.
 */
export function loadErrorOf(name: string, deployment: V1Deployment, pods: readonly V1Pod[]): ErrorBody | undefined {
  const revision = deployment.spec?.template?.metadata?.annotations?.[kubefnAnnotations.specRevision];
  if (!revision) return undefined;
  for (const pod of pods) {
    if (pod.metadata?.annotations?.[kubefnAnnotations.specRevision] !== revision || pod.metadata?.deletionTimestamp) continue;
    const c = pod.status?.containerStatuses?.find((s) => s.name === containerName);
    if (!c || c.ready) continue;
    for (const terminated of [c.state?.terminated, c.lastState?.terminated]) {
      const failure = terminated?.message ? parseLoadFailure(terminated.message) : undefined;
      if (failure) return loadErrorBody(name, failure);
    }
  }
  return undefined;
}

/** A date as RFC 3339 in whole seconds (metav1.Time), or with milliseconds when `precise`. */
function rfc3339(value: Date | string, precise = false): string {
  const iso = new Date(value).toISOString();
  return precise ? iso : iso.replace(/\.\d+Z$/, 'Z');
}

/** Pods of the function the scheduler could not place (PodScheduled False, reason Unschedulable). */
export function unschedulableOf(pods: readonly V1Pod[]): number {
  let n = 0;
  for (const pod of pods) {
    if (pod.metadata?.deletionTimestamp) continue;
    if (pod.status?.conditions?.some((c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable')) n++;
  }
  return n;
}
