// A function's log on Kubernetes: the log of its pods' function container, read with client-node's
// Log (timestamps on), as LogLines; following adds pods as they start, through a pod informer.

import { PassThrough, type Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import type { CoreV1Api, KubeConfig, V1Pod } from '@kubernetes/client-node';
import type { KubernetesClient } from './client.js';
import type { LogLine, LogOptions } from '../driver.js';
import { containerName, kubefnLabels } from './manifests.js';
import { watchedInformer } from './informers.js';

export interface PodLogsInput {
  k8s: KubernetesClient;
  kc: KubeConfig;
  core: CoreV1Api;
  namespace: string;
  /** The function. */
  name: string;
  options: LogOptions;
  /** Ends the lines (a follower ends only through it). */
  signal: AbortSignal;
  onWarning: (message: string, err?: unknown) => void;
}

/** Lines buffered for a slow reader before the pod streams are paused. */
const maxQueuedLines = 10_000;
/** What one pod's history may hold when not following, in bytes. */
const historyLimitBytes = 16 * 1024 * 1024;

export async function* podLogs(input: PodLogsInput): AsyncIterable<LogLine> {
  if (input.options.follow) yield* follow(input);
  else yield* history(input);
}

/** Every started pod's lines (at most `tail` of each), merged by time, then the last `tail` of all. */
async function* history(input: PodLogsInput): AsyncIterable<LogLine> {
  const { options } = input;
  if (options.tail === 0) return;
  const pods = await input.core.listNamespacedPod({ namespace: input.namespace, labelSelector: `${kubefnLabels.function}=${input.name}` });
  const lines: LogLine[] = [];
  await Promise.all(
    pods.items.filter(started).map(async (pod) => {
      const queue = new LineQueue(Number.POSITIVE_INFINITY);
      try {
        await readPod(input, pod, queue, { tailLines: options.tail, since: options.since, limitBytes: historyLimitBytes });
        for await (const line of queue.drain()) lines.push(line);
      } catch (err) {
        input.onWarning(`reading the log of pod ${pod.metadata?.name ?? '?'} failed`, err);
      }
    }),
  );
  lines.sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
  yield* options.tail === undefined ? lines : lines.slice(-options.tail);
}

/** Lines as pods write them, from every pod running now and every one that starts later. */
async function* follow(input: PodLogsInput): AsyncIterable<LogLine> {
  const { options, signal } = input;
  const startedAt = new Date();
  const queue = new LineQueue(maxQueuedLines);
  const attached = new Set<string>();
  const informer = watchedInformer<V1Pod>(
    input.k8s,
    input.kc,
    `/api/v1/namespaces/${input.namespace}/pods`,
    () => input.core.listNamespacedPod({ namespace: input.namespace, labelSelector: `${kubefnLabels.function}=${input.name}` }),
    { labelSelector: `${kubefnLabels.function}=${input.name}` },
  );
  const attach = (pod: V1Pod): void => {
    if (signal.aborted || !started(pod)) return;
    const status = pod.status?.containerStatuses?.find((c) => c.name === containerName);
    // A restarted container is a new log: attach again when the restart count moves.
    const key = `${pod.metadata?.uid ?? ''}:${status?.restartCount ?? 0}`;
    if (attached.has(key)) return;
    const first = attached.size === 0 || (pod.metadata?.creationTimestamp && new Date(pod.metadata.creationTimestamp) < startedAt);
    attached.add(key);
    // Pods running when the call came give their last `tail` lines (tail 0: only lines written from
    // now, which client-node cannot ask for as tailLines=0, so sinceTime and a filter do it);
    // pods started later give all of theirs.
    const since = first && options.tail === 0 ? startedAt : options.since;
    void readPod(input, pod, queue, { tailLines: first ? options.tail : undefined, since, follow: true })
      .catch((err: unknown) => {
        if (!signal.aborted) input.onWarning(`following the log of pod ${pod.metadata?.name ?? '?'} failed`, err);
      });
  };
  informer.on('add', attach);
  informer.on('update', attach);
  informer.on('error', (err) => {
    if (!signal.aborted) input.onWarning(`watching the pods of function "${input.name}" failed; new pods are not followed`, err);
  });
  const stop = (): void => queue.end();
  signal.addEventListener('abort', stop, { once: true });
  try {
    await informer.start();
    for (const pod of informer.list(input.namespace)) attach(pod);
    yield* queue.drain();
  } finally {
    signal.removeEventListener('abort', stop);
    queue.end();
    await informer.stop();
  }
}

/** A pod whose function container has run, so the API server can give its log. */
function started(pod: V1Pod): boolean {
  const status = pod.status?.containerStatuses?.find((c) => c.name === containerName);
  return Boolean(status?.state?.running || status?.state?.terminated || status?.lastState?.terminated);
}

/** Reads one pod's log into `queue`, line by line; resolves when the log (or the follow) ends. */
async function readPod(
  input: PodLogsInput,
  pod: V1Pod,
  queue: LineQueue,
  opts: { tailLines?: number; since?: Date; follow?: boolean; limitBytes?: number },
): Promise<void> {
  const podName = pod.metadata?.name ?? '';
  const sink = new PassThrough();
  // Log pipes its response into `sink` without an error handler on the source; an aborted
  // request errors that source, so catch it here (the 'pipe' event hands it over) and end.
  sink.on('pipe', (source: Readable) => source.on('error', () => sink.end()));
  const since = opts.since;
  const controller = await new input.k8s.Log(input.kc).log(input.namespace, podName, containerName, sink, {
    follow: opts.follow ?? false,
    timestamps: true,
    ...(opts.tailLines !== undefined && opts.tailLines > 0 ? { tailLines: opts.tailLines } : {}),
    ...(since ? { sinceTime: since.toISOString() } : {}),
    ...(opts.limitBytes ? { limitBytes: opts.limitBytes } : {}),
  });
  const abort = (): void => {
    controller.abort();
    sink.end();
  };
  if (input.signal.aborted) abort();
  input.signal.addEventListener('abort', abort, { once: true });
  try {
    for await (const raw of createInterface({ input: sink, crlfDelay: Number.POSITIVE_INFINITY })) {
      const line = parseLine(input.name, podName, raw);
      if (since && line.timestamp < nanoStamp(since.toISOString())) continue;
      if (!(await queue.push(line))) break;
    }
  } finally {
    input.signal.removeEventListener('abort', abort);
    controller.abort();
  }
}

/** "2024-05-01T10:00:00.123456789Z text" (the kubelet's timestamps=true prefix) as a LogLine. */
export function parseLine(name: string, instance: string, raw: string): LogLine {
  const space = raw.indexOf(' ');
  const stamp = space > 0 ? raw.slice(0, space) : '';
  const time = Date.parse(stamp);
  if (Number.isNaN(time)) return { name, instance, timestamp: new Date().toISOString(), text: raw, stream: 'stdout' };
  return { name, instance, timestamp: nanoStamp(stamp), text: raw.slice(space + 1), stream: 'stdout' };
}

/**
 * RFC 3339 with exactly nine fraction digits, so timestamps sort as strings. The kubelet trims
 * trailing zeros (".5Z" is 500 ms), which would sort ".5Z" after ".123Z" as plain strings.
 */
export function nanoStamp(rfc3339: string): string {
  const m = rfc3339.match(/^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/);
  return m ? `${m[1]}.${(m[2] ?? '').padEnd(9, '0')}Z` : rfc3339;
}

/**
 * Lines from many pods to one reader, at most `max` waiting: a writer over the limit waits for
 * room, which pauses its pod's stream (back-pressure, bounded memory).
 */
class LineQueue {
  readonly #max: number;
  readonly #items: LogLine[] = [];
  #wake: (() => void) | undefined;
  readonly #room: (() => void)[] = [];
  #ended = false;

  constructor(max: number) {
    this.#max = max;
  }

  /** False once the reader is gone: stop writing. */
  async push(line: LogLine): Promise<boolean> {
    while (this.#items.length >= this.#max && !this.#ended) await new Promise<void>((r) => this.#room.push(r));
    if (this.#ended) return false;
    this.#items.push(line);
    this.#wake?.();
    return true;
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
    for (const r of this.#room.splice(0)) r();
  }

  /** Yields until end(); a history queue is ended by draining what was pushed. */
  async *drain(): AsyncIterable<LogLine> {
    for (;;) {
      const line = this.#items.shift();
      if (line) {
        this.#room.shift()?.();
        yield line;
        continue;
      }
      if (this.#ended || this.#max === Number.POSITIVE_INFINITY) return;
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
  }
}
