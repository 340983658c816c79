// Probes the runtime's /readyz of pods the kubelet has not reported ready yet, and counts them
// ready as soon as it answers, as Knative's activator does. The kubelet probes at most once a
// second, so this takes up to a second off a cold start. The gateway composes it into its driver;
// the controller has no use for it.

import type { Endpoint } from '../driver.js';
import { adminPaths } from '../runtime-contract.js';

export interface PendingPodProberOptions {
  /**
   * How long a pod found ready by its own probe counts as ready without its EndpointSlice
   * confirming it, ms (default 5000).
   */
  probedReadyMs?: number;
  /** Pause between probes of one pod, ms (default 50). */
  intervalMs?: number;
  /** Longest one pod is probed, ms (default 60000). */
  giveUpMs?: number;
}

interface Probe {
  endpoint: Endpoint;
  /** Until when its own probe's answer counts; 0 while not (yet) ready. */
  readyUntil: number;
  stop: AbortController;
}

export class PendingPodProber {
  readonly #probedReadyMs: number;
  readonly #intervalMs: number;
  readonly #giveUpMs: number;
  /** Per function, per endpoint id. */
  readonly #probes = new Map<string, Map<string, Probe>>();
  readonly #listeners = new Set<(name: string) => void>();
  #closed = false;

  constructor(options: PendingPodProberOptions = {}) {
    this.#probedReadyMs = options.probedReadyMs ?? 5000;
    this.#intervalMs = options.intervalMs ?? 50;
    this.#giveUpMs = options.giveUpMs ?? 60_000;
  }

  /** Calls `listener(name)` whenever what track(name) returns may have changed. */
  subscribe(listener: (name: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Starts probing the pods of `name` that are pending now, stops for those that are no longer
   * (ready per their slice, terminating or gone), and returns the pending ones whose own probe
   * says ready.
   */
  track(name: string, pending: Endpoint[]): Endpoint[] {
    if (this.#closed) return [];
    const probes = this.#probes.get(name) ?? new Map<string, Probe>();
    for (const [id, p] of probes) {
      if (!pending.some((e) => e.id === id && e.adminUrl === p.endpoint.adminUrl)) {
        p.stop.abort();
        probes.delete(id);
      }
    }
    for (const endpoint of pending) {
      if (probes.has(endpoint.id)) continue;
      const probe: Probe = { endpoint, readyUntil: 0, stop: new AbortController() };
      probes.set(endpoint.id, probe);
      void this.#probeUntilReady(name, probe);
    }
    if (probes.size) this.#probes.set(name, probes);
    else this.#probes.delete(name);
    const now = Date.now();
    return [...probes.values()].filter((p) => p.readyUntil > now).map((p) => p.endpoint);
  }

  close(): void {
    this.#closed = true;
    for (const probes of this.#probes.values()) for (const p of probes.values()) p.stop.abort();
    this.#probes.clear();
    this.#listeners.clear();
  }

  #changed(name: string): void {
    for (const listener of this.#listeners) listener(name);
  }

  /** GET /readyz every intervalMs (for at most giveUpMs) until it answers 200. */
  async #probeUntilReady(name: string, probe: Probe): Promise<void> {
    const { signal } = probe.stop;
    const deadline = Date.now() + this.#giveUpMs;
    while (!signal.aborted && Date.now() < deadline) {
      try {
        const res = await fetch(`${probe.endpoint.adminUrl}${adminPaths.ready}`, { signal: AbortSignal.any([signal, AbortSignal.timeout(1000)]) });
        await res.body?.cancel();
        if (res.ok) {
          probe.readyUntil = Date.now() + this.#probedReadyMs;
          this.#changed(name);
          // When the slice has not confirmed it by then, stop counting on the probe.
          setTimeout(() => {
            if (!signal.aborted) this.#changed(name);
          }, this.#probedReadyMs + 10).unref();
          return;
        }
      } catch {
        // not listening yet
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.#intervalMs);
        signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
      });
    }
  }
}
