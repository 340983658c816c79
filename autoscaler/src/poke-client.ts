// The gateway's side of the cold poke when the autoscaler runs in another process (a cluster):
// POST /poke/<name> with the gateway's backlog on an autoscaler replica, so a function at zero is
// scaled up at once rather than at the next decision; and the autoscaler's reading of that body.

import { KubefnError, pokePath, presentedToken, type Credential, type PokeBody } from '@kubefn/platform';

export interface PokePeer {
  id: string;
  /** Base URL of the autoscaler replica, e.g. http://10.0.0.7:8080. */
  url: string;
}

export interface PokeClientOptions {
  /** The autoscaler replicas now; called on every poke. */
  peers: () => PokePeer[];
  /** The token the autoscaler checks (a cluster's component token). */
  token: string | Credential;
  /** What the autoscalers are, for errors ("the kubefn-autoscaler Service"). */
  what?: string;
  /** Longest one attempt at one replica may take, ms (default 2000); then the next replica is tried. */
  attemptTimeoutMs?: number;
  /** The index of the first replica tried, given their count (default: random, so pokes spread). */
  first?: (count: number) => number;
}

/** Most requests a poke may say are queued: far over any gateway's budget, so a larger count is a bug. */
export const maxPokeQueued = 10_000_000;

/**
 * Pokes an autoscaler replica about `name`: starting at a random one, the next on a connection
 * error, a timeout or a 5xx, until one took it. Throws UNAVAILABLE naming every replica tried and
 * what each answered when none did, or at once when one refused the poke itself (a 4xx: another
 * would refuse it too).
 */
export async function pokeAutoscaler(options: PokeClientOptions, name: string, body?: PokeBody): Promise<void> {
  const peers = options.peers();
  const what = options.what ?? 'the autoscaler';
  if (peers.length === 0) throw new KubefnError('UNAVAILABLE', `no ready replica of ${what} to poke about "${name}"`);
  const first = Math.abs(Math.trunc((options.first ?? ((n) => Math.floor(Math.random() * n)))(peers.length))) % peers.length;
  const failures: string[] = [];
  for (let i = 0; i < peers.length; i++) {
    const peer = peers[(first + i) % peers.length]!;
    let res: Response;
    try {
      res = await fetch(`${peer.url}${pokePath(name)}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${presentedToken(options.token)}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(options.attemptTimeoutMs ?? 2000),
      });
    } catch (err) {
      failures.push(`${peer.id}: ${describeFetchError(err)}`);
      continue;
    }
    const text = res.ok ? '' : (await res.text().catch(() => '')).slice(0, 200);
    if (res.ok) {
      await res.body?.cancel().catch(() => {});
      return;
    }
    if (res.status < 500) {
      throw new KubefnError('UNAVAILABLE', `autoscaler ${peer.id} refused the poke about "${name}" with ${res.status}: ${text}`, {
        hint: res.status === 401 ? 'the gateway and the autoscaler must share KUBEFN_TOKEN' : 'a gateway and an autoscaler of different versions?',
      });
    }
    failures.push(`${peer.id}: ${res.status} ${text}`);
  }
  throw new KubefnError('UNAVAILABLE', `no replica of ${what} took the poke about "${name}" (tried ${failures.length}): ${failures.join('; ')}`, {
    hint: `the autoscaler's next decision (each second) still scales "${name}" from its queue; see the autoscaler's logs for why it does not answer`,
  });
}

export interface PokeOrStartOptions extends PokeClientOptions {
  /**
   * The last resort when no autoscaler took the poke: starts `name` if it is still at zero (the
   * scale subresource, as the gateway may write it) and says whether it did.
   */
  start: (name: string) => Promise<boolean>;
}

/**
 * A poke (pokeAutoscaler); when no autoscaler replica takes it (none ready: a rollout, a crash,
 * a takeover), the gateway starts the function from zero itself, so a request does not wait for
 * an autoscaler to come back. Only 0 -> 1 (or min): how many more is the autoscaler's decision
 * once one answers. Resolves 'poked' or 'started'; throws the poke's error, with the start's
 * failure in it, when neither worked, and the poke's alone when the function was not at zero.
 */
export async function pokeOrStart(options: PokeOrStartOptions, name: string, body?: PokeBody): Promise<'poked' | 'started'> {
  try {
    await pokeAutoscaler(options, name, body);
    return 'poked';
  } catch (err) {
    let started: boolean;
    try {
      started = await options.start(name);
    } catch (startErr) {
      throw new KubefnError('UNAVAILABLE', `${err instanceof Error ? err.message : String(err)}; starting "${name}" from the gateway failed too: ${startErr instanceof Error ? startErr.message : String(startErr)}`);
    }
    if (started) return 'started';
    throw err;
  }
}

function describeFetchError(err: unknown): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return 'no answer in time';
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}

/**
 * The body of a poke as the autoscaler's route received it (undefined or '' when it had none):
 * `{ queued?: n }` with n a whole number from 0 to maxPokeQueued; other keys are ignored (a newer
 * gateway may say more). BAD_REQUEST naming the field otherwise.
 */
export function parsePokeBody(raw: unknown): PokeBody {
  if (raw === undefined || raw === null || raw === '') return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new KubefnError('BAD_REQUEST', `a poke's body must be a JSON object like {"queued": 12}, not ${Array.isArray(raw) ? 'an array' : typeof raw}`);
  }
  const queued = (raw as Record<string, unknown>).queued;
  if (queued === undefined) return {};
  if (typeof queued !== 'number' || !Number.isInteger(queued) || queued < 0 || queued > maxPokeQueued) {
    throw new KubefnError('BAD_REQUEST', `a poke's "queued" must be a whole number from 0 to ${maxPokeQueued}, not ${JSON.stringify(queued)}`, {
      fields: [{ field: 'queued', message: `a whole number from 0 to ${maxPokeQueued}` }],
    });
  }
  return { queued };
}
