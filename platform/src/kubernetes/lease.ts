// Leader election over a coordination.k8s.io Lease, as client-go's leaderelection package does it
// (client-node has none): the candidates read the Lease every retry period; the holder renews it,
// the others take it once it has not been renewed for a lease duration *as they observed it*
// (their own clock from the moment they saw the record change, so clock skew between nodes does
// not matter), with optimistic concurrency on resourceVersion so two never both win.
//
// The leader stops leading when it has not renewed for the renew deadline, which is shorter than
// the lease duration: it has stopped before anyone else may start. A leader that stops cleanly
// releases the Lease, so a rollout hands over at once instead of after a lease duration.

import type { CoordinationV1Api, KubeConfig, V1Lease, V1LeaseSpec } from '@kubernetes/client-node';
import { isApiError } from './errors.js';
import { loadKubernetesClient } from './client.js';

export interface LeaderElectionOptions {
  kubeconfig: KubeConfig;
  namespace: string;
  /** The Lease's name: one per group of candidates (kubefn-autoscaler). */
  name: string;
  /** This candidate, unique among them (the pod name). */
  identity: string;
  /** How long a Lease holds without renewal before others may take it, ms (default 15000). */
  leaseDurationMs?: number;
  /** How long the leader keeps leading without a successful renewal, ms (default 10000; < leaseDurationMs). */
  renewDeadlineMs?: number;
  /** How often candidates try and the leader renews, ms (default 2000). */
  retryPeriodMs?: number;
  /** Called when this candidate becomes the leader. */
  onStartedLeading: () => void;
  /** Called when it stops (lost the Lease, could not renew in time, or stop()). */
  onStoppedLeading: () => void;
  onWarning?: (message: string, err?: unknown) => void;
  now?: () => number;
}

type LeaseApi = Pick<CoordinationV1Api, 'readNamespacedLease' | 'createNamespacedLease' | 'replaceNamespacedLease'>;

export class LeaderElection {
  readonly #o: Required<Omit<LeaderElectionOptions, 'onWarning' | 'kubeconfig'>> & Pick<LeaderElectionOptions, 'onWarning'>;
  readonly #api: LeaseApi;
  readonly #microTime: (ms: number) => Date;
  #leading = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #deadline: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;
  /** The record last seen and when (local clock), for expiry as this candidate observed it. */
  #observed: { key: string; at: number } | undefined;
  #lastRenewAt = 0;
  #warnedRead = false;

  private constructor(options: LeaderElectionOptions, api: LeaseApi, microTime: (ms: number) => Date) {
    this.#o = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2000, now: Date.now, ...options };
    if (this.#o.renewDeadlineMs >= this.#o.leaseDurationMs) throw new Error('renewDeadlineMs must be shorter than leaseDurationMs');
    this.#api = api;
    this.#microTime = microTime;
  }

  /** Starts campaigning: the first try is at once. */
  static async start(options: LeaderElectionOptions): Promise<LeaderElection> {
    const k8s = await loadKubernetesClient();
    // MicroTime: the API server wants six fractional digits, which Date's toISOString lacks.
    const api = options.kubeconfig.makeApiClient(k8s.CoordinationV1Api);
    // Each call gets half the renew deadline: one that hangs (an API server that stopped
    // answering, a connection whose packets are dropped) must not hold the next try, which goes
    // out on a new connection, past the deadline. The hung one ends at the client's own timeout.
    const callMs = Math.max(1000, (options.renewDeadlineMs ?? 10_000) / 2);
    const bounded: LeaseApi = {
      readNamespacedLease: (param) => within(callMs, api.readNamespacedLease(param)),
      createNamespacedLease: (param) => within(callMs, api.createNamespacedLease(param)),
      replaceNamespacedLease: (param) => within(callMs, api.replaceNamespacedLease(param)),
    };
    const election = new LeaderElection(options, bounded, (ms) => new k8s.V1MicroTime(ms));
    election.#schedule(0);
    return election;
  }

  get leading(): boolean {
    return this.#leading;
  }

  get identity(): string {
    return this.#o.identity;
  }

  /** Stops campaigning; a leader stops leading and releases the Lease (best effort). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#round;
    if (this.#leading) {
      this.#lose();
      await this.#release().catch((err: unknown) => this.#o.onWarning?.(`releasing Lease ${this.#o.namespace}/${this.#o.name} failed; the standby takes it when it expires`, err));
    }
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#round = this.#tryAcquireOrRenew()
        .catch((err: unknown) => {
          if (!this.#leading && this.#warnedRead) return;
          this.#warnedRead = true;
          this.#o.onWarning?.(`Lease ${this.#o.namespace}/${this.#o.name}: ${this.#leading ? 'renewing' : 'reading'} failed; retrying`, err);
        })
        .finally(() => {
          this.#round = undefined;
          // Jittered while a candidate (client-go's JitterUntil), so candidates do not move in step.
          this.#schedule(this.#leading ? this.#o.retryPeriodMs : this.#o.retryPeriodMs * (1 + 0.2 * Math.random()));
        });
    }, ms);
    this.#timer.unref();
  }

  async #tryAcquireOrRenew(): Promise<void> {
    const now = this.#o.now();
    const { namespace, name, identity } = this.#o;
    const spec = (acquireTime: Date, transitions: number): V1LeaseSpec => ({
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.#o.leaseDurationMs / 1000),
      acquireTime,
      renewTime: this.#microTime(now),
      leaseTransitions: transitions,
    });
    let lease: V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (!isApiError(err, 404)) throw err;
      await this.#api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: spec(this.#microTime(now), 0) } });
      this.#renewed(now);
      return;
    }
    this.#warnedRead = false;
    const held = lease.spec ?? {};
    const key = `${held.holderIdentity ?? ''}|${String(held.renewTime ?? '')}|${held.leaseTransitions ?? 0}`;
    if (this.#observed?.key !== key) this.#observed = { key, at: now };
    const holder = held.holderIdentity ?? '';
    const durationMs = (held.leaseDurationSeconds ?? 0) * 1000;
    if (holder !== '' && holder !== identity && this.#observed.at + durationMs > now) {
      // Someone else holds it: if this candidate thought it led, it does not.
      if (this.#leading) this.#lose();
      return;
    }
    const mine = holder === identity;
    const body: V1Lease = {
      ...lease,
      spec: spec(mine && held.acquireTime ? this.#microTime(new Date(held.acquireTime).getTime()) : this.#microTime(now), (held.leaseTransitions ?? 0) + (mine ? 0 : 1)),
    };
    try {
      await this.#api.replaceNamespacedLease({ name, namespace, body });
    } catch (err) {
      if (isApiError(err, 409)) return; // another candidate wrote first: read again next round
      throw err;
    }
    this.#renewed(now);
  }

  #renewed(at: number): void {
    this.#lastRenewAt = at;
    this.#observed = undefined;
    if (this.#stopped) return;
    clearTimeout(this.#deadline);
    // Not renewed again within the renew deadline: stop leading before the Lease expires for others.
    this.#deadline = setTimeout(() => {
      this.#o.onWarning?.(`Lease ${this.#o.namespace}/${this.#o.name} not renewed for ${this.#o.renewDeadlineMs} ms: standing down`);
      this.#lose();
    }, Math.max(0, this.#lastRenewAt + this.#o.renewDeadlineMs - this.#o.now()));
    this.#deadline.unref();
    if (!this.#leading) {
      this.#leading = true;
      this.#o.onStartedLeading();
    }
  }

  #lose(): void {
    clearTimeout(this.#deadline);
    if (!this.#leading) return;
    this.#leading = false;
    this.#o.onStoppedLeading();
  }

  /** Gives the Lease up: no holder, and expired, so a standby takes it at its next try. */
  async #release(): Promise<void> {
    const { namespace, name, identity } = this.#o;
    const lease = await this.#api.readNamespacedLease({ name, namespace });
    if (lease.spec?.holderIdentity !== identity) return;
    const now = this.#microTime(this.#o.now());
    await this.#api.replaceNamespacedLease({
      name,
      namespace,
      body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now } },
    });
  }
}

/** `call`, or a rejection once `ms` have passed without an answer. */
function within<T>(ms: number, call: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from the API server within ${ms} ms`)), ms);
  });
  call.catch(() => {}); // answered after the deadline: nobody waits for it
  return Promise.race([call, late]).finally(() => clearTimeout(timer));
}
