// The Function controller: reconciles every Function of a namespace into a Deployment and a
// Service it owns, and writes the Function's status. Level-triggered: a change to a Function or
// to one of kubefn's Deployments schedules a reconcile of that function, which reads the objects
// afresh; a failed one is retried with backoff. In a cluster exactly one process runs it (the
// autoscaler's pod); gateways apply Functions and wait for the status it writes.

import type { KubernetesObject, V1Deployment, V1Service } from '@kubernetes/client-node';
import type { FunctionStatus } from '../driver.js';
import type { ActivationStall } from '../scaling-contract.js';
import type { FunctionEventRecorder } from './events.js';
import { placementErrors, type PlacementAllowlist } from './placement.js';
import type { FunctionSpec } from '../spec.js';
import { imageDigest, initialReplicas, deploymentFor, kubefnLabels, serviceFor, type Owner } from './manifests.js';
import { isApiError, kubeError } from './errors.js';
import { applyPatchType, fieldManager, functionApiVersion, type KubefnObjects } from './objects.js';
import { activationCondition, functionStatusOf, readyCondition, type FunctionResource, type FunctionResourceStatus } from './status.js';
import { crdGroup, crdVersion } from '../crd.js';
import { Semaphore, TokenBucket, type Release } from '../limits.js';

/**
 * The field manager that holds spec.replicas of a Deployment after its creation, so that kubefn's
 * own applies (which leave replicas out) never reset it. Scaling through the scale subresource
 * moves the field to whoever scaled.
 */
export const replicasFieldManager = 'kubefn-replicas';

export interface FunctionReconcilerOptions {
  /** First retry of a failed reconcile, ms (default 1000); doubles up to maxRetryMs. */
  minRetryMs?: number;
  /** Longest pause between retries, ms (default 60000). */
  maxRetryMs?: number;
  /**
   * Where the functions are called, for `status.url` (`<gatewayUrl>/function/<name>`); default
   * the kubefn-gateway Service of the namespace, http://kubefn-gateway.<namespace>.svc:8080.
   * Through a gateway, not the function's own Service: calls that skip the gateways are not seen
   * by the autoscaler, and the Service refuses them while the function is at zero.
   */
  gatewayUrl?: string;
  /** Kubernetes Events for failed reconciles, invalid specs and stalled activations. */
  events?: FunctionEventRecorder;
  /** Pull Secrets every function's pods get (kubefn-config `image-pull-secrets`). */
  imagePullSecrets?: readonly string[];
  /** The node placement functions may ask for; a Function asking for more gets no Deployment. */
  placement?: PlacementAllowlist;
  /**
   * Reconciles running at once (default 4), and how many of them may write per second on average
   * (default 20, bursts of 50): a controller that starts beside 1,000 Functions works through
   * them at a pace the API server takes, instead of sending every call at once. A reconcile that
   * finds nothing to change (the informer caches show it done) writes nothing and pays nothing.
   */
  workers?: number;
  ratePerSecond?: number;
  burst?: number;
}

/** A bounded number of workers, and a token bucket every reconcile that calls the API pays from. */
export class ReconcileSlots {
  readonly #workers: Semaphore;
  readonly #tokens: TokenBucket;

  constructor(workers: number, ratePerSecond: number, burst: number) {
    this.#workers = new Semaphore(Math.max(1, workers));
    this.#tokens = new TokenBucket(Math.max(0.1, ratePerSecond), burst);
  }

  /** Waits for a worker; the function returned gives it back. */
  acquire(): Promise<Release> {
    return this.#workers.acquire();
  }

  /** Waits for a token: once per reconcile, before its first API call. */
  pay(): Promise<void> {
    return this.#tokens.take();
  }
}

export class FunctionReconciler {
  readonly #o: KubefnObjects;
  readonly #minRetryMs: number;
  readonly #maxRetryMs: number;
  readonly #gatewayUrl: string;
  readonly #events: FunctionEventRecorder | undefined;
  readonly #pullSecrets: readonly string[];
  readonly #placement: PlacementAllowlist;
  readonly #slots: ReconcileSlots;
  /** Per function, what its last apply wrote and what the objects were after it (see #applyIfChanged). */
  readonly #applied = new Map<string, { from: string; deploymentUid: string | undefined; deploymentGeneration: number | undefined; serviceVersion: string | undefined }>();
  /** Per function, the least generation a caller of reconcile() applied (read from the API server if the cache is older). */
  readonly #wanted = new Map<string, number>();
  /** Per function, the metadata.generation its last successful reconcile applied. */
  readonly #reconciledGeneration = new Map<string, number>();
  /** Per function: the reconcile running now, and one queued behind it (coalesced). */
  readonly #running = new Map<string, Promise<FunctionStatus | undefined>>();
  readonly #queued = new Map<string, Promise<FunctionStatus | undefined>>();
  readonly #retries = new Map<string, { timer: NodeJS.Timeout; delayMs: number }>();
  /**
   * Stalled activations the autoscaler in this process reported, written as each Function's
   * ActivationStalled condition. In memory: a new controller process starts with none, and its
   * first reconcile of each function removes a condition the old one left (its autoscaler, also
   * new, has not declared that stall).
   */
  readonly #stalls = new Map<string, ActivationStall>();
  #closed = false;
  readonly #unsubscribe: () => void;
  /** Reconciles finished and failed since it started (failures are retried with backoff). */
  readonly counts = { reconciled: 0, failed: 0 };

  /**
   * Subscribes to `objects`' Functions and Deployments and reconciles every Function they hold
   * now, so it may be made before or after the objects started.
   */
  constructor(objects: KubefnObjects, options: FunctionReconcilerOptions = {}) {
    this.#o = objects;
    this.#minRetryMs = options.minRetryMs ?? 1000;
    this.#maxRetryMs = options.maxRetryMs ?? 60_000;
    this.#events = options.events;
    this.#pullSecrets = options.imagePullSecrets ?? [];
    this.#placement = options.placement ?? {};
    this.#slots = new ReconcileSlots(options.workers ?? 4, options.ratePerSecond ?? 20, options.burst ?? 50);
    this.#gatewayUrl = (options.gatewayUrl ?? `http://kubefn-gateway.${objects.namespace}.svc:8080`).replace(/\/+$/, '');
    const later = (name: string | undefined): void => {
      if (name && !this.#closed) void this.reconcile(name).catch(() => {});
    };
    const onAdd = (fn: FunctionResource): void => later(fn.metadata?.name);
    // A change of the spec moves metadata.generation; one that does not (this controller's own
    // status write, the autoscaler's stall) has nothing to apply: no reconcile of it.
    const onUpdate = (fn: FunctionResource): void => {
      const name = fn.metadata?.name;
      if (name && fn.metadata?.generation !== undefined && this.#reconciledGeneration.get(name) === fn.metadata.generation) return;
      later(name);
    };
    const onDelete = (fn: FunctionResource): void => {
      this.#reconciledGeneration.delete(fn.metadata?.name ?? '');
      this.#applied.delete(fn.metadata?.name ?? '');
    };
    // A Deployment that changed (its status, or someone edited or deleted it) is reconciled back
    // and its Function's status brought up to date.
    const ofDeployment = (d: V1Deployment): void => later(d.metadata?.labels?.[kubefnLabels.function]);
    // A Service deleted or edited is put back at once (with watchServices; else at the next event).
    const ofService = (svc: V1Service): void => later(svc.metadata?.labels?.[kubefnLabels.function]);
    const subscribe = (how: 'on' | 'off'): void => {
      objects.functions[how]('add', onAdd);
      objects.functions[how]('update', onUpdate);
      objects.functions[how]('delete', onDelete);
      for (const verb of ['add', 'update', 'delete'] as const) objects.deployments[how](verb, ofDeployment);
      objects.services?.[how]('update', ofService);
      objects.services?.[how]('delete', ofService);
    };
    subscribe('on');
    this.#unsubscribe = () => subscribe('off');
    for (const fn of objects.functions.cache.list(objects.namespace)) later(fn.metadata?.name);
  }

  /**
   * Reconciles `name` after the reconcile running now; calls made while one is queued share it
   * (it reads the objects when it starts, so it sees every change that led to those calls).
   * Resolves with the function's status, undefined when the Function does not exist.
   */
  reconcile(name: string, generation?: number): Promise<FunctionStatus | undefined> {
    if (generation !== undefined) this.#wanted.set(name, Math.max(generation, this.#wanted.get(name) ?? 0));
    const queued = this.#queued.get(name);
    if (queued) return queued;
    const previous = this.#running.get(name) ?? Promise.resolve(undefined);
    // Calls made while it waits for a worker share it too: it reads the objects once it runs.
    const next = previous
      .catch(() => undefined)
      .then(() => this.#slots.acquire())
      .then(async (release) => {
        this.#queued.delete(name);
        try {
          return this.#closed ? undefined : await this.#reconcileOrRetry(name);
        } finally {
          release();
        }
      });
    this.#queued.set(name, next);
    this.#running.set(name, next);
    void next
      .finally(() => {
        if (this.#running.get(name) === next) this.#running.delete(name);
      })
      .catch(() => {});
    return next;
  }

  /**
   * The autoscaler says `name`'s activation stalled (stall) or recovered (undefined): kept, and the
   * Function's status written again with or without its ActivationStalled condition.
   */
  setActivation(name: string, stall: ActivationStall | undefined): void {
    const before = this.#stalls.get(name);
    // The same stall told again keeps its first `since`: nothing to write.
    if (before === undefined ? stall === undefined : stall?.reason === before.reason) return;
    if (stall) this.#stalls.set(name, stall);
    else this.#stalls.delete(name);
    const uid = this.#o.cachedFunction(name)?.metadata?.uid;
    if (stall) this.#events?.record({ name, uid }, 'Warning', 'ActivationStalled', stall.reason);
    else this.#events?.record({ name, uid }, 'Normal', 'ActivationResumed', 'a replica became ready: adding replicas again');
    if (!this.#closed) void this.reconcile(name).catch(() => {});
  }

  /** Stops reconciling: no new reconciles start, and it waits for those running. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    for (const { timer } of this.#retries.values()) clearTimeout(timer);
    this.#retries.clear();
    await Promise.allSettled([...this.#running.values()]);
  }

  async #reconcileOrRetry(name: string): Promise<FunctionStatus | undefined> {
    try {
      const status = await this.#reconcile(name);
      this.counts.reconciled++;
      const retry = this.#retries.get(name);
      if (retry) {
        clearTimeout(retry.timer);
        this.#retries.delete(name);
      }
      return status;
    } catch (err) {
      this.counts.failed++;
      // Level-triggered: try again later with backoff, whoever asked.
      const last = this.#retries.get(name)?.delayMs;
      const delayMs = last === undefined ? this.#minRetryMs : Math.min(last * 2, this.#maxRetryMs);
      this.#o.onWarning(`reconciling function "${name}" failed; retrying in ${delayMs} ms`, err);
      clearTimeout(this.#retries.get(name)?.timer);
      const timer = setTimeout(() => void this.reconcile(name).catch(() => {}), delayMs);
      timer.unref();
      this.#retries.set(name, { timer, delayMs });
      throw err;
    }
  }

  /**
   * Brings the Deployment and Service of Function `name` in line with its spec and writes its
   * status. Every write is a server-side apply, so a reconcile with nothing to change changes
   * nothing (no new resourceVersion, no event). Undefined when the Function does not exist.
   */
  async #reconcile(name: string): Promise<FunctionStatus | undefined> {
    // The informer's copy when it is at least the generation a caller applied (the driver's
    // deploy); else the API server's.
    const wanted = this.#wanted.get(name) ?? 0;
    this.#wanted.delete(name);
    const cached = this.#o.cachedFunction(name);
    let paid = false;
    const pay = async (): Promise<void> => {
      if (paid) return;
      paid = true;
      await this.#slots.pay();
    };
    const fn = cached && (cached.metadata?.generation ?? 0) >= wanted ? cached : await pay().then(() => this.#o.readFunction(name));
    if (!fn || fn.metadata?.deletionTimestamp) {
      this.#stalls.delete(name);
      this.#reconciledGeneration.delete(name);
      return undefined;
    }
    const generation = fn.metadata?.generation;
    const spec = this.#o.specOf(fn);
    if (spec instanceof Error) {
      // Reported in the Function's status; the driver lists only functions it can run.
      this.#events?.record({ name, uid: fn.metadata?.uid }, 'Warning', 'InvalidSpec', spec.message);
      await this.#writeStatus(fn, undefined, { reason: 'InvalidSpec', message: spec.message }, pay);
      if (generation !== undefined) this.#reconciledGeneration.set(name, generation);
      return undefined;
    }
    const refused = placementErrors(spec, this.#placement);
    if (refused.length > 0) {
      const message = `asks for node placement this cluster does not allow: ${refused.map((f) => `${f.field} ${f.message}`).join('; ')}`;
      this.#events?.record({ name, uid: fn.metadata?.uid }, 'Warning', 'PlacementNotAllowed', message);
      await this.#writeStatus(fn, undefined, { reason: 'PlacementNotAllowed', message }, pay);
      if (generation !== undefined) this.#reconciledGeneration.set(name, generation);
      return undefined;
    }
    const owner: Owner = { apiVersion: functionApiVersion, kind: 'Function', name, uid: fn.metadata?.uid ?? '' };
    let deployment: V1Deployment;
    try {
      deployment = await this.#applyIfChanged(spec, owner, fn.metadata?.generation ?? 0, pay);
    } catch (err) {
      const e = kubeError(err, `applying the Deployment and Service of function "${name}"`);
      this.#events?.record({ name, uid: fn.metadata?.uid }, 'Warning', 'ReconcileFailed', e.message);
      await this.#writeStatus(fn, undefined, { reason: 'ReconcileFailed', message: e.message }, pay).catch(() => {});
      throw e;
    }
    const written = await this.#writeStatus(fn, deployment, undefined, pay);
    if (generation !== undefined) this.#reconciledGeneration.set(name, generation);
    await Promise.all([
      this.#o.functions.caughtUp(name, written.metadata?.resourceVersion),
      this.#o.deployments.caughtUp(name, deployment.metadata?.resourceVersion),
    ]);
    return functionStatusOf(written, spec, deployment);
  }

  /**
   * The Deployment and Service of `spec`, applied unless the informer caches show them as this
   * controller last applied them: from the same Function and generation (the manifests follow
   * from the spec, which moves the generation, and this process's settings), and no one changed them since
   * (the Deployment's metadata.generation, the Service's resourceVersion). A Deployment's status
   * moving (pods starting, becoming ready) changes neither, so it costs no API call.
   */
  async #applyIfChanged(spec: FunctionSpec, owner: Owner, generation: number, pay: () => Promise<void>): Promise<V1Deployment> {
    const ns = this.#o.namespace;
    const from = `${owner.uid}/${generation}`;
    const last = this.#applied.get(spec.name);
    const cachedDeployment = this.#o.cachedDeployment(spec.name);
    const cachedService = this.#o.services?.cache.get(spec.name, ns);
    if (
      last?.from === from &&
      cachedDeployment &&
      !cachedDeployment.metadata?.deletionTimestamp &&
      cachedDeployment.metadata?.uid === last.deploymentUid &&
      cachedDeployment.metadata?.generation === last.deploymentGeneration &&
      cachedService &&
      cachedService.metadata?.resourceVersion === last.serviceVersion
    ) {
      return cachedDeployment;
    }
    await pay();
    const deployment = await this.#applyDeployment(spec, owner, generation);
    const applied = await this.#apply(serviceFor(spec, ns, owner));
    this.#applied.set(spec.name, {
      from,
      deploymentUid: deployment.metadata?.uid,
      deploymentGeneration: deployment.metadata?.generation,
      serviceVersion: this.#o.services ? applied.metadata?.resourceVersion : undefined,
    });
    return deployment;
  }

  /**
   * Applies the Deployment without spec.replicas, so kubefn's applies never fight the autoscaler.
   * On create replicas must be set (else the API server defaults them to 1), so:
   *   1. absent: apply with replicas = max(min, initial) (kubefn owns the field for a moment);
   *   2. kubefn owns replicas: apply just replicas, at their live value, as `kubefn-replicas`
   *      (without force: a conflict means a scaler already owns it, which is as good);
   *   3. apply without replicas: kubefn gives the field up, and it keeps its value because
   *      another manager (kubefn-replicas, or whoever scaled) still owns it.
   * Step 2 is decided from managedFields, not from memory, so a controller that crashed between
   * steps finishes the hand-over on its next reconcile.
   */
  async #applyDeployment(spec: FunctionSpec, owner: Owner, generation: number): Promise<V1Deployment> {
    const ns = this.#o.namespace;
    let live = await this.#o.apps.readNamespacedDeployment({ name: spec.name, namespace: ns }).catch((err: unknown) => {
      if (isApiError(err, 404)) return undefined;
      throw err;
    });
    if (!live) live = await this.#apply(deploymentFor(spec, ns, owner, { replicas: initialReplicas(spec), generation, imagePullSecrets: this.#pullSecrets }));
    if (appliedReplicasOwner(live)) {
      try {
        await this.#apply(
          { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: spec.name, namespace: ns }, spec: { replicas: live.spec?.replicas ?? 0 } } as KubernetesObject,
          { manager: replicasFieldManager, force: false },
        );
      } catch (err) {
        if (!isApiError(err, 409)) throw err;
      }
    }
    return this.#apply(deploymentFor(spec, ns, owner, { generation, imagePullSecrets: this.#pullSecrets }));
  }

  #apply<T extends KubernetesObject>(object: T, options: { manager?: string; force?: boolean } = {}): Promise<T> {
    return this.#o.objects.patch(object, undefined, undefined, options.manager ?? fieldManager, options.force ?? true, applyPatchType);
  }

  /** Applies the Function's status (only kubefn's fields) unless it already reads the same. */
  async #writeStatus(
    fn: FunctionResource,
    deployment: V1Deployment | undefined,
    failure: { reason: string; message: string } | undefined,
    pay: () => Promise<void>,
  ): Promise<FunctionResource> {
    const name = fn.metadata?.name ?? '';
    const ns = this.#o.namespace;
    const previous = fn.status ?? {};
    const stall = this.#stalls.get(name);
    const digest = imageDigest((fn.spec as { image?: string } | undefined)?.image);
    const status: FunctionResourceStatus = {
      observedGeneration: fn.metadata?.generation ?? 0,
      replicas: deployment?.spec?.replicas ?? previous.replicas ?? 0,
      readyReplicas: deployment?.status?.readyReplicas ?? (failure ? (previous.readyReplicas ?? 0) : 0),
      ...(digest ? { imageDigest: digest } : {}),
      url: `${this.#gatewayUrl}/function/${name}`,
      // Applied with the whole status: left out, the ActivationStalled condition is removed.
      conditions: [readyCondition(previous, deployment, failure, new Date()), ...(stall ? [activationCondition(stall)] : [])],
    };
    if (sameStatus(previous, status)) return fn;
    await pay();
    return (await this.#o.custom
      .patchNamespacedCustomObjectStatus(
        {
          group: crdGroup,
          version: crdVersion,
          namespace: ns,
          plural: 'functions',
          name,
          body: { apiVersion: functionApiVersion, kind: 'Function', metadata: { name, namespace: ns }, status },
          fieldManager,
          force: true,
        },
        this.#o.k8s.setHeaderOptions('Content-Type', applyPatchType),
      )
      .catch((err: unknown) => {
        // Deleted since it was read (the cache lags a deletion): nothing left to write to; its
        // delete event ends the matter.
        if (isApiError(err, 404)) return fn;
        throw err;
      })) as FunctionResource;
  }
}

/** Whether kubefn's own apply (not a scaler, not the hand-over manager) owns spec.replicas. */
function appliedReplicasOwner(d: V1Deployment): boolean {
  return (d.metadata?.managedFields ?? []).some((m) => {
    const fields = m.fieldsV1 as { 'f:spec'?: { 'f:replicas'?: unknown } } | undefined;
    return m.manager === fieldManager && m.operation === 'Apply' && !m.subresource && fields?.['f:spec']?.['f:replicas'] !== undefined;
  });
}

/** Whether two statuses say the same (whatever the order of their keys and the form of their times). */
export function sameStatus(a: FunctionResourceStatus, b: FunctionResourceStatus): boolean {
  return JSON.stringify(normalize(a)) === JSON.stringify(normalize(b));
}

function normalize(s: FunctionResourceStatus): unknown {
  return {
    observedGeneration: s.observedGeneration,
    replicas: s.replicas,
    readyReplicas: s.readyReplicas,
    imageDigest: s.imageDigest,
    url: s.url,
    // Field by field in one order: the API server returns a condition's keys in its own order.
    conditions: (s.conditions ?? []).map((c) => [c.type, c.status, c.reason, c.message, new Date(c.lastTransitionTime).toISOString()]),
  };
}
