// The podman driver's warm pool: containers of the pool image (the builder's warm-pool-image.ts:
// a function base with runtime-node's warm runtime), each with an empty /app and secrets
// directory mounted from the host, its ports published and its runtime warm. Scaling a function
// from zero takes one: the driver writes the function's /app and secrets into its directories
// and specializes the runtime over the admin port, which skips the container start. A function
// can be taken only when its image is the pool image's base plus its own /app layer; others
// start as new containers (PodmanLauncher.coldStartPath says why).

import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, cpSync, linkSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { LineSplitter } from './log-buffer.js';
import type { Podman } from './podman.js';
import { containerNetwork, envFlagsOf, forgetContainer, freePorts, pollFor200, trackContainer } from './podman-replica.js';
import { warmPaths, warmTokenEnv } from './runtime-contract.js';
import { secretsMountPath } from './secrets.js';
import { holdOpen, residentBytesOf, WarmSet, type WarmMember } from './warm-set.js';

/** A warm container, as the replica that takes it needs it. */
export interface WarmContainer {
  name: string;
  /** `podman run`, attached: the container's output and exit. */
  child: ChildProcess;
  port: number;
  adminPort: number;
  /** What POST warmPaths.specialize must carry. */
  token: string;
  /** Host directories mounted at /app (read-only) and at the secrets path (read-only). */
  appDir: string;
  secretsDir: string;
}

export interface PodmanPoolOptions {
  size: number;
  memoryBytes?: number | undefined;
  podman: Podman;
  /** The pool image, in podman's storage. */
  image: string;
  /** Every container gets this owner label, so a driver's leftover cleanup removes them too. */
  labels: string[];
  /** Names containers apart from another driver's. */
  tag: string;
  /** Where each container's /app and secrets directories go (made 0700). */
  dir: string;
  network: 'bridge' | 'host';
  log?: ((message: string) => void) | undefined;
}

/** Hands out warm containers: each taken one is the caller's, its output unread. */
export class PodmanPool extends WarmSet<WarmContainer> {
  constructor(options: PodmanPoolOptions) {
    mkdirSync(options.dir, { recursive: true, mode: 0o700 });
    chmodSync(options.dir, 0o700);
    let seq = 0;
    super({
      size: options.size,
      memoryBytes: options.memoryBytes,
      start: () => startContainer(options, `kubefn-pool-${++seq}-${options.tag}`),
      assumedBytes: 48 * 1024 * 1024,
      // A container's start takes podman, conmon and runc about half a second of a busy core.
      warmTimeoutMs: 30_000,
      refillDelayMs: 1000,
      log: options.log,
      noun: 'warm container',
    });
  }
}

/** Starts one pool container, `podman run` attached, with its own token and empty directories. */
function startContainer(o: PodmanPoolOptions, name: string): WarmMember<WarmContainer> {
  const appDir = path.join(o.dir, name, 'app');
  const secretsDir = path.join(o.dir, name, 'secrets');
  mkdirSync(appDir, { recursive: true, mode: 0o755 });
  mkdirSync(secretsDir, { recursive: true, mode: 0o755 });
  const token = randomBytes(24).toString('hex');
  let child: ChildProcess | undefined;
  let killed = false;
  let resolveGone!: (how: string | undefined) => void;
  const gone = new Promise<string | undefined>((resolve) => (resolveGone = resolve));
  let resolveWarm!: () => void;
  const warm = new Promise<void>((resolve) => (resolveWarm = resolve));
  const container: Partial<WarmContainer> = { name, token, appDir, secretsDir };
  let onData: (chunk: Buffer) => void = () => {};
  let detached = false;
  void gone.then(() => {
    // A taken container's directories are its replica's to remove.
    if (!detached) rmSync(path.join(o.dir, name), { recursive: true, force: true });
  });

  void freePorts(2).then(
    ([port, adminPort]) => {
      if (killed) return resolveGone('removed before it started');
      container.port = port!;
      container.adminPort = adminPort!;
      const net = containerNetwork(o.network, port!, adminPort!);
      const env: Record<string, string> = { [warmTokenEnv]: token, ...net.env };
      const args = [
        'run', '--pull', 'never', '--name', name, ...o.labels.flatMap((l) => ['--label', l]), ...net.flags, ...envFlagsOf(env),
        '--volume', `${appDir}:/app:ro`, '--volume', `${secretsDir}:${secretsMountPath}:ro`,
        o.image,
      ];
      const c = (child = o.podman.spawn(args, env));
      container.child = c;
      trackContainer(name, o.podman);
      const lines = new LineSplitter((text) => o.log?.(`warm container ${name}: ${text}`));
      onData = (chunk) => lines.write(chunk);
      c.stdout!.on('data', onData);
      c.stderr!.on('data', onData);
      c.once('exit', (code, signal) => {
        if (!detached) forgetContainer(name);
        resolveGone(String(code ?? signal));
      });
      c.once('error', () => {
        if (c.pid === undefined) resolveGone('podman could not be run');
      });
      // An idle container keeps no process alive; a taken one is held open again.
      holdOpen(c, false);
      const running = () => !killed && c.exitCode === null && c.signalCode === null;
      void pollFor200(`http://127.0.0.1:${adminPort}${warmPaths.warm}`, running, 100).then((ok) => {
        if (ok) resolveWarm();
      });
    },
    (err: unknown) => resolveGone(`no free ports: ${(err as Error).message}`),
  );

  return {
    get value() {
      return container as WarmContainer;
    },
    warm,
    gone,
    alive: () => !!child && child.exitCode === null && child.signalCode === null,
    kill: () => {
      killed = true;
      if (!child) return;
      holdOpen(child, true);
      void o.podman.run(['rm', '--force', '--time', '0', '--ignore', name]).then(() => child?.kill('SIGKILL'));
    },
    residentBytes: async () => {
      const r = await o.podman.run(['inspect', '--format', '{{.State.Pid}}', name], { timeoutMs: 10_000 });
      return r.code === 0 ? residentBytesOf(Number(r.stdout.trim())) : undefined;
    },
    detach: () => {
      detached = true;
      if (!child) return;
      // The taker's now: it keeps this process running, and reads the output.
      holdOpen(child, true);
      child.stdout!.off('data', onData);
      child.stderr!.off('data', onData);
      child.stdout!.pause();
      child.stderr!.pause();
    },
  };
}

/**
 * Puts `from` (a function's unpacked /app) into `to` (a warm container's empty /app): hard links
 * where both are on one file system, which costs no copy, else a copy. The files are root's and
 * read-only to the function, whose user is not root, so a link shares nothing it could change.
 */
export function placeApp(from: string, to: string): void {
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const src = path.join(from, entry.name);
    const dst = path.join(to, entry.name);
    if (entry.isDirectory()) {
      mkdirSync(dst, { mode: statSync(src).mode & 0o7777 });
      placeApp(src, dst);
    } else if (entry.isFile()) {
      try {
        linkSync(src, dst);
      } catch {
        cpSync(src, dst);
      }
    } else {
      cpSync(src, dst, { verbatimSymlinks: true });
    }
  }
}
