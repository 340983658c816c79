// Running the podman CLI: one place that knows its path, global flags and how to read its errors.

import { execFile, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface PodmanOptions {
  /** The podman binary (default "podman" on PATH). */
  path?: string;
  /** Flags before the subcommand, e.g. ["--runtime", "runc"]. */
  globalArgs?: string[];
  /** Extra environment for every podman command, e.g. { CONTAINERS_CONF: "/etc/kubefn/containers.conf" }. */
  env?: Record<string, string>;
}

export interface PodmanResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Output kept from one podman command; pulls print progress, nothing else is large. */
const maxOutputBytes = 4 * 1024 * 1024;

export class Podman {
  readonly path: string;
  readonly #globalArgs: string[];
  readonly #env: Record<string, string>;

  constructor(options: PodmanOptions = {}) {
    this.path = options.path ?? 'podman';
    this.#globalArgs = options.globalArgs ?? [];
    this.#env = options.env ?? {};
  }

  /** Runs `podman <args>` to the end. Never rejects on a non-zero exit: read `code`. */
  run(args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<PodmanResult> {
    return new Promise((resolve) => {
      execFile(
        this.path,
        [...this.#globalArgs, ...args],
        { env: this.#childEnv(options.env), timeout: options.timeoutMs ?? 120_000, maxBuffer: maxOutputBytes, killSignal: 'SIGKILL' },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
          resolve({ code, stdout: String(stdout), stderr: error && code === -1 ? `${String(stderr)}${error.message}` : String(stderr) });
        },
      );
    });
  }

  /** `podman <args>`, throwing an Error with podman's own message when it fails. */
  async check(args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
    const r = await this.run(args, options);
    if (r.code !== 0) throw new Error(podmanError(r) || `podman ${args[0]} exited with code ${r.code}`);
    return r.stdout;
  }

  /** A long-running `podman <args>` with piped stdio; `env` is added to podman's environment. */
  spawn(args: string[], env: NodeJS.ProcessEnv, options: SpawnOptions = {}): ChildProcess {
    return spawn(this.path, [...this.#globalArgs, ...args], { ...options, env: this.#childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Synchronous, for process 'exit' handlers only. */
  runSync(args: string[]): void {
    spawnSync(this.path, [...this.#globalArgs, ...args], { env: this.#childEnv(), stdio: 'ignore', timeout: 30_000 });
  }

  #childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    return { ...process.env, ...this.#env, ...extra };
  }
}

/** The line of podman's stderr that says what went wrong ("Error: ..."), or its last line. */
export function podmanError(r: Pick<PodmanResult, 'stderr'>): string {
  const lines = r.stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const error = lines.filter((l) => /^Error:/i.test(l)).pop() ?? lines.pop() ?? '';
  return error.replace(/^Error:\s*/i, '');
}
