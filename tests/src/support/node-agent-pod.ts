// One pod on the node agent: its container's life as a podman container on the agent's network
// at the pod's address (`--ip`), restarts with back-off as the pod's restartPolicy says, readiness
// from its httpGet probe, termination within the grace period, and the status reported through
// pods/status (merge patches, in order). What the container is given from the API (environment,
// volumes) is in node-agent-volumes.ts.
//
// Not a kubelet: one container per pod, no init containers, no liveness/startup probes, readiness
// from httpGet only.

import type { ChildProcess } from 'node:child_process';
import type { CoreV1Api, V1Container, V1ContainerState, V1ContainerStateTerminated, V1Pod, V1PodCondition } from '@kubernetes/client-node';
import { parseQuantity, podmanError, type Podman } from '@kubefn/platform';
import { containerPrefix, hostIP, isoNow, mergePatch, message, nodeAgentLabel, podUidLabel, sleep, statusCode } from './node-agent-common.js';
import { containerEnv, containerVolumes, unsupportedVolume, type PodContext } from './node-agent-volumes.js';

/** Restart back-off after a container exits: doubles from the first value up to the second, in ms. */
const backoffMs = [1_000, 30_000] as const;

/** What a pod worker needs of its node agent. */
export interface PodHost {
  readonly nodeName: string;
  /** The podman network pods run on. */
  readonly network: string;
  readonly core: CoreV1Api;
  readonly podman: Podman;
  readonly apiserver: { host: string; port: number };
  /** Registries pulled over plain HTTP besides loopback ones (host:port). */
  readonly insecureRegistries: string[];
  log(line: string): void;
  /** The pod's directory on the host (its volumes). */
  podDir(uid: string): string;
  removePodDir(uid: string): Promise<void>;
  releaseIP(ip: string | undefined): void;
  /** Removes what is left of the pod's containers and deletes the pod for good. */
  finishDeletion(pod: V1Pod): Promise<void>;
}

/** One pod on this node: its container's life, restarts, readiness and the status reported for it. */
export class PodWorker {
  pod: V1Pod;
  readonly #agent: PodHost;
  readonly #ip: string | undefined;
  readonly #startTime = isoNow();
  readonly #transitions = new Map<string, { status: string; time: string }>();
  #phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed' = 'Pending';
  #reason: string | undefined;
  #message: string | undefined;
  #restartCount: number;
  #state: V1ContainerState = { waiting: { reason: 'ContainerCreating' } };
  #lastState: V1ContainerState = {};
  #containerID = '';
  #imageID = '';
  #ready = false;
  #run = 0;
  #backoffMs: number = backoffMs[0];
  #done = false;
  #terminating = false;
  #waitChild: ChildProcess | undefined;
  #timer: NodeJS.Timeout | undefined;
  #reporting: Promise<void> = Promise.resolve();

  constructor(agent: PodHost, pod: V1Pod, ip: string | undefined) {
    this.#agent = agent;
    this.pod = pod;
    this.#ip = ip;
    this.#restartCount = pod.status?.containerStatuses?.[0]?.restartCount ?? 0;
  }

  get #key(): string {
    return `${this.pod.metadata!.namespace}/${this.pod.metadata!.name}`;
  }

  get #container(): V1Container {
    return this.pod.spec!.containers[0]!;
  }

  get #containerName(): string {
    return `${containerPrefix(this.pod.metadata!.namespace!, this.pod.metadata!.name!)}${this.#container.name}`;
  }

  #context(): PodContext {
    const a = this.#agent;
    return { pod: this.pod, core: a.core, nodeName: a.nodeName, ip: this.#ip, apiserver: a.apiserver, podDir: a.podDir(this.pod.metadata!.uid!) };
  }

  begin(): void {
    const spec = this.pod.spec!;
    const refuse = spec.containers.length !== 1
      ? `this node runs pods of exactly one container; the pod has ${spec.containers.length}`
      : spec.initContainers?.length ? 'this node does not run init containers' : !this.#ip ? 'this node has no pod address left' : unsupportedVolume(spec);
    if (refuse) {
      this.#agent.log(`refusing pod ${this.#key}: ${refuse}`);
      this.#finish('Failed', 'UnsupportedPod', refuse);
      return;
    }
    void this.#launch();
  }

  async #launch(): Promise<void> {
    const run = ++this.#run;
    const c = this.#container;
    try {
      const env = await containerEnv(this.#context());
      const volumes = await containerVolumes(this.#context());
      const image = c.image!;
      const policy = c.imagePullPolicy === 'Never' ? 'never' : c.imagePullPolicy === 'Always' ? 'always' : 'missing';
      const registry = image.split('/')[0]!.replace(/:\d+$/, '');
      const args = [
        'run', '--detach', '--name', this.#containerName, '--hostname', this.pod.metadata!.name!,
        '--network', this.#agent.network, '--ip', this.#ip!,
        '--pull', policy, ...(registry === 'localhost' || /^127\./.test(registry) || this.#agent.insecureRegistries.includes(image.split('/')[0]!) ? ['--tls-verify=false'] : []),
        '--label', `${nodeAgentLabel}=${this.#agent.nodeName}`, '--label', `${podUidLabel}=${this.pod.metadata!.uid}`,
        ...Object.keys(env).flatMap((k) => ['--env', k]),
        ...volumes.flatMap((v) => ['--volume', v]),
        ...(c.workingDir ? ['--workdir', c.workingDir] : []),
        ...(c.resources?.limits?.memory ? ['--memory', String(Math.floor(parseQuantity(c.resources.limits.memory)))] : []),
        ...(c.resources?.limits?.cpu ? ['--cpus', String(parseQuantity(c.resources.limits.cpu))] : []),
        ...(c.ports ?? []).filter((p) => p.hostPort).flatMap((p) => ['--publish', `${hostIP}:${p.hostPort}:${p.containerPort}/${(p.protocol ?? 'TCP').toLowerCase()}`]),
        ...(c.command?.length ? ['--entrypoint', JSON.stringify(c.command)] : []),
        image, ...(c.args ?? []),
      ];
      // A container of an earlier run stays until now so its output can still be read.
      await this.#agent.podman.run(['rm', '--force', '--time', '0', '--ignore', this.#containerName]);
      if (this.#done || run !== this.#run) return;
      const r = await this.#agent.podman.run(args, { env, timeoutMs: 600_000 });
      if (r.code !== 0) {
        const text = podmanError(r) || `podman run exited with code ${r.code}`;
        throw Object.assign(new Error(text), { reason: /pull|manifest|image|registry/i.test(text) ? 'ErrImagePull' : 'RunContainerError' });
      }
      const id = r.stdout.trim();
      if (this.#done || run !== this.#run) return void this.#agent.podman.run(['rm', '--force', '--time', '0', '--ignore', id]);
      const [startedAt, imageID] = (await this.#agent.podman.check(['inspect', id, '--format', '{{.State.StartedAt}}|{{.ImageDigest}}'])).trim().split('|');
      this.#containerID = `podman://${id}`;
      this.#imageID = imageID ?? '';
      this.#state = { running: { startedAt: new Date(startedAt!.replace(/ \+0000 UTC$/, 'Z').replace(' ', 'T')) } };
      this.#phase = 'Running';
      this.#reason = this.#message = undefined;
      this.#ready = !c.readinessProbe;
      this.#report();
      this.#agent.log(`pod ${this.#key} running as ${id.slice(0, 12)} on ${this.#ip}`);
      this.#watchExit(id, run);
      if (c.readinessProbe?.httpGet) void this.#probe(run);
    } catch (err) {
      if (this.#done || run !== this.#run) return;
      const reason = (err as { reason?: string }).reason ?? 'CreateContainerConfigError';
      this.#agent.log(`pod ${this.#key}: ${reason}: ${message(err)}`);
      this.#state = { waiting: { reason, message: message(err) } };
      this.#report();
      this.#retry();
    }
  }


  #watchExit(id: string, run: number): void {
    const child = this.#agent.podman.spawn(['wait', id], {});
    this.#waitChild = child;
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', () => {
      if (this.#done || this.#terminating || run !== this.#run) return;
      void this.#exited(id, Number.parseInt(out.trim(), 10), run);
    });
  }

  async #exited(id: string, waited: number, run: number): Promise<void> {
    let exitCode = waited;
    let finishedAt = new Date();
    const inspected = await this.#agent.podman.run(['inspect', id, '--format', '{{.State.ExitCode}}|{{.State.FinishedAt}}']);
    if (inspected.code === 0) {
      const [code, finished] = inspected.stdout.trim().split('|');
      exitCode = Number(code);
      finishedAt = new Date(finished!.replace(/ \+0000 UTC$/, 'Z').replace(' ', 'T'));
    }
    if (this.#done || this.#terminating || run !== this.#run) return;
    if (!Number.isFinite(exitCode)) exitCode = 137;
    const terminated: V1ContainerStateTerminated = {
      exitCode, reason: exitCode === 0 ? 'Completed' : 'Error', containerID: this.#containerID, startedAt: this.#state.running?.startedAt, finishedAt,
    };
    // As the kubelet does for FallbackToLogsOnError (no termination-log file here): the log's
    // last 80 lines, at most 2 KiB, of a container that failed.
    if (exitCode !== 0 && this.pod.spec!.containers[0]?.terminationMessagePolicy === 'FallbackToLogsOnError') {
      const logs = await this.#agent.podman.run(['logs', '--tail', '80', id]);
      const text = `${logs.stdout}${logs.stderr}`.trim();
      if (logs.code === 0 && text) terminated.message = text.slice(-2048);
    }
    if (this.#done || this.#terminating || run !== this.#run) return;
    this.#ready = false;
    this.#agent.log(`pod ${this.#key}: container exited with code ${exitCode}`);
    const policy = this.pod.spec!.restartPolicy ?? 'Always';
    if (policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0)) {
      this.#lastState = { terminated };
      this.#state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${this.#backoffMs / 1000} s restarting exited container` } };
      this.#report();
      this.#retry();
    } else {
      this.#state = { terminated };
      this.#finish(exitCode === 0 ? 'Succeeded' : 'Failed', undefined, undefined);
    }
  }

  /** Runs the container again after the back-off: a restart counts once a container had started. */
  #retry(): void {
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, backoffMs[1]);
    this.#timer = setTimeout(() => {
      if (this.#containerID) this.#restartCount++;
      void this.#launch();
    }, delay);
  }

  /** readinessProbe.httpGet at http://<podIP>:<port><path>: every 200 ms until it first passes, then every periodSeconds. */
  async #probe(run: number): Promise<void> {
    const c = this.#container;
    const p = c.readinessProbe!;
    const get = p.httpGet!;
    const port = typeof get.port === 'number' || /^\d+$/.test(String(get.port)) ? Number(get.port) : c.ports?.find((x) => x.name === get.port)?.containerPort;
    const url = `${(get.scheme ?? 'HTTP').toLowerCase()}://${this.#ip}:${port}${get.path ?? '/'}`;
    const periodMs = Math.max(1, p.periodSeconds ?? 10) * 1000;
    let passes = 0;
    let fails = 0;
    let passedOnce = false;
    await sleep((p.initialDelaySeconds ?? 0) * 1000);
    while (!this.#done && !this.#terminating && run === this.#run) {
      const ok = await fetch(url, { signal: AbortSignal.timeout(Math.max(1, p.timeoutSeconds ?? 1) * 1000) }).then(
        (res) => (void res.body?.cancel(), res.status >= 200 && res.status < 400),
        () => false,
      );
      if (this.#done || this.#terminating || run !== this.#run) return;
      passes = ok ? passes + 1 : 0;
      fails = ok ? 0 : fails + 1;
      passedOnce ||= ok;
      if (!this.#ready && passes >= (p.successThreshold ?? 1)) {
        this.#ready = true;
        this.#report();
      } else if (this.#ready && fails >= (p.failureThreshold ?? 3)) {
        this.#ready = false;
        this.#report();
      }
      await sleep(passedOnce ? periodMs : 200);
    }
  }

  /** The pod got a deletionTimestamp: stop the container within its grace period, then delete the pod. */
  terminate(): void {
    if (this.#terminating) return;
    this.#terminating = true;
    clearTimeout(this.#timer);
    const grace = this.pod.metadata!.deletionGracePeriodSeconds ?? this.pod.spec!.terminationGracePeriodSeconds ?? 30;
    void (async () => {
      if (this.#containerID) {
        await this.#agent.podman.run(['stop', '--ignore', '--time', String(grace), this.#containerName], { timeoutMs: (grace + 10) * 1000 });
      }
      this.#done = true;
      this.#agent.releaseIP(this.#ip);
      await this.#agent.finishDeletion(this.pod);
    })().catch((err: unknown) => this.#agent.log(`pod ${this.#key}: deletion failed: ${message(err)}`));
  }

  /** The pod is gone from the API: remove its container at once. */
  async remove(): Promise<void> {
    this.abandon();
    await this.#agent.podman.run(['rm', '--force', '--time', '0', '--ignore', this.#containerName]);
    await this.#agent.removePodDir(this.pod.metadata!.uid!);
    this.#agent.releaseIP(this.#ip);
  }

  /** Stops everything this worker does; the agent removes the containers. */
  abandon(): void {
    this.#done = true;
    clearTimeout(this.#timer);
    this.#waitChild?.kill('SIGTERM');
  }

  #finish(phase: 'Succeeded' | 'Failed', reason: string | undefined, text: string | undefined): void {
    this.#phase = phase;
    this.#reason = reason;
    this.#message = text;
    this.#ready = false;
    this.#done = true;
    this.#report();
  }

  #condition(type: string, ok: boolean, reason?: string): V1PodCondition {
    const status = ok ? 'True' : 'False';
    let t = this.#transitions.get(type);
    if (t?.status !== status) this.#transitions.set(type, (t = { status, time: isoNow() }));
    return { type, status, lastTransitionTime: t.time as unknown as Date, ...(reason && !ok ? { reason } : {}) };
  }

  /** Sends the current status (merge patch of pods/status: no resourceVersion, no conflicts); reports go in order. */
  #report(): void {
    this.#reporting = this.#reporting.then(async () => {
      const c = this.#container;
      const terminal = this.#phase === 'Succeeded' || this.#phase === 'Failed';
      const notReady = terminal ? 'PodCompleted' : 'ContainersNotReady';
      const status = {
        phase: this.#phase,
        reason: this.#reason ?? null,
        message: this.#message ?? null,
        hostIP, hostIPs: [{ ip: hostIP }],
        ...(this.#ip && this.#reason !== 'UnsupportedPod' ? { podIP: this.#ip, podIPs: [{ ip: this.#ip }] } : {}),
        startTime: this.#startTime,
        conditions: [
          this.#condition('PodScheduled', true),
          this.#condition('Initialized', this.#reason !== 'UnsupportedPod'),
          this.#condition('ContainersReady', this.#ready, notReady),
          this.#condition('Ready', this.#ready, notReady),
        ],
        containerStatuses: c && this.#reason !== 'UnsupportedPod'
          ? [{
              name: c.name, image: c.image, imageID: this.#imageID, containerID: this.#containerID || undefined,
              ready: this.#ready, started: !!this.#state.running, restartCount: this.#restartCount,
              state: this.#state, lastState: this.#lastState,
            }]
          : undefined,
      };
      const { name, namespace } = this.pod.metadata as { name: string; namespace: string };
      for (let attempt = 1; ; attempt++) {
        try {
          await this.#agent.core.patchNamespacedPodStatus({ name, namespace, body: { status } }, mergePatch());
          return;
        } catch (err) {
          const code = statusCode(err);
          if (code === 404 || attempt >= 5 || (code !== undefined && code < 500 && code !== 409 && code !== 429)) {
            if (code !== 404) this.#agent.log(`pod ${namespace}/${name}: status update failed: ${message(err)}`);
            return;
          }
          await sleep(200 * attempt);
        }
      }
    });
  }
}
