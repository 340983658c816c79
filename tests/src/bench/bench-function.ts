// The events benchmark's function (tests/fixtures/bench-events) as the bench sees it: the body
// each message carries, and the function's own routes, read through the gateway, that tell what
// reached the handler and when.

import { Pool } from 'undici';
import { waitFor } from '@kubefn/platform/testing';

/** The wall clock the bench and the handler both read: ms since the epoch, sub-ms resolution. */
export const wallMs = (): number => performance.timeOrigin + performance.now();

/** A message's body: "<tag> <seq> <sentMs>", sentMs read just before sending it (0: not timed). */
export const messageBody = (tag: string, seq: number, sentMs = wallMs()): string => `${tag} ${seq} ${sentMs}`;

export interface TagStats {
  /** Messages of the tag handled, and how many distinct sequence numbers among them. */
  count: number;
  distinct: number;
  /** When the first and the last reached the handler, on the bench's clock. */
  firstAt: number;
  lastAt: number;
  /** Send-to-handler latency of each timed message, ms. */
  latencies?: number[];
}

export class BenchFunction {
  readonly #pool: Pool;
  readonly #base: string;
  /** The handler's clock minus the bench's, ms. */
  offsetMs = 0;

  constructor(gatewayUrl: string, name: string) {
    this.#pool = new Pool(gatewayUrl, { connections: 4 });
    this.#base = `/function/${name}`;
  }

  async #get<T>(p: string): Promise<T> {
    const res = await this.#pool.request({ path: this.#base + p, method: 'GET' });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`GET ${this.#base}${p} answered ${res.statusCode}: ${text}`);
    return JSON.parse(text) as T;
  }

  async stats(tag: string, latencies = false): Promise<TagStats> {
    const s = await this.#get<TagStats>(`/stats?tag=${tag}${latencies ? '' : '&latencies=0'}`);
    const o = this.offsetMs;
    return { ...s, firstAt: s.firstAt - o, lastAt: s.lastAt - o, ...(s.latencies ? { latencies: s.latencies.map((l) => l - o) } : {}) };
  }

  /**
   * Sets offsetMs from the probe with the shortest round trip (the handler's clock read halfway
   * through it, within half that round trip); returns that round trip, ms.
   */
  async measureOffset(probes = 50): Promise<number> {
    let best = Infinity;
    for (let i = 0; i < probes; i++) {
      const t0 = wallMs();
      const { now } = await this.#get<{ now: number }>('/clock');
      const t1 = wallMs();
      if (t1 - t0 < best) {
        best = t1 - t0;
        this.offsetMs = now - (t0 + t1) / 2;
      }
    }
    return best;
  }

  /**
   * Waits until `expected` distinct messages of `tag` were handled or, when messages may be
   * dropped, until none more arrived for `quietMs`.
   */
  async settle(tag: string, expected: number, options: { mayDrop: boolean; timeoutMs: number; quietMs?: number }): Promise<TagStats> {
    let last = -1;
    let lastChange = Date.now();
    return waitFor(
      async () => {
        const s = await this.stats(tag);
        if (s.distinct >= expected) return s;
        if (s.count !== last) {
          last = s.count;
          lastChange = Date.now();
        } else if (options.mayDrop && Date.now() - lastChange > (options.quietMs ?? 2000)) return s;
        return undefined;
      },
      { timeoutMs: options.timeoutMs, maxIntervalMs: 100, what: `${expected} messages of ${tag} handled` },
    );
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}
