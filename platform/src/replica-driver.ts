// The driver core shared by every driver whose replicas this process starts and watches itself
// (child processes, podman containers): desired counts, rolling updates, crash backoff, logs,
// saved state. A ReplicaLauncher says how one replica starts and stops.

import type { Driver, EndpointSet, FunctionStatus, LogLine, LogOptions } from './driver.js';
import { EndpointSets } from './endpoint-sets.js';
import { isKubefnError, KubefnError, type ErrorBody } from './errors.js';
import { FunctionStore } from './function-store.js';
import { LogBuffer } from './log-buffer.js';
import { livenessSettings, unhealthyError, watchLiveness, type LivenessProber, type LivenessSettings } from './liveness.js';
import { describeExit, describeFailure, type Replica, type ReplicaExit, type ReplicaLauncher } from './replica.js';
import { nextBackoff, planReplicas, type CrashBackoff } from './replica-plan.js';
import { loadErrorBody } from './rollout.js';
import { canonicalJson, replicaTemplateKey } from './process-launch.js';
import type { SecretStore } from './secrets.js';
import { timeoutMs, type FunctionSpec } from './spec.js';

export interface ReplicaDriverOptions {
  /**
   * Where secrets come from (FileSecretStore under the state directory); without one, a
   * function that lists secrets is refused. It is also the driver's `secrets`.
   */
  secrets?: SecretStore;
  /** Where specs are saved so restore() brings functions back; nothing is saved without it. */
  stateDir?: string;
  /** How long a replica may take to report ready before it is killed, in ms (default 30000). */
  startTimeoutMs?: number;
  /** Log lines kept per function (default 5000). */
  logLinesPerFunction?: number;
  /** Cap on replicas per function on this machine, below the spec's scale.max (default 32). */
  maxReplicasPerFunction?: number;
  /** Problems worth telling a person about (a saved function that cannot come back). */
  onWarning?: (message: string) => void;
  /** How ready replicas' /healthz is probed (liveness.ts has the defaults: every 1 s, 1 s each, 3 failures). */
  liveness?: Partial<LivenessSettings>;
  /**
   * The largest request body the platform's gateway sends a function: replicas accept as much
   * (KUBEFN_MAX_BODY_BYTES). Default: the runtime's own (6 MiB).
   */
  maxBodyBytes?: number;
}

interface ManagedFunction<A> {
  name: string;
  spec: FunctionSpec;
  /** Canonical JSON of the spec: an equal string means an unchanged deploy. */
  specJson: string;
  /** Canonical JSON of what a replica depends on: a change means a rolling restart. */
  templateKey: string;
  /** What the launcher prepared for the current spec: a bundle file, a pulled image. */
  artifact: A;
  desired: number;
  /** Replicas starting, ready or draining on their own; stopped ones move to `stopping`. */
  replicas: Map<string, Replica>;
  stopping: Set<Promise<unknown>>;
  logs: LogBuffer;
  createdAt: string;
  updatedAt: string;
  backoff: CrashBackoff;
  retryTimer: NodeJS.Timeout | undefined;
  lastError: ErrorBody | undefined;
  /** The current spec's handler failed to load (LOAD_FAILED); cleared by a new spec or a ready replica of this one. */
  loadError: ErrorBody | undefined;
  /** What the launcher's check found wrong after a failure (a corrupt bundle); shown as lastError until a replica is ready or the function is deployed again. */
  artifactError: ErrorBody | undefined;
  /** A launcher check runs (one at a time per function). */
  checking: boolean;
  /** Restored without an artifact (its prepare failed): no replica starts until a deploy prepares one. */
  unprepared: boolean;
  /** Goes up with every spec change; replicas start from the current spec at once, so it is also the observed one. */
  generation: number;
  removed: boolean;
}

/**
 * Failures a ready replacement says nothing about (a leak, a handler that blocks the event loop):
 * they stay in the status until the spec changes.
 */
function keptUntilSpecChange(error: ErrorBody | undefined): boolean {
  return error?.code === 'OUT_OF_MEMORY' || error?.code === 'UNHEALTHY';
}

/** Extra time past the function timeout a stopping replica gets to finish its calls, in ms. */
const drainGraceMs = 10_000;

export class ReplicaDriver<A> implements Driver {
  readonly kind: string;
  readonly secrets: SecretStore | undefined;
  readonly #launcher: ReplicaLauncher<A>;
  readonly #store: FunctionStore | undefined;
  readonly #startTimeoutMs: number;
  readonly #logLines: number;
  readonly #maxReplicas: number;
  readonly #onWarning: (message: string) => void;
  readonly #liveness: LivenessSettings;
  /** The liveness prober of each ready replica, until it stops or exits. */
  readonly #probers = new Map<Replica, LivenessProber>();
  readonly #functions = new Map<string, ManagedFunction<A>>();
  readonly #endpointSets = new EndpointSets((name) => this.#functions.has(name));
  /** Last replica number per name, kept after remove() so replica ids stay unique. */
  readonly #seqs = new Map<string, number>();
  readonly #locks = new Map<string, Promise<unknown>>();
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(launcher: ReplicaLauncher<A>, options: ReplicaDriverOptions) {
    this.kind = launcher.kind;
    this.secrets = options.secrets;
    this.#launcher = launcher;
    this.#store = options.stateDir === undefined ? undefined : new FunctionStore(options.stateDir);
    this.#startTimeoutMs = options.startTimeoutMs ?? 30_000;
    this.#logLines = options.logLinesPerFunction ?? 5000;
    this.#maxReplicas = options.maxReplicasPerFunction ?? 32;
    this.#onWarning = options.onWarning ?? ((message) => process.emitWarning(message, `Kubefn${launcher.kind}Driver`));
    this.#liveness = livenessSettings(options.liveness);
  }

  /**
   * Brings back every function saved in `stateDir` at its initial replica count. Call it once,
   * before deploying. Returns the names restored; the ones that cannot come back go to onWarning.
   */
  async restore(): Promise<string[]> {
    if (!this.#store) return [];
    const loaded = await this.#store.loadAll();
    for (const f of loaded.failed) this.#onWarning(`cannot restore ${f.file}: ${f.error.message}`);
    const restored: string[] = [];
    for (const saved of loaded.functions) {
      const name = saved.spec.name;
      await this.#serial(name, async () => {
        if (this.#closed || this.#functions.has(name)) return;
        try {
          const artifact = await this.#launcher.prepare(saved.spec);
          const fn = this.#create(saved.spec, artifact, saved.createdAt, saved.updatedAt);
          fn.logs.append(name, 'system', `restored ${name} from saved state`);
          restored.push(name);
          this.#reconcile(fn);
        } catch (err) {
          this.#onWarning(`cannot restore function "${name}": ${(err as Error).message}`);
          // A stored bundle that failed its digest check: the function stays listed, with no
          // replicas and the reason as its lastError, until a deploy brings a good copy.
          if (isKubefnError(err, 'CORRUPT')) {
            const fn = this.#create(saved.spec, undefined as A, saved.createdAt, saved.updatedAt);
            fn.unprepared = true;
            fn.artifactError = (err as KubefnError).toJSON();
            fn.logs.append(name, 'system', `cannot start ${name}: ${fn.artifactError.message}`);
            restored.push(name);
          }
        }
      });
    }
    return restored;
  }

  /** `spec` was validated where it entered (the management API, fn.yaml, the state on disk). */
  async deploy(spec: FunctionSpec): Promise<FunctionStatus> {
    this.#checkOpen();
    return this.#serial(spec.name, async () => {
      const existing = this.#functions.get(spec.name);
      const specJson = canonicalJson(spec);
      if (existing?.specJson === specJson) {
        // The same spec again while its replicas fail (none ready, a last error) or cannot start:
        // what it names may have been uploaded again (a bundle that failed its digest check), so
        // prepare it again and retry now.
        const failing = existing.artifactError !== undefined || existing.unprepared || (existing.lastError !== undefined && this.#endpointSets.get(existing.name).current().length === 0);
        if (!failing) return this.#status(existing);
        existing.artifact = await this.#launcher.prepare(spec);
        Object.assign(existing, { artifactError: undefined, loadError: undefined, unprepared: false, backoff: { failures: 0, nextStartAtMs: 0 } });
        clearTimeout(existing.retryTimer);
        existing.retryTimer = undefined;
        existing.logs.append(existing.name, 'system', 'deployed again unchanged: retrying replicas now');
        this.#reconcile(existing);
        return this.#status(existing);
      }
      const artifact = await this.#launcher.prepare(spec);
      const now = new Date().toISOString();
      const createdAt = existing?.createdAt ?? now;
      await this.#store?.save({ spec, createdAt, updatedAt: now });
      this.#checkOpen();
      if (!existing) {
        const fn = this.#create(spec, artifact, createdAt, now);
        fn.logs.append(fn.name, 'system', `created ${fn.name} with ${fn.desired} replica(s)`);
        this.#reconcile(fn);
        return this.#status(fn);
      }
      const templateKey = replicaTemplateKey(spec);
      if (templateKey !== existing.templateKey) {
        existing.logs.append(existing.name, 'system', `spec changed: replacing replicas one by one`);
      }
      // A new template is new code or settings: an earlier load error says nothing about it.
      if (templateKey !== existing.templateKey) existing.loadError = undefined;
      if (templateKey !== existing.templateKey && keptUntilSpecChange(existing.lastError)) existing.lastError = undefined;
      Object.assign(existing, { spec, specJson, templateKey, artifact, updatedAt: now, generation: existing.generation + 1, artifactError: undefined, unprepared: false });
      existing.desired = this.#clamp(existing, Math.max(existing.desired, spec.scale.min));
      this.#reconcile(existing);
      return this.#status(existing);
    });
  }

  async remove(name: string): Promise<void> {
    await this.#serial(name, async () => {
      const fn = this.#mustGet(name);
      // Forget the saved spec first: if that fails, nothing has changed yet.
      await this.#store?.remove(name);
      fn.removed = true;
      this.#functions.delete(name);
      clearTimeout(fn.retryTimer);
      for (const r of [...fn.replicas.values()]) this.#stopReplica(fn, r, 'function removed');
      this.#endpointSets.get(name).set([]);
      await Promise.all([...fn.stopping]);
      fn.logs.close();
      await this.#launcher.forget?.(name);
    });
  }

  async list(): Promise<FunctionStatus[]> {
    return [...this.#functions.values()].sort((a, b) => a.name.localeCompare(b.name)).map((fn) => this.#status(fn));
  }

  async get(name: string): Promise<FunctionStatus> {
    return this.#status(this.#mustGet(name));
  }

  async scale(name: string, replicas: number): Promise<void> {
    if (!Number.isInteger(replicas) || replicas < 0) {
      throw new KubefnError('BAD_REQUEST', `invalid replica count ${String(replicas)} for function "${name}"`, {
        hint: 'the replica count must be a whole number, 0 or more',
      });
    }
    this.#checkOpen();
    const fn = this.#mustGet(name);
    const target = this.#clamp(fn, replicas);
    if (target === fn.desired) return;
    fn.logs.append(name, 'system', `scaling from ${fn.desired} to ${target} replica(s)`);
    fn.desired = target;
    this.#reconcile(fn);
  }

  endpoints(name: string): EndpointSet {
    return this.#endpointSets.get(name);
  }

  async *logs(name: string, options: LogOptions, signal: AbortSignal): AsyncGenerator<LogLine> {
    const fn = this.#mustGet(name);
    yield* fn.logs.read(options, signal);
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    const waits: Promise<unknown>[] = [];
    for (const fn of this.#functions.values()) {
      clearTimeout(fn.retryTimer);
      for (const r of [...fn.replicas.values()]) this.#stopReplica(fn, r, 'driver closing');
      waits.push(...fn.stopping);
    }
    await Promise.all(waits);
    for (const fn of this.#functions.values()) fn.logs.close();
    await this.#launcher.close?.();
  }

  #create(spec: FunctionSpec, artifact: A, createdAt: string, updatedAt: string): ManagedFunction<A> {
    const fn: ManagedFunction<A> = {
      name: spec.name,
      spec,
      specJson: canonicalJson(spec),
      templateKey: replicaTemplateKey(spec),
      artifact,
      desired: 0,
      replicas: new Map(),
      stopping: new Set(),
      logs: new LogBuffer(spec.name, { maxLines: this.#logLines }),
      createdAt,
      updatedAt,
      backoff: { failures: 0, nextStartAtMs: 0 },
      retryTimer: undefined,
      lastError: undefined,
      loadError: undefined,
      artifactError: undefined,
      checking: false,
      unprepared: false,
      generation: 1,
      removed: false,
    };
    fn.desired = this.#clamp(fn, Math.max(spec.scale.min, spec.scale.initial));
    this.#functions.set(fn.name, fn);
    return fn;
  }

  /** Starts and stops replicas to match fn.desired; synchronous, so it never races itself. */
  #reconcile(fn: ManagedFunction<A>): void {
    if (fn.removed || this.#closed || fn.unprepared) return;
    const plan = planReplicas(
      fn.desired,
      [...fn.replicas.values()].map((r) => ({
        id: r.id,
        seq: r.seq,
        current: r.templateKey === fn.templateKey,
        ready: r.state === 'ready',
      })),
    );
    for (const id of plan.stop) {
      const r = fn.replicas.get(id)!;
      this.#stopReplica(fn, r, r.templateKey === fn.templateKey ? 'scaled down' : 'replaced by the updated spec');
    }
    if (plan.start === 0) return;
    const waitMs = fn.backoff.nextStartAtMs - Date.now();
    if (waitMs > 0) {
      fn.retryTimer ??= setTimeout(() => {
        fn.retryTimer = undefined;
        this.#reconcile(fn);
      }, waitMs);
      return;
    }
    for (let i = 0; i < plan.start; i++) this.#startReplica(fn);
  }

  #startReplica(fn: ManagedFunction<A>): void {
    const seq = (this.#seqs.get(fn.name) ?? 0) + 1;
    this.#seqs.set(fn.name, seq);
    const id = `${fn.name}-${seq}`;
    const replica = this.#launcher.start(fn.artifact, {
      id,
      seq,
      templateKey: fn.templateKey,
      spec: fn.spec,
      startTimeoutMs: this.#startTimeoutMs,
      drainMs: timeoutMs(fn.spec) + drainGraceMs,
      onLine: (r, stream, text) => fn.logs.append(r.id, stream, text),
      onReady: (r) => this.#onReady(fn, r),
      onUnroutable: (r, why) => {
        // A replica the driver stopped is out of endpoints already.
        if (r.stopRequested || fn.removed) return;
        this.#endpointSets.get(fn.name).remove(r.id);
        // Someone else asked it to stop; when it exits it is replaced like a crash.
        if (why === 'draining') fn.logs.append(r.id, 'system', `replica ${r.id} is draining`);
      },
      onExit: (r, exit) => this.#onExit(fn, r, exit),
    });
    fn.replicas.set(id, replica);
    fn.logs.append(id, 'system', `starting replica ${id} (${replica.describe()})`);
  }

  #onReady(fn: ManagedFunction<A>, r: Replica): void {
    if (fn.removed || this.#closed || fn.replicas.get(r.id) !== r || !r.endpoint) return;
    fn.logs.append(r.id, 'system', `replica ${r.id} ready at ${r.endpoint.url} after ${Date.now() - r.startedAtMs} ms`);
    if (r.templateKey === fn.templateKey) {
      if (!keptUntilSpecChange(fn.lastError)) fn.lastError = undefined;
      fn.loadError = undefined;
      fn.artifactError = undefined;
    }
    this.#endpointSets.get(fn.name).add(r.endpoint);
    this.#probers.set(r, watchLiveness(r, r.endpoint, this.#liveness, {
      tracked: () => !fn.removed && !this.#closed && fn.replicas.get(r.id) === r,
      endpoints: this.#endpointSets.get(fn.name),
      log: (text) => fn.logs.append(r.id, 'system', text),
      killed: (message) => this.#onUnhealthy(fn, r, message),
    }));
    this.#reconcile(fn);
  }

  #onExit(fn: ManagedFunction<A>, r: Replica, exit: ReplicaExit): void {
    this.#probers.get(r)?.stop();
    this.#probers.delete(r);
    const tracked = fn.replicas.get(r.id) === r;
    if (tracked) fn.replicas.delete(r.id);
    if (!fn.removed) this.#endpointSets.get(fn.name).remove(r.id);
    if (!tracked || exit.requested === 'stop') {
      fn.logs.append(r.id, 'system', `replica ${r.id} stopped (${describeExit(exit)})`);
      return;
    }
    if (fn.removed || this.#closed) return;
    const { upMs, delayMs } = this.#backOff(fn, r);
    const failure = describeFailure(r, exit, this.#startTimeoutMs, upMs);
    fn.lastError = { ...failure, hint: `see the function's logs: fn logs ${fn.name}` };
    if (exit.loadFailure && failure.code === 'LOAD_FAILED' && r.templateKey === fn.templateKey) fn.loadError = loadErrorBody(fn.name, exit.loadFailure);
    fn.logs.append(r.id, 'system', `${failure.message}; next start in ${delayMs} ms`);
    this.#reconcile(fn);
    if (this.#launcher.check && !fn.checking) void this.#checkArtifact(fn);
  }

  /** Counts a replica's failure in the function's crash backoff; says how long it was up and when the next start is. */
  #backOff(fn: ManagedFunction<A>, r: Replica): { upMs: number | undefined; delayMs: number } {
    const now = Date.now();
    const upMs = r.readyAtMs === undefined ? undefined : now - r.readyAtMs;
    const next = nextBackoff(fn.backoff, upMs, now);
    fn.backoff = { failures: next.failures, nextStartAtMs: next.nextStartAtMs };
    return { upMs, delayMs: next.delayMs };
  }

  /** After a failure: asks the launcher whether what the replicas run from is sound. */
  async #checkArtifact(fn: ManagedFunction<A>): Promise<void> {
    const { spec } = fn;
    fn.checking = true;
    try {
      await this.#launcher.check!(spec);
    } catch (err) {
      if (fn.removed || fn.spec !== spec) return;
      const body: ErrorBody = isKubefnError(err) ? (err as KubefnError).toJSON() : { code: 'INTERNAL', message: (err as Error).message };
      if (fn.artifactError?.message !== body.message) fn.logs.append(fn.name, 'system', `${body.message}${body.hint ? ` (${body.hint})` : ''}`);
      fn.artifactError = body;
    } finally {
      fn.checking = false;
    }
  }

  /**
   * A replica killed for failing liveness, as a crash: lastError and the crash backoff, and its
   * replacement starts without waiting for it to be gone (a container takes a while to remove).
   */
  #onUnhealthy(fn: ManagedFunction<A>, r: Replica, message: string): void {
    fn.replicas.delete(r.id);
    const done = r.exited;
    fn.stopping.add(done);
    void done.finally(() => fn.stopping.delete(done));
    const { delayMs } = this.#backOff(fn, r);
    fn.lastError = unhealthyError(fn.name, message);
    fn.logs.append(r.id, 'system', `${message}; next start in ${delayMs} ms`);
    this.#reconcile(fn);
  }

  /** Takes a replica out of endpoints at once, then asks it to drain, then kills it after the drain deadline. */
  #stopReplica(fn: ManagedFunction<A>, r: Replica, reason: string): void {
    this.#probers.get(r)?.stop();
    this.#probers.delete(r);
    fn.replicas.delete(r.id);
    this.#endpointSets.get(fn.name).remove(r.id);
    fn.logs.append(r.id, 'system', `stopping replica ${r.id}: ${reason}`);
    const done = r.stop();
    fn.stopping.add(done);
    void done.finally(() => fn.stopping.delete(done));
  }

  #status(fn: ManagedFunction<A>): FunctionStatus {
    const ready = this.#endpointSets.get(fn.name).current();
    const status: FunctionStatus = {
      spec: structuredClone(fn.spec),
      replicas: fn.desired,
      readyReplicas: ready.length,
      // A replica left from before an update keeps its endpoint until its replacement is ready.
      updatedReplicas: ready.filter((e) => fn.replicas.get(e.id)?.templateKey === fn.templateKey).length,
      generation: fn.generation,
      observedGeneration: fn.generation,
      createdAt: fn.createdAt,
      updatedAt: fn.updatedAt,
    };
    if (fn.lastError) status.lastError = { ...fn.lastError };
    // The cause beneath the crashes, when the launcher found one (a corrupt bundle).
    if (fn.artifactError) status.lastError = { ...fn.artifactError };
    if (fn.loadError) status.loadError = { ...fn.loadError };
    const coldStart = this.#launcher.coldStartPath?.(fn.spec);
    if (coldStart) status.coldStart = coldStart;
    const warnings = this.#launcher.warnings?.(fn.spec);
    if (warnings?.length) status.warnings = warnings;
    return status;
  }

  #clamp(fn: ManagedFunction<A>, replicas: number): number {
    return Math.max(0, Math.min(replicas, fn.spec.scale.max, this.#maxReplicas));
  }

  #mustGet(name: string): ManagedFunction<A> {
    const fn = this.#functions.get(name);
    if (!fn) {
      throw new KubefnError('NOT_FOUND', `function "${name}" not found`, { hint: 'list functions with `fn list`' });
    }
    return fn;
  }

  #checkOpen(): void {
    if (this.#closed) throw new KubefnError('SHUTTING_DOWN', `the ${this.kind} driver is shutting down`);
  }

  /** Runs operations on one function name one at a time (deploy and remove both write state). */
  #serial<T>(name: string, op: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(name) ?? Promise.resolve();
    const run = previous.then(op, op);
    const tail = run.catch(() => undefined);
    this.#locks.set(name, tail);
    void tail.then(() => {
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    });
    return run;
  }
}
