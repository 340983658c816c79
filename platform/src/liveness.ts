// Liveness of a running replica: probes its admin port's /healthz on a period, one probe at a
// time, and says when it stops answering (out of rotation), answers again (back in), or has
// failed enough probes in a row to be killed. The runtime answers /healthz from its event loop,
// so a handler that spins (`while (true) {}`) or blocks the loop for seconds fails it.

import { request } from 'node:http';
import type { Endpoint } from './driver.js';
import { KubefnError, type ErrorBody } from './errors.js';
import type { Replica } from './replica.js';
import { adminPaths } from './runtime-contract.js';

export interface LivenessSettings {
  /** Time between the starts of two probes, in ms. */
  periodMs: number;
  /** How long one probe waits for an answer, in ms. */
  timeoutMs: number;
  /** Failed probes in a row after which the replica is declared dead and killed. */
  failureThreshold: number;
}

/**
 * A probe every second, each given a second, and three failures in a row: a replica whose event
 * loop has not turned for 3 to 4 s is killed. The runtime answers /healthz within milliseconds
 * while its loop turns, so a second is ample even on a loaded machine; one failure alone (a GC
 * pause, a brief CPU burst) takes the replica out of rotation but does not kill it. Three s of
 * a blocked loop is already three s in which every other call on that replica waits.
 */
export const defaultLiveness: LivenessSettings = { periodMs: 1000, timeoutMs: 1000, failureThreshold: 3 };

/** Checks settings from a driver's options; a bad value is an INVALID_SPEC error naming the field. */
export function livenessSettings(given: Partial<LivenessSettings> | undefined): LivenessSettings {
  const s = { ...defaultLiveness, ...given };
  for (const [field, min] of [['periodMs', 10], ['timeoutMs', 10], ['failureThreshold', 1]] as const) {
    const v = s[field];
    if (!Number.isInteger(v) || v < min) {
      throw new KubefnError('INVALID_SPEC', `liveness.${field} must be a whole number of at least ${min}, not ${String(v)}`, {
        hint: 'the defaults are periodMs 1000, timeoutMs 1000, failureThreshold 3',
        fields: [{ field: `liveness.${field}`, message: `must be a whole number >= ${min}` }],
      });
    }
  }
  return s;
}

/** Where a replica stands: how many probes in a row failed, and whether it was declared dead. */
export interface LivenessState {
  failures: number;
  dead: boolean;
}

/** What one probe's outcome means: first failure (out of rotation), recovered (back in), dead (kill it). */
export type LivenessEvent = 'failing' | 'recovered' | 'dead' | undefined;

export const initialLiveness: LivenessState = { failures: 0, dead: false };

/**
 * The state machine, pure: the next state after one probe, and what changed. Once dead it stays
 * dead (a late answer does not bring back a replica that is being killed).
 */
export function livenessStep(state: LivenessState, ok: boolean, failureThreshold: number): { state: LivenessState; event: LivenessEvent } {
  if (state.dead) return { state, event: undefined };
  if (ok) return { state: initialLiveness, event: state.failures > 0 ? 'recovered' : undefined };
  const failures = state.failures + 1;
  if (failures >= failureThreshold) return { state: { failures, dead: true }, event: 'dead' };
  return { state: { failures, dead: false }, event: failures === 1 ? 'failing' : undefined };
}

/** One probe's result: ok, or why not ("no answer within 1000 ms", "HTTP 500", "connect ECONNREFUSED"). */
export type ProbeResult = { ok: true } | { ok: false; reason: string };

export type Probe = (url: string, timeoutMs: number) => Promise<ProbeResult>;

/** GET `url` on a fresh connection; ok on a 2xx within `timeoutMs`. Never rejects. */
export const httpProbe: Probe = (url, timeoutMs) =>
  new Promise((resolve) => {
    let settled = false;
    const done = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(result);
    };
    // agent: false, so a probe never waits behind another request for a pooled socket.
    const req = request(url, { method: 'GET', agent: false }, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      done(status >= 200 && status < 300 ? { ok: true } : { ok: false, reason: `HTTP ${status}` });
    });
    req.on('error', (err) => done({ ok: false, reason: err.message }));
    const timer = setTimeout(() => done({ ok: false, reason: `no answer within ${timeoutMs} ms` }), timeoutMs);
    req.end();
  });

export interface LivenessListener {
  /** The first failed probe after a passing one. */
  failing(reason: string): void;
  /** A probe passed after one or more failed (below the threshold). */
  recovered(): void;
  /** `failureThreshold` probes in a row failed; the prober has stopped. */
  dead(reason: string): void;
}

/**
 * Probes one replica until stop() or until it is declared dead. At most one probe is in flight;
 * the next starts `periodMs` after the previous one started, or at once if that one took longer.
 */
export class LivenessProber {
  readonly #url: string;
  readonly #settings: LivenessSettings;
  readonly #listener: LivenessListener;
  readonly #probe: Probe;
  #state: LivenessState = initialLiveness;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(url: string, settings: LivenessSettings, listener: LivenessListener, probe: Probe = httpProbe) {
    this.#url = url;
    this.#settings = settings;
    this.#listener = listener;
    this.#probe = probe;
    this.#schedule(settings.periodMs);
  }

  get state(): LivenessState {
    return this.#state;
  }

  /** Idempotent; a probe in flight finishes but reports nothing. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#tick(), Math.max(0, delayMs));
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    const started = Date.now();
    const result = await this.#probe(this.#url, this.#settings.timeoutMs);
    if (this.#stopped) return;
    const { state, event } = livenessStep(this.#state, result.ok, this.#settings.failureThreshold);
    this.#state = state;
    const reason = result.ok ? '' : result.reason;
    if (event === 'dead') {
      this.stop();
      this.#listener.dead(reason);
      return;
    }
    if (event === 'failing') this.#listener.failing(reason);
    else if (event === 'recovered') this.#listener.recovered();
    this.#schedule(started + this.#settings.periodMs - Date.now());
  }
}

/** What watchLiveness needs from the driver for one replica. */
export interface LivenessHooks {
  /** The driver still counts on this replica (not stopped, replaced, removed or closing). */
  tracked(): boolean;
  /** The function's endpoints: the replica leaves them while its probes fail. */
  endpoints: { add(endpoint: Endpoint): void; remove(id: string): void };
  /** A system line in the function's log. */
  log(text: string): void;
  /** Called once the replica was killed for failing liveness, with the reason. */
  killed(message: string): void;
}

/**
 * Probes a ready replica's /healthz. The first failed probe takes it out of rotation (as a failed
 * readiness probe does on Kubernetes); a passing one puts it back; `failureThreshold` failures in
 * a row kill it with SIGKILL (a spinning event loop never runs SIGTERM's drain), and the driver
 * (hooks.killed) handles it as a crash: replaced, with crash backoff.
 */
export function watchLiveness(
  replica: Pick<Replica, 'id' | 'state' | 'kill'>,
  endpoint: Endpoint,
  settings: LivenessSettings,
  hooks: LivenessHooks,
  probe: Probe = httpProbe,
): LivenessProber {
  const id = replica.id;
  return new LivenessProber(`${endpoint.adminUrl}${adminPaths.health}`, settings, {
    failing: (reason) => {
      if (!hooks.tracked()) return;
      hooks.endpoints.remove(id);
      hooks.log(`replica ${id} failed a liveness probe (${reason}): out of rotation until it answers`);
    },
    recovered: () => {
      if (!hooks.tracked() || replica.state !== 'ready') return;
      hooks.endpoints.add(endpoint);
      hooks.log(`replica ${id} answers its liveness probe again: back in rotation`);
    },
    dead: (reason) => {
      if (!hooks.tracked()) return;
      hooks.endpoints.remove(id);
      const message =
        `replica ${id} was unresponsive: ${settings.failureThreshold} liveness probe(s) in a row failed ` +
        `(GET ${adminPaths.health} every ${settings.periodMs} ms, ${settings.timeoutMs} ms each; last: ${reason}); killed with SIGKILL at ${new Date().toISOString()}`;
      hooks.log(`replica ${id} is unresponsive (${settings.failureThreshold} liveness probe(s) in a row failed; last: ${reason}): out of rotation, killing it with SIGKILL`);
      replica.kill();
      hooks.killed(message);
    },
  }, probe);
}

/** The function's lastError after a replica was killed for failing liveness. */
export function unhealthyError(functionName: string, message: string): ErrorBody {
  return {
    code: 'UNHEALTHY',
    message,
    hint:
      `a handler kept the replica's event loop busy (a loop that never yields, or long synchronous work): ` +
      `move CPU-heavy work to a worker thread or split it with awaits; see \`fn logs ${functionName}\``,
  };
}
