// The function port: admits or refuses each call (draining, concurrency cap, body size), tracks in-flight calls, drains.

import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { runtimeHeaders } from '@kubefn/platform/runtime-contract';
import { Call, type CallHost } from './call.js';
import type { RuntimeConfig } from './config.js';
import type { Handler } from './handler.js';
import type { RootLogger } from './logger.js';
import type { RuntimeMetrics, RuntimeStats } from './metrics.js';
import { writeError } from './response.js';

// An incoming call id longer than this is replaced: it ends up in every log line of the call.
const maxCallIdLength = 200;
// Calls past the concurrency cap that wait for a slot, per slot; more are refused (OVERLOADED).
// The gateways split each replica's slots among themselves, so a call waits here only when
// their views of each other differ for a moment, or when there are fewer slots than gateways.
const waitingPerSlot = 4;

interface WaitingCall {
  req: IncomingMessage;
  res: ServerResponse;
  expectsContinue: boolean;
  callId: string;
  startedAt: number;
  leave?: () => void;
}

export class FunctionServer implements CallHost, RuntimeStats {
  readonly http: Server;
  inFlight = 0;
  abandoned = 0;
  /** Calls admitted past the cap that wait for a slot, oldest first. */
  private readonly waiting: WaitingCall[] = [];

  waitedCalls = 0;

  get waitingCalls(): number {
    return this.waiting.length;
  }
  draining = false;
  private metrics: RuntimeMetrics | undefined;
  private whenIdle: (() => void) | undefined;
  private drained: Promise<void> | undefined;
  private endLinger: (() => void) | undefined;

  constructor(
    readonly config: RuntimeConfig,
    readonly logger: RootLogger,
    readonly invoke: Handler,
  ) {
    this.http = createServer((req, res) => this.onRequest(req, res, false));
    // With this listener node:http leaves "Expect: 100-continue" to us: the client is told to send its
    // body only once the call is admitted, so a refused upload never leaves the client.
    this.http.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res, true));
  }

  /** Metrics read the server's counters, so they are attached after construction. */
  setMetrics(metrics: RuntimeMetrics): void {
    this.metrics = metrics;
  }

  callEnded(status: number, startedAt: number): void {
    this.inFlight--;
    this.metrics?.observe(status, (performance.now() - startedAt) / 1000);
    const next = this.waiting.shift();
    if (next) this.admit(next);
    if (this.inFlight === 0 && this.whenIdle !== undefined) this.whenIdle();
  }

  abandon(delta: 1 | -1): void {
    this.abandoned += delta;
  }

  /**
   * Lets calls in flight finish (up to drainMs, then cuts their connections). For drainLingerMs
   * first, while the router stops sending calls here, it still serves what arrives, new
   * connections included, each answered with Connection: close. Then it stops listening, closes
   * idle keep-alive connections, and resolves once every connection is gone.
   */
  drain(): Promise<void> {
    return (this.drained ??= this.runDrain());
  }

  /** Cuts every connection now; in-flight handlers see their signal abort. */
  closeNow(): Promise<void> {
    this.endLinger?.();
    const closed = this.drain();
    this.http.closeAllConnections();
    return closed;
  }

  private async runDrain(): Promise<void> {
    this.draining = true;
    const deadline = setTimeout(() => {
      this.logger.warn('drain deadline passed; closing the remaining connections', {
        drainMs: this.config.drainMs,
        inFlight: this.inFlight,
      });
      this.http.closeAllConnections();
    }, this.config.drainMs);
    // Closing an idle keep-alive connection now would fail a call the router sent just before it
    // stopped routing here: the call meets a closed socket. With no connection open, there is none to fail.
    if (this.config.drainLingerMs > 0 && (await this.connectionCount()) > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(this.config.drainLingerMs, this.config.drainMs));
        this.endLinger = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    // Stops accepting; node:http also closes the keep-alive connections that are idle right now.
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.whenIdle = resolve));
    this.whenIdle = undefined;
    // Connections whose last response went out during the drain are idle now.
    this.http.closeIdleConnections();
    await closed;
    clearTimeout(deadline);
  }

  private connectionCount(): Promise<number> {
    return new Promise((resolve) => this.http.getConnections((err, count) => resolve(err ? 0 : count)));
  }

  private onRequest(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    const startedAt = performance.now();
    const incoming = req.headers[runtimeHeaders.callId];
    const callId =
      typeof incoming === 'string' && incoming !== '' && incoming.length <= maxCallIdLength ? incoming : randomUUID();

    // A call that arrives during a drain was sent before the router stopped routing here, or on a
    // connection that was mid-request when the drain began: it is served, and its connection
    // closed after the answer, so no other call follows on it.
    if (this.draining) res.shouldKeepAlive = false;
    const length = req.headers['content-length'];
    if (length !== undefined && Number(length) > this.config.maxBodyBytes) {
      // Answer before reading a byte of the body, and close: the body is still on its way.
      const headers = [runtimeHeaders.callId, callId, 'connection', 'close'];
      const message = `request body is larger than ${this.config.maxBodyBytes} bytes`;
      return this.refuse(res, 413, 'BODY_TOO_LARGE', message, callId, headers, startedAt);
    }
    const cap = this.config.concurrency;
    if (cap > 0 && this.inFlight >= cap) {
      if (this.waiting.length >= cap * waitingPerSlot) {
        const headers = [runtimeHeaders.callId, callId, runtimeHeaders.overloaded, '1'];
        const message = `this replica is at its concurrency limit of ${cap} with ${this.waiting.length} calls waiting; retry on another`;
        return this.refuse(res, 503, 'OVERLOADED', message, callId, headers, startedAt);
      }
      // Held until a call ends (its body unread: an Expect: 100-continue client has not sent it).
      // A client that goes away while it waits leaves the queue (its connection is busy with this
      // call until then, so the socket closing is the client leaving).
      const leave = () => {
        const at = this.waiting.indexOf(call);
        if (at >= 0) this.waiting.splice(at, 1);
      };
      const call: WaitingCall = { req, res, expectsContinue, callId, startedAt, leave };
      this.waiting.push(call);
      this.waitedCalls++;
      req.socket.once('close', leave);
      return;
    }
    this.admit({ req, res, expectsContinue, callId, startedAt });
  }

  private admit({ req, res, expectsContinue, callId, startedAt, leave }: WaitingCall): void {
    if (leave) req.socket.off('close', leave);
    this.inFlight++;
    if (expectsContinue) res.writeContinue();
    new Call(this, req, res, callId, startedAt).run();
  }

  private refuse(
    res: ServerResponse,
    status: number,
    code: string,
    message: string,
    callId: string,
    headers: string[],
    startedAt: number,
  ): void {
    writeError(res, status, { code, message, callId }, headers);
    this.metrics?.observe(status, (performance.now() - startedAt) / 1000);
  }
}
