// The Driver: how kubefn runs replicas of a function, on our own types. Every driver passes the
// conformance suite in ./testing.

import type { ErrorBody } from './errors.js';
import type { SecretStore } from './secrets.js';
import type { FunctionSpec } from './spec.js';

/** How a function's replicas start: from a warm pool, or as a new process or container (and why). */
export type ColdStartPath = { path: 'warm-pool' } | { path: 'process-start' | 'container-start' | 'pod-start'; reason: string };

/** A warm pool's counts. */
export interface WarmPoolStats {
  /** Idle runtimes asked for. */
  size: number;
  /** The count the memory budget allows, at the resident size measured so far. */
  allowed: number;
  idle: number;
  starting: number;
  /** Runtimes handed to functions since the pool opened. */
  taken: number;
  /** Runtimes that died or timed out before they were warm. */
  failed: number;
}

export interface FunctionStatus {
  spec: FunctionSpec;
  /** Replicas the driver is asked to run. */
  replicas: number;
  /** Replicas that passed readiness and are in endpoints(). */
  readyReplicas: number;
  createdAt: string;
  updatedAt: string;
  /**
   * Why replicas are missing, when the driver knows: the last failed start (START_FAILED) or
   * crash (REPLICA_FAILED). Cleared once a replica of the current spec is ready, except a kill
   * for memory (OUT_OF_MEMORY), which stays until the spec changes: its replacement would leak too,
   * and a kill for failing liveness (UNHEALTHY), likewise: its replacement may block again.
   */
  lastError?: ErrorBody;
  /**
   * Ready replicas that run the current spec; readyReplicas minus this are left from before an
   * update. A deploy is done when every ready replica runs it (see rolloutState). Every kubefn
   * driver reports this and the two generations (the conformance suite checks); a status
   * without them comes from an older driver.
   */
  updatedReplicas?: number;
  /** Goes up with every deploy that changed the spec. */
  generation?: number;
  /**
   * The generation replicas started from now on run. Below `generation` while the driver has
   * not acted on the latest spec yet (Kubernetes: the controller has not written it into the
   * Deployment, or the Deployment controller has not observed that).
   */
  observedGeneration?: number;
  /**
   * The current spec's handler could not load in a replica (code LOAD_FAILED): its module threw
   * on import, it has no usable default export, or init() threw. `location` is file:line:column
   * in the function's source. Cleared when the spec changes or a replica of it becomes ready.
   */
  loadError?: ErrorBody;
  /**
   * What of the spec this driver does not enforce where it runs, one sentence each (a CPU limit
   * on a machine without a cpu cgroup): `fn deploy` prints them.
   */
  warnings?: string[];
  /**
   * How a replica of this function starts from zero, when the driver has a choice: specialized
   * from a warm pool (no process start), or started plainly, with the reason the pool cannot take
   * it. Absent where the driver has no pool.
   */
  coldStart?: ColdStartPath;
  /**
   * Replicas asked for that the nodes have no room for (Kubernetes: pods the scheduler marked
   * Unschedulable), when the driver knows; absent is none known. The autoscaler stalls the
   * activation of a function with any: more replicas would not fit either.
   */
  unschedulable?: number;
  /**
   * Set while the autoscaler holds the function's activation as stalled (replicas asked for,
   * none ready within its p99 start-up; see ActivationStall in scaling-contract.ts): it adds no
   * replicas until one is ready. Absent otherwise. On Kubernetes it is the Function's
   * ActivationStalled condition; in `fn up` the gateway keeps it in memory.
   */
  activation?: FunctionActivation;
  /**
   * Set by a deploy whose change no controller reconciled in time (the Kubernetes driver, while
   * no kubefn-autoscaler runs): what was applied is stored, the status is the old one. The
   * gateway answers such a deploy 202 with this message instead of reporting success.
   */
  notReconciled?: string;
}

/** FunctionStatus.activation: a stalled activation, why, and since when. */
export interface FunctionActivation {
  state: 'ActivationStalled';
  /** One sentence, e.g. "no replica became ready within 4.2 s (p99 start-up); 3 asked for". */
  reason: string;
  /** When the stall was declared, ISO 8601. */
  since: string;
}

/** One ready replica the gateway may send requests to. */
export interface Endpoint {
  /** Unique per replica for the life of the driver, e.g. "hello-3". */
  id: string;
  /** Base URL of the function port, e.g. "http://127.0.0.1:40123". */
  url: string;
  /** Base URL of the admin port (health, readiness, metrics). */
  adminUrl: string;
}

/** A live view of a function's ready replicas. */
export interface EndpointSet {
  current(): readonly Endpoint[];
  /** Calls `listener` with the new list on every change; returns the unsubscribe function. */
  subscribe(listener: (endpoints: readonly Endpoint[]) => void): () => void;
}

export interface LogLine {
  name: string;
  /** Replica id. */
  instance: string;
  /** RFC 3339 time the line was written. */
  timestamp: string;
  text: string;
  stream: 'stdout' | 'stderr' | 'system';
}

export interface LogOptions {
  follow?: boolean;
  /** Last N lines of the history (default: all kept). */
  tail?: number;
  since?: Date;
}

export interface Driver {
  /** "process", "podman", "kubernetes". */
  readonly kind: string;
  /** The warm pool's counts, where the driver keeps one (GET /system/info shows them). */
  poolStats?(): WarmPoolStats | undefined;
  /**
   * Creates or updates a function; starts max(min, initial) replicas on create. `spec` is
   * validated (parseFunctionSpec) where it entered; drivers do not parse it again.
   */
  deploy(spec: FunctionSpec): Promise<FunctionStatus>;
  /** Stops every replica and forgets the function. NOT_FOUND if unknown. */
  remove(name: string): Promise<void>;
  list(): Promise<FunctionStatus[]>;
  /** NOT_FOUND if unknown. */
  get(name: string): Promise<FunctionStatus>;
  /**
   * Whether the function exists, read from where the driver keeps its functions, not from a
   * cache; the gateway decides create (409) and update (404) on it. Drivers whose get() reads
   * no cache may leave it out.
   */
  exists?(name: string): Promise<boolean>;
  /** Sets the desired replica count; returns before the replicas are ready. */
  scale(name: string, replicas: number): Promise<void>;
  /** Live ready replicas; empty (and later filled) for a name not deployed yet. */
  endpoints(name: string): EndpointSet;
  /** Log lines, oldest first; with `follow` it ends only when `signal` aborts or the function goes. */
  logs(name: string, options: LogOptions, signal: AbortSignal): AsyncIterable<LogLine>;
  /** Stops every replica (draining) and releases resources. Idempotent. */
  close(): Promise<void>;
  /** Where this driver keeps secrets (the /system/secrets API); absent when it keeps none. */
  readonly secrets?: SecretStore | undefined;
}

/** A small EndpointSet implementation drivers can share. */
export class MutableEndpointSet implements EndpointSet {
  #endpoints: readonly Endpoint[] = [];
  readonly #listeners = new Set<(endpoints: readonly Endpoint[]) => void>();

  current(): readonly Endpoint[] {
    return this.#endpoints;
  }

  /** How many listeners are subscribed, so a driver can drop sets nobody watches. */
  get listenerCount(): number {
    return this.#listeners.size;
  }

  subscribe(listener: (endpoints: readonly Endpoint[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  set(endpoints: readonly Endpoint[]): void {
    this.#endpoints = Object.freeze([...endpoints]);
    for (const l of this.#listeners) l(this.#endpoints);
  }

  add(endpoint: Endpoint): void {
    this.set([...this.#endpoints.filter((e) => e.id !== endpoint.id), endpoint]);
  }

  remove(id: string): void {
    if (this.#endpoints.some((e) => e.id === id)) this.set(this.#endpoints.filter((e) => e.id !== id));
  }
}
