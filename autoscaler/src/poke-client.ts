// The gateway's side of the cold poke when the autoscaler runs in another process (a cluster):
// POST /poke/<name> on an autoscaler replica, so a function at zero is scaled up at once rather
// than at the next decision.

import { KubefnError, pokePath } from '@kubefn/platform';

export interface PokePeer {
  id: string;
  /** Base URL of the autoscaler replica, e.g. http://10.0.0.7:8080. */
  url: string;
}

export interface PokeClientOptions {
  /** The autoscaler replicas now; called on every poke. */
  peers: () => PokePeer[];
  /** The management token the autoscaler checks. */
  token: string;
  /** What the autoscalers are, for errors ("the kubefn-autoscaler Service"). */
  what?: string;
  /** Longest one poke may take, ms (default 10000). */
  timeoutMs?: number;
}

/** Pokes the first ready autoscaler replica about `name`; throws UNAVAILABLE when none answers. */
export async function pokeAutoscaler(options: PokeClientOptions, name: string): Promise<void> {
  const peer = options.peers()[0];
  const what = options.what ?? 'the autoscaler';
  if (!peer) throw new KubefnError('UNAVAILABLE', `no ready replica of ${what} to poke about "${name}"`);
  let res: Response;
  try {
    res = await fetch(`${peer.url}${pokePath(name)}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${options.token}` },
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
  } catch (err) {
    throw new KubefnError('UNAVAILABLE', `autoscaler ${peer.id} did not answer the poke about "${name}": ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (!res.ok) throw new KubefnError('UNAVAILABLE', `autoscaler ${peer.id} answered the poke about "${name}" with ${res.status}: ${(await res.text()).slice(0, 200)}`);
}
