// Publishing results and dead letters. A subject that a JetStream stream stores is published
// through JetStream and waits for the stream's ack, so a chain (one function's output, the next
// one's jetstream trigger) is at least once end to end, de-duplicated by message id; any other
// subject gets a core publish. Which stream stores a subject is asked of the server and
// remembered for a few seconds (a JetStream publish to a subject no stream stores would wait for
// an ack that never comes whenever a plain subscriber listens there).

import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';

export type Publish = (subject: string, body: Uint8Array, headers?: Record<string, string>, msgId?: string) => Promise<void>;

/** How long an answer to "which stream stores this subject" is believed, ms. */
const rememberMs = 5000;
/** Subjects remembered at most (a bound, not a tuning knob). */
const maxRemembered = 4096;

export class Publisher {
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  #jsm: Promise<JetStreamManager> | undefined;
  readonly #streams = new Map<string, { stored: boolean; until: number }>();

  constructor(nc: NatsConnection) {
    this.#nc = nc;
    this.#js = jetstream(nc, { timeout: 10_000 });
  }

  readonly publish: Publish = async (subject, body, headers, msgId) => {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(headers ?? {})) h.set(k, v);
    if (await this.#stored(subject)) {
      await this.#js.publish(subject, body, { headers: h, ...(msgId ? { msgID: msgId } : {}) });
    } else {
      this.#nc.publish(subject, body, { headers: h });
    }
  };

  async #stored(subject: string): Promise<boolean> {
    const known = this.#streams.get(subject);
    if (known && known.until > Date.now()) return known.stored;
    this.#jsm ??= jetstreamManager(this.#nc, { timeout: 10_000 }).catch((err: unknown) => {
      this.#jsm = undefined;
      throw err;
    });
    const jsm = await this.#jsm;
    let stored: boolean;
    try {
      stored = Boolean(await jsm.streams.find(subject));
    } catch (err) {
      if (!/no stream matches subject/i.test(err instanceof Error ? err.message : String(err))) throw err;
      stored = false;
    }
    if (this.#streams.size >= maxRemembered) this.#streams.clear();
    this.#streams.set(subject, { stored, until: Date.now() + rememberMs });
    return stored;
  }
}
