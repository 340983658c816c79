// Who fires a cron tick: the gateway that claims it first in a JetStream KV bucket. One key per
// trigger (`<function>.<trigger index>`) holds the instant of the last tick claimed, in Unix ms;
// a claim is a compare-and-set on the key's revision, so of N gateways claiming the same tick
// exactly one wins, and a tick at or before the one stored is never claimed again (a restarted
// gateway cannot refire it).
//
// The bucket keeps one value per key for a day (max_age). Claims of one tick all happen within
// seconds of it, so a key that expired between two ticks of a daily schedule loses nothing: the
// next claim creates it again, still as a compare-and-set (create fails when the key exists).

import { jetstream, JetStreamApiCodes } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';

/** What the cron triggers need of the claim store. */
export interface TickClaims {
  /** True when this caller won tick `tickMs` of `key`; false when it is someone else's. */
  claim(key: string, tickMs: number): Promise<boolean>;
}

export interface KvTickClaimsOptions {
  connection: NatsConnection;
  bucket: string;
  /** How long one KV request may take before the claim fails, ms. */
  timeoutMs: number;
}

/** How long the bucket keeps a key, ms. */
export const claimMaxAgeMs = 24 * 3_600_000;

/** Compare-and-set attempts per claim: a conflict re-reads the key and tries again. */
const maxAttempts = 3;

export class KvTickClaims implements TickClaims {
  readonly #o: KvTickClaimsOptions;
  #kv: Promise<KV> | undefined;

  constructor(options: KvTickClaimsOptions) {
    this.#o = options;
  }

  /** Opens the bucket, creating it when missing; a failure is retried by the next call. */
  open(): Promise<KV> {
    if (this.#kv) return this.#kv;
    const { connection, bucket, timeoutMs } = this.#o;
    const opening = new Kvm(jetstream(connection, { timeout: timeoutMs }))
      .create(bucket, { history: 1, ttl: claimMaxAgeMs })
      .catch((err: unknown) => {
        if (this.#kv === opening) this.#kv = undefined;
        throw new Error(`cannot open the KV bucket "${bucket}" (the NATS server needs JetStream): ${messageOf(err)}`, { cause: err });
      });
    this.#kv = opening;
    return opening;
  }

  async claim(key: string, tickMs: number): Promise<boolean> {
    const kv = await this.open();
    const value = String(tickMs);
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      const entry = await kv.get(key);
      const held = entry?.operation === 'PUT' ? Number(entry.string()) : undefined;
      // A value that is not a number cannot be a later tick: it is overwritten.
      if (held !== undefined && held >= tickMs) return false;
      try {
        if (held !== undefined) await kv.update(key, value, entry!.revision);
        else await kv.create(key, value);
        return true;
      } catch (err) {
        // Someone wrote the key between the read and the write: read it again, since that write
        // may have been an older tick (a late gateway) rather than this one.
        if (!isConflict(err)) throw err;
      }
    }
    return false;
  }
}

/** The server refused a write because the key's revision moved on (matched on the API code). */
function isConflict(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === JetStreamApiCodes.StreamWrongLastSequence || code === JetStreamApiCodes.StreamWrongLastSequenceUnknown;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
