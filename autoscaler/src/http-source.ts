// Stats scraped over HTTP: in a cluster the autoscaler reads GET /system/stats of every gateway
// replica each second (the gateways it is given by whoever tracks them, e.g. EndpointSlices).
// A gateway answers with cumulative counters (StatsReply); this source keeps the last reading of
// each gateway and reports the differences, so a lost reply loses nothing and other readers of
// the same gateways take nothing from it.

import {
  intervalSamples,
  presentedToken,
  statsHistoryParam,
  statsPath,
  type BackfillSecond,
  type Credential,
  type CountersReading,
  type FunctionCounters,
  type FunctionSample,
  type StatsCollection,
  type StatsHistory,
  type StatsReply,
  type StatsSource,
} from '@kubefn/platform';

export interface StatsPeer {
  id: string;
  /** Base URL of the gateway replica, e.g. http://10.0.0.5:8080. */
  url: string;
}

export interface HttpStatsSourceOptions {
  /** The gateway replicas now; called on every collection. */
  peers: () => StatsPeer[];
  /** A token the gateways accept on /system/stats (a cluster's component token). */
  token: string | Credential;
  /** Longest one scrape may take, ms (default 800, inside the 1 s tick). */
  timeoutMs?: number;
  /** Most functions taken from one gateway per scrape, and per second of its history (default 10000): the reply is bounded. */
  maxSamples?: number;
  /** Largest reply read, bytes (default 32 MiB); a larger one counts as not answered. */
  maxReplyBytes?: number;
  /** Most seconds of history taken from one gateway (default 600). */
  maxHistorySeconds?: number;
  onWarning?: (message: string, fields?: Record<string, unknown>) => void;
}

/** What this source last read from one gateway. */
interface PeerState {
  instance: string;
  seq: number;
  reading: CountersReading;
  /** Functions active in the last interval, so their drop to quiet is reported once. */
  active: Set<string>;
}

type Scrape =
  | { kind: 'failed' }
  /** An older gateway's reply: samples of the interval, taken as they are. */
  | { kind: 'samples'; samples: FunctionSample[] }
  | { kind: 'counters'; reply: StatsReply };

export class HttpStatsSource implements StatsSource {
  readonly #options: HttpStatsSourceOptions;
  /** Peers whose last scrape failed, so a lasting failure is reported once, not every second. */
  readonly #failing = new Set<string>();
  /** The last reading per peer id. */
  readonly #peers = new Map<string, PeerState>();

  constructor(options: HttpStatsSourceOptions) {
    this.#options = options;
  }

  /**
   * Every gateway's samples since this source last read it, and how many answered: a gateway
   * that fails or times out is left out and counted as not answered, so the autoscaler does not
   * read its share as no traffic; its next reading covers the missed time. A gateway read for the
   * first time is asked for its ring of recent seconds, returned as `backfill` (combined by age
   * over the gateways read for the first time in this collection).
   *
   * A gateway whose instance changed (it restarted) or whose reply is not newer than the last
   * (seq) counts as not answered this once: its reading becomes the new baseline, so a restart is
   * neither a negative count nor a spike. A restarted gateway is not asked for its ring: its
   * seconds since the restart are ones the autoscaler has already filed from the other gateways.
   */
  async collect(): Promise<StatsCollection> {
    const peers = this.#options.peers();
    for (const id of this.#failing) if (!peers.some((p) => p.id === id)) this.#failing.delete(id);
    for (const id of this.#peers.keys()) if (!peers.some((p) => p.id === id)) this.#peers.delete(id);
    const scrapes = await Promise.all(peers.map((p) => this.#scrape(p, !this.#peers.has(p.id))));
    const samples: FunctionSample[] = [];
    const histories: BackfillSecond[][] = [];
    let answered = 0;
    peers.forEach((peer, i) => {
      const got = this.#read(peer, scrapes[i]!);
      if (got.samples) {
        answered++;
        samples.push(...got.samples);
      }
      if (got.history) histories.push(got.history);
    });
    const out: StatsCollection = { samples, answered, expected: peers.length };
    if (histories.length > 0) out.backfill = combineBackfill(histories);
    return out;
  }

  /** One gateway's samples (undefined: not answered) and, on a first reading, its ring. */
  #read(peer: StatsPeer, scrape: Scrape): { samples?: FunctionSample[]; history?: BackfillSecond[] } {
    if (scrape.kind === 'failed') return {};
    if (scrape.kind === 'samples') return { samples: scrape.samples };
    const reply = scrape.reply;
    const last = this.#peers.get(peer.id);
    const remember = (reading: CountersReading, active: Set<string>) =>
      this.#peers.set(peer.id, { instance: reply.instance, seq: reply.seq, reading: { now: reply.now, functions: reading.functions }, active });
    if (!last) {
      if (!reply.history) {
        // Nothing to take a difference from yet: this reading is the baseline.
        remember(reply, new Set());
        return {};
      }
      const { samples, active } = intervalSamples(reply.history.base, reply);
      remember(reply, active);
      return { samples, history: reply.history.seconds };
    }
    if (last.instance !== reply.instance) {
      this.#options.onWarning?.('gateway restarted: its counters start again from this reading', { gateway: peer.id, instance: reply.instance });
      remember(reply, new Set());
      return {};
    }
    if (reply.seq <= last.seq) return {}; // a late reply: the reading it would replace is newer
    const { samples, active } = intervalSamples(last.reading, reply, last.active);
    remember(reply, active);
    return { samples };
  }

  async #scrape(peer: StatsPeer, history: boolean): Promise<Scrape> {
    try {
      const res = await fetch(`${peer.url}${statsPath}${history ? `?${statsHistoryParam}=1` : ''}`, {
        headers: { authorization: `Bearer ${presentedToken(this.#options.token)}` },
        signal: AbortSignal.timeout(this.#options.timeoutMs ?? 800),
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
      const body: unknown = JSON.parse(await readBounded(res, this.#options.maxReplyBytes ?? 32 * 1024 * 1024));
      const max = this.#options.maxSamples ?? 10_000;
      const scrape: Scrape =
        isObject(body) && 'instance' in body
          ? { kind: 'counters', reply: parseStatsReply(body, max, this.#options.maxHistorySeconds ?? 600) }
          : { kind: 'samples', samples: parseSamples(body, max) };
      if (this.#failing.delete(peer.id)) this.#options.onWarning?.('gateway stats readable again', { gateway: peer.id });
      return scrape;
    } catch (err) {
      if (!this.#failing.has(peer.id)) {
        this.#failing.add(peer.id);
        this.#options.onWarning?.('reading gateway stats failed; until it answers, the others\' traffic stands in for its share', {
          gateway: peer.id,
          url: peer.url,
          err: err instanceof Error ? err.message : String(err),
        });
      }
      return { kind: 'failed' };
    }
  }
}

/**
 * The seconds of several gateways' rings as one backfill: a second is keyed by its age in whole
 * seconds, rounded down (each gateway's seconds end on its clock's whole seconds, so the newest
 * one a gateway closed has age 0 whatever part of a second it replied in: two gateways' seconds
 * that ended together meet even when the replies were 100s of ms apart), its samples are every
 * gateway's samples for it and `answered` how many gateways had it. Oldest first; ageMs is the
 * whole seconds x 1000 (up to a second short of the true age).
 */
export function combineBackfill(histories: BackfillSecond[][]): BackfillSecond[] {
  const byAge = new Map<number, BackfillSecond>();
  for (const seconds of histories) {
    for (const s of seconds) {
      const age = Math.max(0, Math.floor(s.ageMs / 1000));
      const into = byAge.get(age);
      if (into) {
        into.samples.push(...s.samples);
        into.answered += s.answered;
      } else {
        byAge.set(age, { ageMs: age * 1000, samples: [...s.samples], answered: s.answered });
      }
    }
  }
  return [...byAge.values()].sort((a, b) => b.ageMs - a.ageMs);
}

/**
 * A /system/stats reply of counters; throws on a reply that is not one (not answered): a missing
 * or bad instance, seq, now or counter, or more than `max` functions. A bad optional level
 * (queued, serviceMs, pending) is dropped and the rest kept. A history that is not valid is
 * dropped as a whole, the counters kept: the reading is then only a baseline.
 */
export function parseStatsReply(body: unknown, max: number, maxHistorySeconds = 600): StatsReply {
  if (!isObject(body)) throw new Error('reply is not an object');
  const { instance, seq, now, functions, history } = body;
  if (typeof instance !== 'string' || instance.length === 0 || instance.length > 200) throw new Error('reply has no instance id');
  if (!isCount(seq) || !Number.isInteger(seq)) throw new Error('reply has no seq number');
  if (typeof now !== 'number' || !Number.isFinite(now)) throw new Error('reply has no time (now)');
  const reading = parseReading({ now, functions }, max);
  const reply: StatsReply = { instance, seq, ...reading };
  if (history !== undefined) {
    try {
      reply.history = parseHistory(history, max, maxHistorySeconds);
    } catch {
      // A reading without its ring: a baseline only.
    }
  }
  return reply;
}

function parseReading(body: Record<string, unknown>, max: number): CountersReading {
  const { now, functions } = body;
  if (typeof now !== 'number' || !Number.isFinite(now)) throw new Error('reading has no time (now)');
  if (!Array.isArray(functions)) throw new Error('reply has no functions array');
  if (functions.length > max) throw new Error(`reply has ${functions.length} functions, more than ${max}`);
  return {
    now,
    functions: functions.map((f: unknown, i): FunctionCounters => {
      const { name, gen, requests, inFlightMs, completed, inFlight, queued, serviceMs, pending } = (isObject(f) ? f : {}) as Record<string, unknown>;
      if (typeof name !== 'string' || !isCount(gen) || !isCount(requests) || !isCount(inFlightMs) || !isCount(completed) || !isCount(inFlight)) {
        throw new Error(`function ${i} is not {name, gen, requests, inFlightMs, completed, inFlight}: ${JSON.stringify(f)?.slice(0, 120)}`);
      }
      const out: FunctionCounters = { name, gen, requests, inFlightMs, completed, inFlight };
      if (isCount(queued)) out.queued = queued;
      if (isCount(serviceMs)) out.serviceMs = serviceMs;
      if (isCount(pending)) out.pending = pending;
      return out;
    }),
  };
}

function parseHistory(body: unknown, max: number, maxSeconds: number): StatsHistory {
  if (!isObject(body) || !isObject(body.base) || !Array.isArray(body.seconds)) throw new Error('history is not {base, seconds}');
  if (body.seconds.length > maxSeconds) throw new Error(`history has ${body.seconds.length} seconds, more than ${maxSeconds}`);
  return {
    base: parseReading(body.base, max),
    seconds: body.seconds.map((s: unknown) => {
      if (!isObject(s) || !isCount(s.ageMs)) throw new Error('history second has no ageMs');
      return { ageMs: s.ageMs, samples: parseSamples(s, max), answered: 1 };
    }),
  };
}

/**
 * The samples of an older gateway's /system/stats reply (`{samples}`), or of one second of a
 * history; throws on anything else. An optional field (pending, queued, completed, serviceMs)
 * that is not a non-negative finite number is dropped and the rest of the sample kept: the
 * gateway's traffic still counts, and a level it could not read is unknown, as if not sent.
 */
export function parseSamples(body: unknown, max: number): FunctionSample[] {
  const samples = (body as { samples?: unknown } | null)?.samples;
  if (!Array.isArray(samples)) throw new Error('reply has no samples array');
  if (samples.length > max) throw new Error(`reply has ${samples.length} samples, more than ${max}`);
  return samples.map((s: unknown, i) => {
    const fields = (s ?? {}) as Record<string, unknown>;
    const { name, concurrency, requests } = fields;
    if (typeof name !== 'string' || !isCount(concurrency) || !isCount(requests)) {
      throw new Error(`sample ${i} is not {name, concurrency, requests}: ${JSON.stringify(s).slice(0, 120)}`);
    }
    const sample: FunctionSample = { name, concurrency, requests };
    for (const key of ['pending', 'queued', 'completed', 'serviceMs'] as const) {
      const v = fields[key];
      if (isCount(v)) sample[key] = v;
    }
    return sample;
  });
}

/** The body of `res` as text, refusing one over `limit` bytes without reading the rest. */
async function readBounded(res: Response, limit: number): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  if (declared > limit) {
    await res.body?.cancel();
    throw new Error(`reply of ${declared} bytes is over the ${limit} byte limit`);
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    if (bytes > limit) {
      await reader.cancel().catch(() => {});
      throw new Error(`reply is over the ${limit} byte limit`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isFinite(n) && n >= 0;
}
