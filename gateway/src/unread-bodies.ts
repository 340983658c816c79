// Requests answered before their body was read in full (a 404, a 413, a refusal): the answer
// says `Connection: close`, and node keeps the connection until the rest of the body arrives,
// which may be never. A closing gateway cuts them, so a stalled upload cannot hold its shutdown
// for the keep-alive timeout.

import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';

export class UnreadBodies {
  readonly #open = new Set<IncomingMessage>();
  #closing = false;

  /** Watches every answered request of `app` (root hooks cover every route and the 404 handler). */
  attach(app: FastifyInstance): void {
    // Answered before its body ended: the rest of the body would be read as the next request on
    // a kept-alive connection, so the client is told to open a new one.
    // Callback hooks, not async ones: they run on every call, and allocate no promise.
    app.addHook('onSend', (request, reply, payload, done) => {
      if (!request.raw.complete && request.raw.readableEnded === false && !reply.sent) reply.header('connection', 'close');
      done(null, payload);
    });
    app.addHook('onResponse', (request, _reply, done) => {
      this.answered(request.raw);
      done();
    });
  }

  /** Whether cut() was called: the gateway is closing. */
  get closing(): boolean {
    return this.#closing;
  }

  /** From now on cuts every connection whose request was answered before its body ended. */
  cut(): void {
    this.#closing = true;
    for (const raw of this.#open) cutConnection(raw);
    this.#open.clear();
  }

  /** `raw` was answered; when its body has not ended, its connection is watched (and cut once closing). */
  answered(raw: IncomingMessage): void {
    if (raw.complete) return;
    if (this.#closing) {
      cutConnection(raw);
      return;
    }
    this.#open.add(raw);
    const forget = () => this.#open.delete(raw);
    raw.once('end', forget);
    raw.once('close', forget);
  }
}

/** Destroys the request's socket (inject()'s stand-in requests have none to destroy). */
function cutConnection(raw: IncomingMessage): void {
  (raw.socket as { destroy?: () => void } | undefined)?.destroy?.();
}
