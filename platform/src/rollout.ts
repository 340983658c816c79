// When a deploy is done: the new version is what answers. Pure, shared by `fn deploy`, the
// conformance suite and anyone else who waits on a FunctionStatus.

import type { ErrorBody, LoadFailure } from './runtime-contract.js';

/** The parts of a function's status a rollout is judged on (FunctionStatus, or the gateway's body). */
export interface RolloutView {
  /** Replicas asked for. */
  replicas: number;
  /** Replicas ready to take calls, whatever spec they run. */
  readyReplicas: number;
  /** Ready replicas that run the current spec. */
  updatedReplicas: number;
  generation: number;
  observedGeneration: number;
  loadError?: ErrorBody | undefined;
}

export type RolloutState =
  /** 'updated': every ready replica runs the new spec; 'at-zero': none runs, and the next call starts the new one. */
  | { state: 'done'; reason: 'updated' | 'at-zero' }
  | { state: 'progressing'; message: string }
  /** The new spec's handler cannot load: waiting longer does not help. */
  | { state: 'failed'; error: ErrorBody };

/**
 * Done when the new version is what answers: at least one ready replica and every ready replica
 * runs the current spec, or the function is at zero with the spec applied (so the next call
 * starts the new version). A replica of the new spec that crash-loops is never ready, so it is
 * never counted. Failed at once on a load error of the current spec.
 *
 * Example: replicas 2, ready 2, updated 1 -> progressing (one old replica still answers);
 * replicas 0, ready 0, observed = generation -> done at zero.
 */
export function rolloutState(s: RolloutView): RolloutState {
  if (s.observedGeneration < s.generation) {
    return { state: 'progressing', message: `the platform has not applied generation ${s.generation} yet (at ${s.observedGeneration})` };
  }
  if (s.loadError) return { state: 'failed', error: s.loadError };
  if (s.replicas === 0) {
    if (s.readyReplicas === 0) return { state: 'done', reason: 'at-zero' };
    return { state: 'progressing', message: `${s.readyReplicas} replica(s) still answering after a scale to zero` };
  }
  if (s.updatedReplicas > 0 && s.updatedReplicas >= s.readyReplicas) return { state: 'done', reason: 'updated' };
  return {
    state: 'progressing',
    message: `${s.updatedReplicas} of ${s.readyReplicas} ready replica(s) run the new version (${s.replicas} wanted)`,
  };
}

/** The LOAD_FAILED error a driver reports for a runtime's LoadFailure. */
export function loadErrorBody(functionName: string, failure: LoadFailure): ErrorBody {
  const what =
    failure.stage === 'init' ? 'init() threw' : failure.stage === 'export' ? 'the handler module is not usable' : 'the handler module threw while loading';
  const body: ErrorBody = {
    code: 'LOAD_FAILED',
    message: `${what}: ${failure.message}`,
    hint: `fix the handler and deploy again; the replica's output is in \`fn logs ${functionName}\``,
  };
  if (failure.location) body.location = failure.location;
  return body;
}
