// One function replica as a podman container: `podman run` attached (its stdio is the container's
// output, its exit is the container's), ready when the runtime's /readyz answers through the
// published admin port, stopped with `podman stop` and the drain deadline.

import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import type { Endpoint } from './driver.js';
import type { Podman } from './podman.js';
import { StderrTail, watchChild, type Replica, type ReplicaExit, type ReplicaStart, type ReplicaState } from './replica.js';
import type { WarmContainer } from './podman-pool.js';
import { adminPaths, warmPaths, type SpecializeMessage } from './runtime-contract.js';

export interface PodmanReplicaOptions extends ReplicaStart {
  podman: Podman;
  image: string;
  containerName: string;
  /** `podman run` flags between the name and the image: labels, limits, env names. */
  runFlags: string[];
  /** Values of the `--env NAME` flags, handed to podman through its environment, not its argv. */
  env: Record<string, string>;
  /** 'bridge': ports published on 127.0.0.1; 'host': the container listens on host ports itself. */
  network: 'bridge' | 'host';
  /**
   * A warm container from the pool (podman-pool.ts), its /app and secrets already in place, to
   * specialize instead of starting one: it is sent `env` (the image and `runFlags` are unused).
   */
  warm?: WarmContainer | undefined;
  /** The bundle's file name in /app (fn.cjs or fn.mjs), for a warm container. */
  warmBundle?: string | undefined;
}

/** Where the runtime listens inside a bridged container. */
export const containerPort = 8080;
export const containerAdminPort = 8081;
/** Time past the drain deadline before the container is removed by force. */
const killGraceMs = 5000;

// Containers still running, removed if this process exits without closing its drivers.
const liveContainers = new Map<string, Podman>();
/** A container no longer needs removing at exit (podman removed it). */
export function forgetContainer(name: string): void {
  liveContainers.delete(name);
}
let exitHookInstalled = false;

export function trackContainer(name: string, podman: Podman): void {
  liveContainers.set(name, podman);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [container, p] of liveContainers) p.runSync(['rm', '--force', '--time', '0', '--ignore', container]);
  });
}

export class PodmanReplica implements Replica {
  readonly id: string;
  readonly seq: number;
  readonly templateKey: string;
  readonly startedAtMs = Date.now();
  state: ReplicaState = 'starting';
  endpoint: Endpoint | undefined;
  readyAtMs: number | undefined;
  readonly exited: Promise<ReplicaExit>;

  readonly #options: PodmanReplicaOptions;
  readonly #stderrTail = new StderrTail();
  #child: ChildProcess | undefined;
  #requested: ReplicaExit['requested'];
  #startTimer: NodeJS.Timeout | undefined;
  #killTimer: NodeJS.Timeout | undefined;
  #resolveExited!: (exit: ReplicaExit) => void;

  constructor(options: PodmanReplicaOptions) {
    this.#options = options;
    this.id = options.id;
    this.seq = options.seq;
    this.templateKey = options.templateKey;
    this.exited = new Promise((resolve) => (this.#resolveExited = resolve));
    this.#startTimer = setTimeout(() => this.#startTimedOut(), options.startTimeoutMs);
    void this.#launch().catch((err: unknown) => this.#finish(null, null, err as Error));
  }

  get stopRequested(): boolean {
    return this.#requested !== undefined;
  }

  describe(): string {
    return `container ${this.#options.containerName}${this.#options.warm ? ', a warm container from the pool' : ''}`;
  }

  stop(): Promise<ReplicaExit> {
    if (this.state === 'exited') return this.exited;
    this.#requested ??= 'stop';
    if (!this.#killTimer) {
      const o = this.#options;
      // podman stop sends SIGTERM and SIGKILL after --time; the timer below covers a podman that hangs.
      void o.podman.run(['stop', '--ignore', '--time', String(Math.ceil(o.drainMs / 1000)), o.containerName], { timeoutMs: o.drainMs + killGraceMs });
      this.#killTimer = setTimeout(() => this.#forceRemove(), o.drainMs + killGraceMs);
    }
    return this.exited;
  }

  /** `podman rm --force --time 0`: SIGKILL to the container, then podman run exits. */
  kill(): void {
    if (this.state !== 'exited') this.#forceRemove();
  }

  async #launch(): Promise<void> {
    const o = this.#options;
    if (o.warm) return this.#specialize(o.warm);
    const [port, adminPort] = await freePorts(2);
    if (this.stopRequested) return this.#finish(null, null, undefined);
    const net = containerNetwork(o.network, port!, adminPort!);
    const env = { ...o.env, ...net.env };
    // No --rm: #finish reads whether the kernel OOM-killed it before it removes the container.
    const args = ['run', '--pull', 'never', '--name', o.containerName, ...net.flags, ...envFlagsOf(env), ...o.runFlags, o.image];
    const child = o.podman.spawn(args, env);
    this.#child = child;
    trackContainer(o.containerName, o.podman);
    this.#wire(child);
    this.endpoint = { id: this.id, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}` };
    await this.#awaitReady(this.endpoint.adminUrl);
  }

  /**
   * Hands the warm container's runtime its function over the admin port, then waits for the
   * function's runtime to answer /readyz there. A runtime that does not take it is removed.
   */
  async #specialize(warm: WarmContainer): Promise<void> {
    const o = this.#options;
    // The pool tracked the container for removal at exit when it started it.
    this.#child = warm.child;
    this.#wire(warm.child);
    warm.child.stdout!.resume();
    warm.child.stderr!.resume();
    const env: Record<string, string> = { NODE_ENV: 'production', ...o.env, ...containerNetwork(o.network, warm.port, warm.adminPort).env };
    const adminUrl = `http://127.0.0.1:${warm.adminPort}`;
    this.endpoint = { id: this.id, url: `http://127.0.0.1:${warm.port}`, adminUrl };
    const message: SpecializeMessage = { type: 'kubefn:specialize', file: `/app/${o.warmBundle ?? 'fn.cjs'}`, cwd: '/app', env };
    const res = await fetch(`${adminUrl}${warmPaths.specialize}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${warm.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(message),
      signal: AbortSignal.timeout(5000),
    }).catch((err: unknown) => ({ status: 0, text: async () => String((err as Error).cause ?? err) }));
    if (res.status !== 202) {
      this.#stderrTail.add(`the warm container did not take the function: ${res.status} ${await res.text()}`);
      return this.#forceRemove();
    }
    await this.#awaitReady(adminUrl);
  }

  /** Polls /readyz until it answers 200, the replica goes, or the start timeout fires. */
  async #awaitReady(adminUrl: string): Promise<void> {
    const starting = () => this.state === 'starting' && !this.stopRequested;
    // A refused connection costs little; a long pause here would be added to every cold start.
    if (!(await pollFor200(`${adminUrl}${adminPaths.ready}`, starting, 20)) || !starting()) return;
    clearTimeout(this.#startTimer);
    this.state = 'ready';
    this.readyAtMs = Date.now();
    this.#options.onReady(this);
  }

  #wire(child: ChildProcess): void {
    watchChild(child, {
      line: (stream, text) => {
        if (stream === 'stderr') this.#stderrTail.add(text);
        this.#options.onLine(this, stream, text);
      },
      exited: () => {
        if (this.state === 'ready' || this.state === 'draining') this.#options.onUnroutable(this, 'exited');
      },
      done: (code, signal, error) => this.#finish(code, signal, error),
    });
  }

  #startTimedOut(): void {
    if (this.state !== 'starting') return;
    this.#requested ??= 'start-timeout';
    this.#forceRemove();
  }

  /** Removes the container at once; `podman run` then exits and #finish follows. */
  #forceRemove(): void {
    const o = this.#options;
    if (!this.#child) return this.#finish(null, null, undefined);
    void o.podman.run(['rm', '--force', '--time', '0', '--ignore', o.containerName]).then(() => {
      // podman run normally exits once its container is gone; make sure.
      if (this.state !== 'exited') this.#child?.kill('SIGKILL');
    });
  }

  #finish(code: number | null, signal: NodeJS.Signals | null, error: Error | undefined): void {
    if (this.state === 'exited') return;
    const phase = this.state;
    this.state = 'exited';
    clearTimeout(this.#startTimer);
    clearTimeout(this.#killTimer);
    const o = this.#options;
    const exit: ReplicaExit = { code, signal, phase, requested: this.#requested, error, stderrTail: this.#stderrTail.lines(), loadFailure: this.#stderrTail.loadFailure() };
    const limit = o.spec.resources?.memory;
    if (this.#stderrTail.heapOutOfMemory) exit.outOfMemory = { kind: 'heap', limit };
    // 137 is SIGKILL, which kubefn sends only to replicas it stops: under a memory limit it is the
    // kernel's OOM killer, which podman confirms in State.OOMKilled where it can see it.
    const sigkilled = this.#child !== undefined && code === 137 && this.#requested === undefined && limit !== undefined;
    const oomKilled = sigkilled ? containerOomKilled(o.podman, o.containerName) : Promise.resolve(false);
    const cleanup = oomKilled.then((confirmed) => {
      if (sigkilled && !exit.outOfMemory) exit.outOfMemory = { kind: 'container', limit, confirmed };
      if (this.#child) return o.podman.run(['rm', '--force', '--time', '0', '--ignore', o.containerName]);
    });
    void cleanup.then(() => {
      liveContainers.delete(o.containerName);
      this.#resolveExited(exit);
      o.onExit(this, exit);
    });
  }
}

/** Whether the kernel's OOM killer ended the container (podman inspect State.OOMKilled); false when podman cannot tell. */
async function containerOomKilled(podman: Podman, containerName: string): Promise<boolean> {
  const r = await podman.run(['inspect', '--format', '{{.State.OOMKilled}}', containerName], { timeoutMs: 30_000 });
  return r.code === 0 && r.stdout.trim() === 'true';
}

/**
 * How a container on `network` listens: on `port` and `adminPort` of 127.0.0.1 itself ('host'),
 * or on the runtime's own ports with those published ('bridge'). The environment tells the
 * runtime where; the flags go to `podman run`.
 */
export function containerNetwork(network: 'bridge' | 'host', port: number, adminPort: number): { env: Record<string, string>; flags: string[] } {
  if (network === 'host') {
    return { env: { PORT: String(port), ADMIN_PORT: String(adminPort), KUBEFN_HOST: '127.0.0.1' }, flags: ['--network', 'host'] };
  }
  return {
    env: { PORT: String(containerPort), ADMIN_PORT: String(containerAdminPort), KUBEFN_HOST: '0.0.0.0' },
    flags: ['--publish', `127.0.0.1:${port}:${containerPort}`, '--publish', `127.0.0.1:${adminPort}:${containerAdminPort}`],
  };
}

/** `--env NAME` for each variable: the values reach podman through its environment, not its argv. */
export function envFlagsOf(env: Record<string, string>): string[] {
  return Object.keys(env).sort().flatMap((k) => ['--env', k]);
}

/**
 * GETs `url` until it answers 200 (true), or `keepGoing()` turns false (false): 5 ms between
 * tries at first, doubling up to `maxIntervalMs`.
 */
export async function pollFor200(url: string, keepGoing: () => boolean, maxIntervalMs: number): Promise<boolean> {
  let intervalMs = 5;
  while (keepGoing()) {
    const ok = await fetch(url, { signal: AbortSignal.timeout(2000) }).then(
      (res) => (void res.body?.cancel(), res.status === 200),
      () => false,
    );
    if (ok) return true;
    await new Promise((r) => setTimeout(r, intervalMs));
    intervalMs = Math.min(intervalMs * 2, maxIntervalMs);
  }
  return false;
}

/** `count` TCP ports free on 127.0.0.1 right now (the kernel picks them; a race with others is retried by the driver). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () =>
      new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
        const s = createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve(s));
      }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
