// What a replica's runtime and whoever starts it agree on: environment in, readiness out.
// Imported by runtime-node, so it must stay dependency-free.

/** Environment variables the platform sets on every replica. */
export const runtimeEnv = {
  /** Function port; "0" lets the runtime pick a free one and report it. Default 8080. */
  port: 'PORT',
  /** Admin port (healthz, readyz, metrics); "0" picks one. Default 8081. */
  adminPort: 'ADMIN_PORT',
  /** Function name, for logs and metrics. */
  functionName: 'KUBEFN_FUNCTION',
  /** Replica id, for logs. */
  instance: 'KUBEFN_INSTANCE',
  /** Per-call deadline in ms (504 and the AbortSignal fire after it). Default 30000. */
  timeoutMs: 'KUBEFN_TIMEOUT_MS',
  /** Max in-flight calls per replica; 0 = no cap. Default 0. */
  concurrency: 'KUBEFN_CONCURRENCY',
  /** Max time to finish in-flight calls after SIGTERM, in ms. Default timeout + 5000. */
  drainMs: 'KUBEFN_DRAIN_MS',
  /** After SIGTERM, how long the port stays open for calls already on their way (each answered with Connection: close), in ms. Default 500. */
  drainLingerMs: 'KUBEFN_DRAIN_LINGER_MS',
  /** Largest request body in bytes. Default 6 MiB. */
  maxBodyBytes: 'KUBEFN_MAX_BODY_BYTES',
  /** Address to bind, default 0.0.0.0. */
  host: 'KUBEFN_HOST',
} as const;

/** Sent over the Node IPC channel (when there is one) once init() finished and both ports listen. */
export interface ReadyMessage {
  type: 'kubefn:ready';
  port: number;
  adminPort: number;
}

/** Sent over IPC when SIGTERM arrives and the replica starts to drain. */
export interface DrainingMessage {
  type: 'kubefn:draining';
}

export type RuntimeMessage = ReadyMessage | DrainingMessage;

/** Warm runtimes a platform keeps by default (`fn up --pool`). */
export const defaultWarmPoolSize = 2;
/** Default budget for the idle warm runtimes' resident memory, in bytes (`fn up --pool-memory`). */
export const defaultWarmPoolMemoryBytes = 256 * 1024 * 1024;

/**
 * Most GET and HEAD calls to one path, arriving in one turn of the gateway's event loop, that
 * share one connection to a replica, pipelined and answered in order (`fn up --pipelining`; 1: a
 * connection each). Only while the replica is steady: its last 32 answers each came within 20 ms
 * and framed by a Content-Length (gateway/src/replica-client.ts).
 */
export const defaultPipelining = 16;

/**
 * Where a warm runtime leaves its run(): a function bundle that finds it there hands it its
 * handler module rather than starting the runtime bundled with it.
 */
export const warmRunKey = Symbol.for('kubefn.warmRun');

/** Sent over IPC by a warm runtime (a pool process that holds no function yet) once it can be specialized. */
export interface WarmMessage {
  type: 'kubefn:warm';
}

/**
 * Sent over IPC to a warm runtime: become a replica of this function. It takes `env` as its
 * whole environment, `cwd` as its directory, drops to `uid`/`gid` when given, and loads `file`
 * (the function's bundle), whose runtime then reports ready as any replica does.
 */
export interface SpecializeMessage {
  type: 'kubefn:specialize';
  file: string;
  cwd: string;
  env: Record<string, string>;
  uid?: number;
  gid?: number;
}

/**
 * A warm runtime in a container (a podman pool) has no IPC channel: it listens on its admin port
 * until specialized. `GET warm` answers 200 once it is warm; `POST specialize` with
 * `authorization: Bearer <KUBEFN_WARM_TOKEN>` and a SpecializeMessage (no uid/gid: the container's
 * user stays) answers 202, closes the listener and loads the bundle, whose runtime then takes
 * the admin port as any replica does.
 */
export const warmPaths = { warm: '/kubefn/warm', specialize: '/kubefn/specialize' } as const;
/** The header a cluster pool pod's claim is signed in (see warm-claim.ts). */
export const warmSignatureHeader = 'x-kubefn-signature';
/** A cluster pool pod's environment: the gateways' public key (SPKI PEM), its app and secrets directories. */
export const warmClaimEnv = { publicKey: 'KUBEFN_WARM_PUBLIC_KEY', appDir: 'KUBEFN_WARM_APP_DIR', secretsDir: 'KUBEFN_WARM_SECRETS_DIR' } as const;
/** The variable a containerized warm runtime finds its specialization token in. */
export const warmTokenEnv = 'KUBEFN_WARM_TOKEN';

/**
 * Exit code of a replica whose handler could not load: the module threw while it was imported,
 * it has no usable default export, or init() threw. Starting the same code again fails the same
 * way, so whoever started it reports the load error rather than a crash. 78 is EX_CONFIG
 * (sysexits.h).
 */
export const loadFailedExitCode = 78;

/** Starts the one stderr line (and termination message) that carries a LoadFailure as JSON. */
export const loadFailedPrefix = 'kubefn:load-failed ';

/** Kubernetes' default terminationMessagePath: the runtime writes the load-failed line there when it exists. */
export const terminationLogPath = '/dev/termination-log';

/** Why a handler could not load, as the runtime reports it. */
export interface LoadFailure {
  /** 'import': the module threw while loading; 'export': no usable default export; 'init': init() threw. */
  stage: 'import' | 'export' | 'init';
  message: string;
  /** Where in the function's source, from the source-mapped stack: "handler.js:3:9". */
  location?: string;
}

/** Longest LoadFailure message kept, in characters. */
export const loadFailureMessageMax = 1000;

/** The line a runtime writes for `failure`. */
export function formatLoadFailure(failure: LoadFailure): string {
  return loadFailedPrefix + JSON.stringify(failure);
}

/** The LoadFailure in `text` (one output line, or a termination message of several), or undefined. */
export function parseLoadFailure(text: string): LoadFailure | undefined {
  for (const line of text.split('\n')) {
    const at = line.indexOf(loadFailedPrefix);
    if (at < 0) continue;
    let value: unknown;
    try {
      value = JSON.parse(line.slice(at + loadFailedPrefix.length));
    } catch {
      continue;
    }
    const v = value as Partial<LoadFailure>;
    if (typeof v !== 'object' || v === null || typeof v.message !== 'string') continue;
    const stage = v.stage === 'export' || v.stage === 'init' ? v.stage : 'import';
    const failure: LoadFailure = { stage, message: v.message.slice(0, loadFailureMessageMax) };
    if (typeof v.location === 'string' && v.location) failure.location = v.location.slice(0, 300);
    return failure;
  }
  return undefined;
}

/** The JSON body of an error answer, from the runtime or the gateway (errors.ts builds it). */
export interface ErrorBody {
  code: string;
  message: string;
  hint?: string;
  fields?: { field: string; message: string }[];
  callId?: string;
  /** Where in the function's source the error is, as file:line:column (LOAD_FAILED). */
  location?: string;
}

/** Admin-port paths. */
export const adminPaths = { health: '/healthz', ready: '/readyz', metrics: '/metrics' } as const;

/** Headers on the runtime <-> gateway hop. */
export const runtimeHeaders = {
  callId: 'x-call-id',
  startTime: 'x-start-time',
  /** Set on a 503 the runtime sent without running the handler: safe to retry elsewhere. */
  overloaded: 'x-kubefn-overloaded',
  /** Set on a 503 from a draining replica: safe to retry elsewhere. */
  draining: 'x-kubefn-draining',
} as const;
