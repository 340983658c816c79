// What the primary of `fn up --workers N` and its gateway workers say to each other over the
// node:cluster IPC channel (worker-pool.ts has the design). Pushes go over IPC; a worker's
// questions with answers (a function's status, a cold poke) go over loopback HTTP to the
// primary's internal server, as a cluster gateway asks the API server and the autoscaler.

import type { Endpoint, ErrorBody } from '@kubefn/platform';

/** Sent once to a new worker, before anything else: all it needs to serve. */
export interface WorkerConfig {
  /** This worker's slot, 0-based; a worker restarted in a slot has its index. */
  index: number;
  /** Gateways that split each function's containerConcurrency: the workers and the primary's own. */
  shareCount: number;
  port: number;
  host: string;
  /**
   * A random token of this run: the primary's internal server checks it, and the worker's own
   * /system routes (its stats, which the primary's autoscaler reads) take it. The users' token
   * is checked by the primary's gateway, where the management API runs.
   */
  internalToken: string;
  /** The primary's gateway on loopback: the management API, builds, async calls. */
  primaryGateway: string;
  /** The primary's internal server on loopback: function status and cold pokes. */
  primaryInternal: string;
  /** The primary's driver kind ("process", "podman"), for /system/info-like answers. */
  driverKind: string;
  maxBodyBytes?: number;
  pipelining?: number;
  /** JSON log lines on stdout (`fn up --json`), else human lines on stderr. */
  json: boolean;
  /** A log line per request. */
  requestLog: boolean;
}

export type ToWorker =
  | { kind: 'config'; config: WorkerConfig }
  /** The ready replicas of a function the worker watches: at once on watch, then on every change. */
  | { kind: 'endpoints'; name: string; endpoints: Endpoint[] }
  /** A function was deployed, updated or removed through the management API: forget its cached spec. */
  | { kind: 'changed'; name: string }
  /** Close (draining calls in flight) and exit. */
  | { kind: 'stop' };

export type ToPrimary =
  /** The worker listens for messages: the primary sends its config. */
  | { kind: 'hello' }
  /** Listening: `url` on the shared port, `statsUrl` its own loopback port for GET /system/stats. */
  | { kind: 'ready'; url: string; statsUrl: string }
  | { kind: 'failed'; error: ErrorBody }
  | { kind: 'watch'; name: string }
  | { kind: 'unwatch'; name: string }
  /** The worker's invocation counts since it started, per function (monotonic: the primary takes differences). */
  | { kind: 'invocations'; totals: [string, number][] };

/** The primary's internal route for a function's status (a FunctionStatus as JSON). */
export const functionStatusRoute = '/internal/functions/:name';
export function functionStatusPath(name: string): string {
  return `/internal/functions/${encodeURIComponent(name)}`;
}

/** Whether `message` is a message of this protocol of one of `kinds` (IPC carries anything a process sends). */
export function isMessage<M extends { kind: string }>(message: unknown, kinds: readonly M['kind'][]): message is M {
  return typeof message === 'object' && message !== null && kinds.includes((message as { kind?: unknown }).kind as M['kind']);
}
