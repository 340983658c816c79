// Stats scraped over HTTP: in a cluster the autoscaler reads GET /system/stats of every gateway
// replica each second (the gateways it is given by whoever tracks them, e.g. EndpointSlices).

import { statsPath, type FunctionSample, type StatsCollection, type StatsSource } from '@kubefn/platform';

export interface StatsPeer {
  id: string;
  /** Base URL of the gateway replica, e.g. http://10.0.0.5:8080. */
  url: string;
}

export interface HttpStatsSourceOptions {
  /** The gateway replicas now; called on every collection. */
  peers: () => StatsPeer[];
  /** The gateways' management token. */
  token: string;
  /** Longest one scrape may take, ms (default 800, inside the 1 s tick). */
  timeoutMs?: number;
  /** Most functions taken from one gateway per scrape (default 10000): the reply is bounded. */
  maxSamples?: number;
  onWarning?: (message: string, fields?: Record<string, unknown>) => void;
}

export class HttpStatsSource implements StatsSource {
  readonly #options: HttpStatsSourceOptions;
  /** Peers whose last scrape failed, so a lasting failure is reported once, not every second. */
  readonly #failing = new Set<string>();

  constructor(options: HttpStatsSourceOptions) {
    this.#options = options;
  }

  /**
   * Every gateway's samples, and how many answered: a gateway that fails or times out is left
   * out and counted as not answered, so the autoscaler does not read its share as no traffic.
   */
  async collect(): Promise<StatsCollection> {
    const peers = this.#options.peers();
    const replies = await Promise.all(peers.map((p) => this.#scrape(p)));
    for (const id of this.#failing) if (!peers.some((p) => p.id === id)) this.#failing.delete(id);
    const answered = replies.filter((r) => r !== undefined);
    return { samples: answered.flat(), answered: answered.length, expected: peers.length };
  }

  async #scrape(peer: StatsPeer): Promise<FunctionSample[] | undefined> {
    try {
      const res = await fetch(`${peer.url}${statsPath}`, {
        headers: { authorization: `Bearer ${this.#options.token}` },
        signal: AbortSignal.timeout(this.#options.timeoutMs ?? 800),
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
      const samples = parseSamples(await res.json(), this.#options.maxSamples ?? 10_000);
      if (this.#failing.delete(peer.id)) this.#options.onWarning?.('gateway stats readable again', { gateway: peer.id });
      return samples;
    } catch (err) {
      if (!this.#failing.has(peer.id)) {
        this.#failing.add(peer.id);
        this.#options.onWarning?.('reading gateway stats failed; until it answers, the others\' traffic stands in for its share', {
          gateway: peer.id,
          url: peer.url,
          err: err instanceof Error ? err.message : String(err),
        });
      }
      return undefined;
    }
  }
}

/**
 * The samples of a /system/stats reply; throws on anything else. An optional `pending` that is
 * not a non-negative finite number is dropped and the rest of the sample kept: the gateway's
 * traffic still counts, and a pending count it could not read is unknown, as if not sent.
 */
export function parseSamples(body: unknown, max: number): FunctionSample[] {
  const samples = (body as { samples?: unknown } | null)?.samples;
  if (!Array.isArray(samples)) throw new Error('reply has no samples array');
  if (samples.length > max) throw new Error(`reply has ${samples.length} samples, more than ${max}`);
  return samples.map((s: unknown, i) => {
    const { name, concurrency, requests, pending } = (s ?? {}) as Record<string, unknown>;
    if (typeof name !== 'string' || !isCount(concurrency) || !isCount(requests)) {
      throw new Error(`sample ${i} is not {name, concurrency, requests}: ${JSON.stringify(s).slice(0, 120)}`);
    }
    return isCount(pending) ? { name, concurrency, requests, pending } : { name, concurrency, requests };
  });
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isFinite(n) && n >= 0;
}
