// What the node agent gives a pod's container from the API: its environment (the `kubernetes`
// Service's variables, values, secret and config map keys, downward API fields) and its volumes.
//
// Volumes: configMap, secret, downwardAPI (metadata.name, namespace, uid, labels, annotations and
// single labels['k']/annotations['k']), emptyDir, and projected with serviceAccountToken (a
// TokenRequest bound to the pod, with the source's audience and expirationSeconds), configMap,
// secret and downwardAPI sources; items, optional, defaultMode and item modes are honoured. Each is
// written to the pod's directory under the agent's temp directory (files 0644 unless a mode says
// otherwise, directories 0755, emptyDir 0777 so a container running as nobody can use it) and
// bind-mounted with `--volume`; volumeMounts honour readOnly and subPath (configMap, secret,
// downwardAPI and projected volumes are always read-only, as the kubelet mounts them). Contents are
// written when the container starts (again on every restart, emptyDir kept) and not refreshed while
// it runs: no token rotation (tokens live an hour at least, test pods minutes) and no config map or
// secret updates. A missing non-optional config map, secret or key fails the start (the pod worker
// reports CreateContainerConfigError and retries with back-off). A persistentVolumeClaim is
// mounted read-write from the host directory of the hostPath PersistentVolume bound to it (the
// only kind of PersistentVolume this node mounts; an unbound claim fails the start, retried).
// Other volume types (hostPath, ...), subPathExpr, resourceFieldRef and
// clusterTrustBundle/podCertificate sources make the node refuse the pod (unsupportedVolume).

import { Buffer } from 'node:buffer';
import { chmod, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { CoreV1Api, V1DownwardAPIVolumeFile, V1KeyToPath, V1Pod, V1PodSpec, V1Volume } from '@kubernetes/client-node';
import { hostIP, message, statusCode } from './node-agent-common.js';

/** The pod a container is being started for, and where it runs. */
export interface PodContext {
  readonly pod: V1Pod;
  readonly core: CoreV1Api;
  readonly nodeName: string;
  /** The pod's address on the node's network. */
  readonly ip: string | undefined;
  /** Where containers reach the apiserver: KUBERNETES_SERVICE_HOST and _PORT. */
  readonly apiserver: { host: string; port: number };
  /** The pod's directory on the host; its volumes go under <podDir>/volumes. */
  readonly podDir: string;
}

/**
 * The container's environment: the `kubernetes` Service's variables first (as the kubelet sets
 * them whatever enableServiceLinks says), then the container's env: values, secret and config
 * map keys, pod fields, $(VAR) expanded.
 */
export async function containerEnv(ctx: PodContext): Promise<Record<string, string>> {
  const namespace = ctx.pod.metadata!.namespace!;
  const core = ctx.core;
  const { host, port } = ctx.apiserver;
  const link = `tcp://${host}:${port}`;
  const env: Record<string, string> = {
    KUBERNETES_SERVICE_HOST: host,
    KUBERNETES_SERVICE_PORT: String(port),
    KUBERNETES_SERVICE_PORT_HTTPS: String(port),
    KUBERNETES_PORT: link,
    [`KUBERNETES_PORT_${port}_TCP`]: link,
    [`KUBERNETES_PORT_${port}_TCP_PROTO`]: 'tcp',
    [`KUBERNETES_PORT_${port}_TCP_PORT`]: String(port),
    [`KUBERNETES_PORT_${port}_TCP_ADDR`]: host,
  };
  for (const e of ctx.pod.spec!.containers[0]!.env ?? []) {
    const from = e.valueFrom;
    if (!from) {
      env[e.name] = (e.value ?? '').replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name?: string) => (name === undefined ? '$' : env[name] ?? m));
    } else if (from.secretKeyRef || from.configMapKeyRef) {
      const ref = (from.secretKeyRef ?? from.configMapKeyRef)!;
      const kind = from.secretKeyRef ? 'secret' : 'config map';
      const value = await (from.secretKeyRef
        ? core.readNamespacedSecret({ name: ref.name!, namespace }).then((s) => (s.data?.[ref.key] === undefined ? undefined : Buffer.from(s.data[ref.key]!, 'base64').toString()))
        : core.readNamespacedConfigMap({ name: ref.name!, namespace }).then((m) => m.data?.[ref.key])
      ).catch((err: unknown) => {
        if (statusCode(err) === 404) return undefined;
        throw err;
      });
      if (value !== undefined) env[e.name] = value;
      else if (!ref.optional) throw new Error(`env ${e.name}: key "${ref.key}" of ${kind} "${ref.name}" not found`);
    } else if (from.fieldRef) {
      const value = podField(ctx, from.fieldRef.fieldPath);
      if (value === undefined) throw new Error(`env ${e.name}: fieldRef ${from.fieldRef.fieldPath} is not supported by this node`);
      env[e.name] = value;
    } else {
      throw new Error(`env ${e.name}: only value, secretKeyRef, configMapKeyRef and fieldRef are supported by this node`);
    }
  }
  return env;
}

/** A pod field for the downward API (env fieldRef, downwardAPI volume items); undefined when not supported. */
export function podField(ctx: PodContext, fieldPath: string): string | undefined {
  const meta = ctx.pod.metadata!;
  const fields: Record<string, string | undefined> = {
    'metadata.name': meta.name, 'metadata.namespace': meta.namespace, 'metadata.uid': meta.uid,
    'metadata.labels': formatMap(meta.labels), 'metadata.annotations': formatMap(meta.annotations),
    'spec.nodeName': ctx.nodeName, 'spec.serviceAccountName': ctx.pod.spec!.serviceAccountName,
    'status.podIP': ctx.ip, 'status.podIPs': ctx.ip, 'status.hostIP': hostIP, 'status.hostIPs': hostIP,
  };
  if (fieldPath in fields) return fields[fieldPath] ?? '';
  const one = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (one) return (one[1] === 'labels' ? meta.labels : meta.annotations)?.[one[2]!] ?? '';
  return undefined;
}

/**
 * Writes the pod's volumes under its host directory and returns the container's `--volume`
 * values, one per volumeMount. API-data volumes are rewritten on every start; emptyDir is kept.
 */
export async function containerVolumes(ctx: PodContext): Promise<string[]> {
  const root = path.join(ctx.podDir, 'volumes');
  const written = new Map<string, { dir: string; writable: boolean }>();
  for (const v of ctx.pod.spec!.volumes ?? []) {
    if (v.persistentVolumeClaim) {
      written.set(v.name, { dir: await claimedHostPath(ctx, v.name, v.persistentVolumeClaim.claimName), writable: true });
      continue;
    }
    const dir = path.join(root, v.name);
    if (v.emptyDir) {
      await mkdir(dir, { recursive: true });
      await chmod(dir, 0o777);
    } else {
      await writeVolume(dir, await volumeFiles(ctx, v).catch((err: unknown) => {
        throw new Error(`volume "${v.name}": ${message(err)}`);
      }));
    }
    written.set(v.name, { dir, writable: !!v.emptyDir });
  }
  const mounts: string[] = [];
  for (const m of ctx.pod.spec!.containers[0]!.volumeMounts ?? []) {
    const v = written.get(m.name);
    if (!v) throw new Error(`volumeMount ${m.mountPath}: the pod has no volume "${m.name}"`);
    let source = v.dir;
    if (m.subPath) {
      source = path.join(v.dir, safeRelative(m.subPath, `volumeMount ${m.mountPath}: subPath`));
      if (!(await stat(source).catch(() => undefined))) {
        await mkdir(source, { recursive: true });
        await chmod(source, v.writable ? 0o777 : 0o755);
      }
    }
    mounts.push(`${source}:${m.mountPath}${m.readOnly || !v.writable ? ':ro' : ''}`);
  }
  return mounts;
}

/** The host directory of the hostPath PersistentVolume bound to claim `claimName`. */
async function claimedHostPath(ctx: PodContext, volume: string, claimName: string): Promise<string> {
  const namespace = ctx.pod.metadata!.namespace!;
  const claim = await ctx.core.readNamespacedPersistentVolumeClaim({ name: claimName, namespace }).catch((err: unknown) => {
    throw new Error(`volume "${volume}": claim ${namespace}/${claimName}: ${message(err)}`);
  });
  const pvName = claim.spec?.volumeName;
  if (!pvName || claim.status?.phase !== 'Bound') throw new Error(`volume "${volume}": claim ${namespace}/${claimName} is not bound yet`);
  const pv = await ctx.core.readPersistentVolume({ name: pvName });
  const dir = pv.spec?.hostPath?.path;
  if (!dir) throw new Error(`volume "${volume}": PersistentVolume ${pvName} is not a hostPath volume, the only kind this node mounts`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** The files of a configMap, secret, downwardAPI or projected volume. */
async function volumeFiles(ctx: PodContext, v: V1Volume): Promise<VolumeFile[]> {
  const mode = (m: number | undefined): number => (m ?? 0o644) & 0o777;
  if (v.configMap) return configMapFiles(ctx, v.configMap.name!, v.configMap, mode(v.configMap.defaultMode));
  if (v.secret) return secretFiles(ctx, v.secret.secretName!, v.secret, mode(v.secret.defaultMode));
  if (v.downwardAPI) return downwardFiles(ctx, v.downwardAPI.items ?? [], mode(v.downwardAPI.defaultMode));
  const projected = v.projected!;
  const files: VolumeFile[] = [];
  for (const s of projected.sources ?? []) {
    const m = mode(projected.defaultMode);
    if (s.serviceAccountToken) files.push({ path: s.serviceAccountToken.path, content: await token(ctx, s.serviceAccountToken), mode: m });
    else if (s.configMap) files.push(...(await configMapFiles(ctx, s.configMap.name!, s.configMap, m)));
    else if (s.secret) files.push(...(await secretFiles(ctx, s.secret.name!, s.secret, m)));
    else if (s.downwardAPI) files.push(...downwardFiles(ctx, s.downwardAPI.items ?? [], m));
  }
  return files;
}

async function configMapFiles(ctx: PodContext, name: string, source: KeyedSource, mode: number): Promise<VolumeFile[]> {
  const map = await ctx.core.readNamespacedConfigMap({ name, namespace: ctx.pod.metadata!.namespace! }).catch(notFound);
  const data = map && {
    ...Object.fromEntries(Object.entries(map.data ?? {}).map(([k, v]) => [k, Buffer.from(v)])),
    ...Object.fromEntries(Object.entries(map.binaryData ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
  };
  return keyedFiles(`configmap "${name}"`, data, source, mode);
}

async function secretFiles(ctx: PodContext, name: string, source: KeyedSource, mode: number): Promise<VolumeFile[]> {
  const secret = await ctx.core.readNamespacedSecret({ name, namespace: ctx.pod.metadata!.namespace! }).catch(notFound);
  const data = secret && Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
  return keyedFiles(`secret "${name}"`, data, source, mode);
}

function downwardFiles(ctx: PodContext, items: V1DownwardAPIVolumeFile[], mode: number): VolumeFile[] {
  return items.map((item) => {
    const value = item.fieldRef ? podField(ctx, item.fieldRef.fieldPath) : undefined;
    if (value === undefined) throw new Error(`downward API item ${item.path}: only metadata fieldRefs are supported by this node`);
    return { path: item.path, content: Buffer.from(value), mode: item.mode === undefined ? mode : item.mode & 0o777 };
  });
}

/** A token of the pod's ServiceAccount bound to the pod (TokenRequest), as the kubelet gets one. */
async function token(ctx: PodContext, source: { audience?: string; expirationSeconds?: number }): Promise<Buffer> {
  const { name, namespace, uid } = ctx.pod.metadata as { name: string; namespace: string; uid: string };
  const request = await ctx.core.createNamespacedServiceAccountToken({
    name: ctx.pod.spec!.serviceAccountName ?? 'default',
    namespace,
    body: {
      spec: {
        audiences: source.audience ? [source.audience] : [],
        expirationSeconds: source.expirationSeconds ?? 3600,
        boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name, uid },
      },
    },
  });
  return Buffer.from(request.status!.token);
}

interface VolumeFile {
  /** Relative to the volume's directory. */
  path: string;
  content: Buffer;
  mode: number;
}

interface KeyedSource {
  items?: V1KeyToPath[];
  optional?: boolean;
}

/** Why the node refuses the pod's volumes, if it does. */
export function unsupportedVolume(spec: V1PodSpec): string | undefined {
  const metadataOnly = (items: V1DownwardAPIVolumeFile[] | undefined): boolean => (items ?? []).every((i) => i.fieldRef && !i.resourceFieldRef);
  for (const v of spec.volumes ?? []) {
    if (v.projected) {
      for (const s of v.projected.sources ?? []) {
        if (!s.serviceAccountToken && !s.configMap && !s.secret && !s.downwardAPI) {
          return `volume "${v.name}": of projected sources this node supports serviceAccountToken, configMap, secret and downwardAPI only`;
        }
        if (s.downwardAPI && !metadataOnly(s.downwardAPI.items)) return `volume "${v.name}": this node supports downward API fieldRefs only`;
      }
    } else if (v.downwardAPI) {
      if (!metadataOnly(v.downwardAPI.items)) return `volume "${v.name}": this node supports downward API fieldRefs only`;
    } else if (!v.configMap && !v.secret && !v.emptyDir && !v.persistentVolumeClaim) {
      return `volume "${v.name}": this node supports configMap, secret, downwardAPI, projected, emptyDir and persistentVolumeClaim (of hostPath volumes) volumes only`;
    }
  }
  const subPathExpr = spec.containers[0]?.volumeMounts?.find((m) => m.subPathExpr);
  return subPathExpr ? `volumeMount ${subPathExpr.mountPath}: subPathExpr is not supported by this node` : undefined;
}

/** Every key of a config map's or secret's data, or the listed items; `data` undefined when it does not exist. */
function keyedFiles(what: string, data: Record<string, Buffer> | undefined, source: KeyedSource, mode: number): VolumeFile[] {
  if (!data) {
    if (source.optional) return [];
    throw new Error(`${what} not found`);
  }
  if (!source.items?.length) return Object.entries(data).map(([key, content]) => ({ path: key, content, mode }));
  return source.items.flatMap((item) => {
    const content = data[item.key];
    if (content !== undefined) return [{ path: item.path, content, mode: item.mode === undefined ? mode : item.mode & 0o777 }];
    if (source.optional) return [];
    throw new Error(`${what} has no key "${item.key}"`);
  });
}

/** A relative path that stays inside its directory. */
function safeRelative(p: string, what: string): string {
  const normal = path.posix.normalize(p);
  if (path.posix.isAbsolute(p) || normal === '..' || normal.startsWith('../')) throw new Error(`${what} ${p} must be a relative path inside the volume`);
  return normal;
}

/** Writes the files into a fresh directory (directories 0755) and puts it in place of `dir`. */
async function writeVolume(dir: string, files: VolumeFile[]): Promise<void> {
  const next = `${dir}.new`;
  await rm(next, { recursive: true, force: true });
  await mkdir(next, { recursive: true });
  await chmod(next, 0o755);
  for (const f of files) {
    const target = path.join(next, safeRelative(f.path, 'volume file'));
    for (let d = path.dirname(target); d !== next && !(await stat(d).catch(() => undefined)); d = path.dirname(d)) {
      await mkdir(d, { recursive: true });
    }
    await writeFile(target, f.content);
    await chmod(target, f.mode);
  }
  // mkdir's mode is masked by the umask: open up every directory made above.
  for (const f of files) {
    for (let d = path.dirname(path.join(next, f.path)); d.startsWith(next) && d !== next; d = path.dirname(d)) await chmod(d, 0o755);
  }
  await rm(dir, { recursive: true, force: true });
  await rename(next, dir);
}

/** Labels or annotations as the kubelet writes them to a downward API file: sorted key="value" lines. */
function formatMap(map: Record<string, string> | undefined): string {
  return Object.keys(map ?? {})
    .sort()
    .map((k) => `${k}=${JSON.stringify(map![k])}`)
    .join('\n');
}

const notFound = (err: unknown): undefined => {
  if (statusCode(err) === 404) return undefined;
  throw err;
};
