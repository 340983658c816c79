// One call's life: builds the Request and Context, runs the handler, answers exactly once, then releases its slot.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { runtimeHeaders } from '@kubefn/platform/runtime-contract';
import type { RuntimeConfig } from './config.js';
import { PlainReply, mapResult, type CloudEvent, type Context, type Handler } from './handler.js';
import type { Logger, RootLogger } from './logger.js';
import { toRequest, type RequestBody } from './request.js';
import { BodyError, streamResponse, writeError, writePlain, type StreamOwner } from './response.js';

/** What a call needs from the server that received it. */
export interface CallHost {
  readonly config: RuntimeConfig;
  readonly logger: RootLogger;
  readonly invoke: Handler;
  /** Responses written while draining carry `Connection: close`. */
  readonly draining: boolean;
  /** The response ended (or the connection died): release the slot and record the call. */
  callEnded(status: number, startedAt: number): void;
  /** +1 when a call ends with its handler still running, -1 when that handler finally settles. */
  abandon(delta: 1 | -1): void;
}

// Who answered: nobody yet, the handler's result, or the runtime (timeout, 413, 500...).
const enum Responder {
  None,
  Handler,
  Runtime,
}

export class Call implements StreamOwner {
  reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  /** When the call times out, in epoch ms. */
  readonly deadline: number;
  private controller: AbortController | undefined;
  private abortReason: unknown;
  private callLogger: Logger | undefined;
  private timer: NodeJS.Timeout | undefined;
  private responder = Responder.None;
  private ended = false;
  private timedOut = false;
  private handlerRunning = true;
  private abandoned = false;
  private body: RequestBody | undefined;

  constructor(
    private readonly host: CallHost,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    readonly callId: string,
    private readonly startedAt: number,
  ) {
    this.deadline = Date.now() + host.config.timeoutMs;
  }

  run(): void {
    this.res.on('close', () => this.onClose());
    this.timer = setTimeout(() => this.onTimeout(), this.host.config.timeoutMs);
    let request: Request;
    try {
      const converted = toRequest(this.req, this.host.config.maxBodyBytes, () => this.onTooLarge());
      request = converted.request;
      this.body = converted.body;
    } catch (err) {
      this.handlerRunning = false;
      this.respondError(400, 'BAD_REQUEST', `request cannot be turned into a Fetch Request: ${(err as Error).message}`);
      return;
    }
    let result: unknown;
    // Called unbound, so a handler's `this` is undefined rather than the server.
    const invoke = this.host.invoke;
    try {
      result = invoke(request, new CallContext(this, this.host.config));
    } catch (err) {
      this.onHandlerError(err);
      return;
    }
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
      (result as PromiseLike<unknown>).then(
        (value) => this.onResult(value),
        (err: unknown) => this.onHandlerError(err),
      );
    } else {
      this.onResult(result);
    }
  }

  signal(): AbortSignal {
    // Created on first use: most handlers never look at the signal, and this runs on every call.
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.abortReason !== undefined) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  logger(): Logger {
    return (this.callLogger ??= this.host.logger.forCall(this.callId));
  }

  /** StreamOwner: the handler's Response may send its status line unless the runtime answered first. */
  start(): boolean {
    if (this.responder !== Responder.None || this.ended) return false;
    this.responder = Responder.Handler;
    return true;
  }

  private onResult(result: unknown): void {
    this.handlerSettled();
    if (this.responder !== Responder.None || this.ended) {
      // Answered already (timeout, 413, disconnect): drop the result, free a streaming body.
      if (result instanceof Response) result.body?.cancel().catch(ignore);
      return;
    }
    let reply: Response | PlainReply;
    try {
      reply = mapResult(result);
    } catch (err) {
      this.onHandlerError(err);
      return;
    }
    if (reply instanceof PlainReply) {
      this.responder = Responder.Handler;
      writePlain(this.res, reply, this.headers());
      return;
    }
    streamResponse(this.res, reply, this.headers(), this.req.method === 'HEAD', this).catch((err: unknown) =>
      this.onBodyError(err),
    );
  }

  private onHandlerError(err: unknown): void {
    this.handlerSettled();
    if (this.responder !== Responder.None || this.ended) {
      this.logger().warn('handler failed after its call was answered', { err });
      return;
    }
    this.logger().error('handler failed', { err });
    this.respondError(500, 'HANDLER_ERROR', `function "${this.host.config.functionName}" failed`);
  }

  private onBodyError(err: unknown): void {
    const cause = err instanceof BodyError ? err.cause : err;
    if (this.responder === Responder.Runtime) return;
    this.logger().error('response body failed', { err: cause });
    if (!this.res.headersSent && !this.ended) {
      this.responder = Responder.None;
      this.respondError(500, 'HANDLER_ERROR', `function "${this.host.config.functionName}" failed`);
    } else {
      // The status line is out: cutting the connection is the only way left to tell the caller.
      this.res.destroy();
    }
  }

  private onTimeout(): void {
    this.timer = undefined;
    this.timedOut = true;
    const { functionName, timeoutMs } = this.host.config;
    const message = `function "${functionName}" did not answer within ${timeoutMs} ms`;
    this.abort(new DOMException(message, 'TimeoutError'));
    if (this.responder === Responder.None) {
      this.logger().warn('call timed out', { timeoutMs });
      this.respondError(504, 'TIMEOUT', message);
    } else if (!this.res.writableEnded) {
      this.logger().warn('call timed out while streaming its response; closing the connection', { timeoutMs });
      this.res.destroy();
    }
  }

  private onTooLarge(): void {
    const max = this.host.config.maxBodyBytes;
    this.abort(new DOMException(`request body is larger than ${max} bytes`, 'AbortError'));
    // The rest of the body is still on the wire; closing is cheaper than reading it.
    this.respondError(413, 'BODY_TOO_LARGE', `request body is larger than ${max} bytes`, true);
  }

  private onClose(): void {
    this.ended = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    const complete = this.res.writableFinished;
    if (!complete) {
      this.abort(new DOMException('the client closed the connection', 'AbortError'));
      this.reader?.cancel().catch(ignore);
    }
    this.body?.discard(this.abortReason);
    if (this.handlerRunning) {
      this.abandoned = true;
      this.host.abandon(1);
    }
    // 499, as nginx logs it: the client went away before the answer was complete.
    const status = complete ? this.res.statusCode : this.timedOut ? 504 : 499;
    this.host.callEnded(status, this.startedAt);
    const logger = this.host.logger;
    if (logger.enabled('debug')) {
      const path = this.req.url ?? '/';
      const query = path.indexOf('?');
      logger.write('debug', 'call', {
        method: this.req.method,
        path: query === -1 ? path : path.slice(0, query),
        status,
        durationMs: Math.round((performance.now() - this.startedAt) * 1000) / 1000,
      }, this.callId);
    }
  }

  private handlerSettled(): void {
    if (!this.handlerRunning) return;
    this.handlerRunning = false;
    if (this.abandoned) this.host.abandon(-1);
  }

  private abort(reason: unknown): void {
    if (this.abortReason !== undefined) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }

  private respondError(status: number, code: string, message: string, close = false): void {
    if (this.responder !== Responder.None || this.ended) return;
    this.responder = Responder.Runtime;
    this.reader?.cancel().catch(ignore);
    const headers = this.headers();
    if (close && !this.host.draining) headers.push('connection', 'close');
    writeError(this.res, status, { code, message, callId: this.callId }, headers);
  }

  private headers(): string[] {
    const headers = [runtimeHeaders.callId, this.callId];
    if (this.host.draining) headers.push('connection', 'close');
    return headers;
  }
}

/** The handler's view of its call: plain fields plus lazy getters, no way to reach the server's internals. */
class CallContext implements Context {
  readonly functionName: string;
  readonly instance: string;
  readonly callId: string;
  readonly deadline: number;
  readonly event: CloudEvent | undefined = undefined;
  readonly #call: Call;

  constructor(call: Call, config: RuntimeConfig) {
    this.#call = call;
    this.callId = call.callId;
    this.deadline = call.deadline;
    this.functionName = config.functionName;
    this.instance = config.instance;
  }

  get signal(): AbortSignal {
    return this.#call.signal();
  }

  get logger(): Logger {
    return this.#call.logger();
  }
}

function ignore(): void {}
