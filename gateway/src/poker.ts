// The cold poke: tells the autoscaler, once per function and with the backlog, that requests are
// waiting for a function with no ready replica, instead of one poke per waiting request.
//
// Per function, at most one poke is in flight. The first cold request of a cold spell (the
// queue was empty) pokes with `{ queued }`; while that poke is in flight, later cold requests
// send nothing. Once it settled, another poke goes out only while the function still has no
// ready replica and its queue has grown by `growth` (2: doubled) since the last poke, and no
// sooner than `minIntervalMs` after it. Worked example, 100 requests in 50 ms, the poke settling
// in 5 ms: a poke with queued 1 at 0 ms, then none (the queue doubled, but within the interval);
// at 1 s, still cold with 100 waiting, the next cold request sends queued 100 (a poke that
// settles a second or more after the last was sent checks the same at once). The autoscaler
// reads every gateway's queue each second anyway; the poke is the head start.

import { KubefnError, type PokeBody } from '@kubefn/platform';

/** Sends one poke; what it returns is awaited (a rejection is the sender's to log). */
export type PokeSender = (name: string, body: PokeBody) => unknown;

export interface ColdPokerOptions {
  /** Sends a poke (read at each poke: `fn up` sets it once the autoscaler exists). */
  send: PokeSender;
  /** The function's queue now, and its ready replicas; undefined when the gateway holds no router for it. */
  state: (name: string) => { queued: number; ready: number } | undefined;
  /** Counts each poke sent (the kubefn_autoscaler_pokes_total metric). */
  onSent?: (name: string) => void;
  /** How much the queue must have grown since the last poke before another, as a factor (default 2). */
  growth?: number;
  /** Least time between two pokes for one function, ms (default 1000: the autoscaler's decision interval). */
  minIntervalMs?: number;
  now?: () => number;
}

interface PokeState {
  inFlight: boolean;
  /** Queue length sent in the last poke. */
  lastQueued: number;
  /** When the last poke was sent (options.now()). */
  lastAt: number;
}

export class ColdPoker {
  readonly #o: Required<Omit<ColdPokerOptions, 'onSent'>> & Pick<ColdPokerOptions, 'onSent'>;
  readonly #state = new Map<string, PokeState>();

  constructor(options: ColdPokerOptions) {
    this.#o = { growth: 2, minIntervalMs: 1000, now: Date.now, ...options };
    if (!(this.#o.growth >= 1)) throw new KubefnError('INVALID_SPEC', `poke.growth must be a number >= 1, not ${this.#o.growth}`, { fields: [{ field: 'poke.growth', message: 'must be >= 1' }] });
    if (!(this.#o.minIntervalMs >= 0)) {
      throw new KubefnError('INVALID_SPEC', `poke.minIntervalMs must be a number >= 0, not ${this.#o.minIntervalMs}`, { fields: [{ field: 'poke.minIntervalMs', message: 'must be >= 0' }] });
    }
  }

  /** A request for `name` found no ready replica and is in its queue now. */
  cold(name: string): void {
    const s = this.#state.get(name);
    if (s?.inFlight) return;
    const queued = this.#o.state(name)?.queued ?? 1;
    // A queue of one is a new cold spell: those the last poke was about have left.
    if (!s || queued <= 1 || this.#grown(s, queued)) this.#send(name, queued);
  }

  /** Pokes in flight now, for tests and the gateway's close. */
  get inFlight(): number {
    let n = 0;
    for (const s of this.#state.values()) if (s.inFlight) n++;
    return n;
  }

  #grown(s: PokeState, queued: number): boolean {
    return queued >= s.lastQueued * this.#o.growth && this.#o.now() - s.lastAt >= this.#o.minIntervalMs;
  }

  #send(name: string, queued: number): void {
    const s: PokeState = { inFlight: true, lastQueued: queued, lastAt: this.#o.now() };
    this.#state.set(name, s);
    this.#o.onSent?.(name);
    let sent: unknown;
    try {
      sent = this.#o.send(name, { queued });
    } catch {
      sent = undefined; // the sender logs its own failures; a throw only ends this poke
    }
    void Promise.resolve(sent)
      .catch(() => {})
      .then(() => this.#settled(name, s));
  }

  #settled(name: string, s: PokeState): void {
    s.inFlight = false;
    if (this.#state.get(name) !== s) return;
    const now = this.#o.state(name);
    if (!now || now.ready > 0 || now.queued === 0) {
      this.#state.delete(name);
      return;
    }
    if (this.#grown(s, now.queued)) this.#send(name, now.queued);
  }
}
