// Passes a request on to another HTTP server unchanged and streams the answer back: how a gateway
// worker of `fn up --workers` hands the management API (deploys, uploads, builds, logs, secrets)
// to the primary's gateway, which holds the driver. Bodies stream both ways with back-pressure,
// nothing is buffered, and at most `maxInFlight` requests are passed on at once.

import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { pipeline } from 'node:stream';
import { endToEnd, errorAnswer, kubefnErrorHeader } from '@kubefn/gateway';
import { KubefnError } from '@kubefn/platform';

export interface ForwarderOptions {
  /** Base URL of the server requests go to, e.g. http://127.0.0.1:40123. */
  target: string;
  /** Requests passed on at once at most (default 1024); more are answered 503 at once. */
  maxInFlight?: number;
  onWarning?: (message: string, fields?: Record<string, unknown>) => void;
}

export class Forwarder {
  readonly #target: URL;
  readonly #maxInFlight: number;
  readonly #onWarning: ForwarderOptions['onWarning'];
  /** Keep-alive connections to the target; no socket cap, so no hidden queue: #maxInFlight bounds them. */
  readonly #agent = new Agent({ keepAlive: true });
  readonly #inFlight = new Set<() => void>();
  /** Set by close(): called when the last call passed on has finished. */
  #onEmpty: (() => void) | undefined;

  constructor(options: ForwarderOptions) {
    this.#target = new URL(options.target);
    this.#maxInFlight = options.maxInFlight ?? 1024;
    this.#onWarning = options.onWarning;
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Passes `req` on and answers `res` with what comes back. */
  forward(req: IncomingMessage, res: ServerResponse): void {
    if (this.#inFlight.size >= this.#maxInFlight) {
      req.resume();
      answerError(res, new KubefnError('UNAVAILABLE', `this gateway worker already passes ${this.#maxInFlight} management calls on to the primary`, { hint: 'retry shortly' }));
      return;
    }
    const headers = endToEnd(req.headers);
    const upstream = httpRequest({
      agent: this.#agent,
      protocol: this.#target.protocol,
      hostname: this.#target.hostname,
      port: this.#target.port,
      method: req.method,
      path: req.url,
      headers: { ...headers, 'x-forwarded-for': req.socket.remoteAddress ?? '' },
    });
    const cut = () => upstream.destroy();
    this.#inFlight.add(cut);
    const done = () => {
      if (this.#inFlight.delete(cut) && this.#inFlight.size === 0) this.#onEmpty?.();
    };
    // The caller went away: so does the call to the primary (a followed log stream ends).
    res.once('close', () => {
      done();
      if (!res.writableFinished) upstream.destroy();
    });
    upstream.once('response', (answer) => {
      res.writeHead(answer.statusCode ?? 502, endToEnd(answer.headers));
      pipeline(answer, res, () => done());
    });
    upstream.once('error', (err) => {
      done();
      if (res.headersSent) {
        res.destroy();
        return;
      }
      this.#onWarning?.('passing a request on to the primary failed', { url: req.url, err: err.message });
      answerError(res, new KubefnError('UNAVAILABLE', `the primary's gateway did not answer: ${err.message}`, { hint: 'the platform may be stopping; retry' }));
    });
    pipeline(req, upstream, () => {});
  }

  /**
   * Waits up to `graceMs` for the calls passed on to finish, then cuts the rest (a followed log
   * stream never finishes by itself).
   */
  async close(graceMs: number): Promise<void> {
    if (this.#inFlight.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.#onEmpty = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const cut of [...this.#inFlight]) cut();
    this.#inFlight.clear();
    this.#agent.destroy();
  }
}

function answerError(res: ServerResponse, err: KubefnError): void {
  if (res.headersSent) return void res.destroy();
  const { status, body } = errorAnswer(err);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', [kubefnErrorHeader]: body.code }).end(JSON.stringify(body));
}
