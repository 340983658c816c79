// What a Function becomes on Kubernetes: pure builders for its Deployment and Service, as
// server-side apply configurations (only the fields kubefn owns).

import { createHash } from 'node:crypto';
import type { V1Container, V1Deployment, V1EnvVar, V1PodTemplateSpec, V1Service, V1Toleration, V1Volume } from '@kubernetes/client-node';
import { canonicalJson, contractEnv } from '../process-launch.js';
import { adminPaths, runtimeEnv } from '../runtime-contract.js';
import { secretsMountPath } from '../secrets.js';
import { timeoutMs, type FunctionSpec } from '../spec.js';

/** Ports inside every function container. */
export const containerPorts = { http: 8080, admin: 8081 } as const;
/** The Service port the gateway (or anyone in the cluster) calls. */
export const servicePort = 80;
/** The name of the function's container in its pods (logs read it). */
export const containerName = 'function';
/** The pod volume holding the function's secrets, mounted at secretsMountPath. */
const secretsVolume = 'openfaas-secrets';
const tmpVolume = 'tmp';
/** The user a function runs as in its pod: nobody, whatever its image says (Pod Security `restricted`). */
export const functionUser = 65534;

export const kubefnLabels = {
  name: 'app.kubernetes.io/name',
  managedBy: 'app.kubernetes.io/managed-by',
  function: 'kubefn.dev/function',
} as const;
export const managedBy = 'kubefn';

export const kubefnAnnotations = {
  /** On the Deployment: the Function generation it was last applied from (a rollout waits for it). */
  functionGeneration: 'kubefn.dev/function-generation',
  /** On the pod template: a hash of the rest of the template, so the pods of the current spec can be told apart. */
  specRevision: 'kubefn.dev/spec-revision',
} as const;
/** The label the EndpointSlice controller puts on every slice of a Service. */
export const serviceNameLabel = 'kubernetes.io/service-name';

/** The owning Function, for ownerReferences. */
export interface Owner {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

export interface DeploymentOptions {
  /**
   * spec.replicas of the applied object. Give it only when the Deployment is created: after that
   * replicas belong to the autoscaler (the scale subresource), and an applied value would fight
   * it. See driver.ts for how ownership of the field is handed over.
   */
  replicas?: number;
  /** The Function's metadata.generation the Deployment is applied from. */
  generation?: number;
  /** Pull Secrets every function's pods get (the platform-wide one), before the spec's own. */
  imagePullSecrets?: readonly string[];
}

/** Replicas a new Deployment starts with: max(min, initial), as every driver does on create. */
export function initialReplicas(spec: FunctionSpec): number {
  return Math.max(spec.scale.min, spec.scale.initial);
}

/** Labels on everything kubefn creates for a function; the selector uses only `kubefn.dev/function`. */
export function functionLabels(name: string): Record<string, string> {
  return { [kubefnLabels.name]: name, [kubefnLabels.managedBy]: managedBy, [kubefnLabels.function]: name };
}

/**
 * How long a function pod keeps serving after it is asked to stop, before SIGTERM: the time for
 * its removal from the EndpointSlice to reach the gateways' informers.
 */
export const preStopSleepSeconds = 3;

/** The Deployment that runs the function's replicas, owned by its Function. */
function pullSecretsFor(spec: FunctionSpec, platform: readonly string[] = []): { imagePullSecrets?: { name: string }[] } {
  const names = [...new Set([...platform, ...(spec.imagePullSecrets ?? [])])];
  return names.length ? { imagePullSecrets: names.map((name) => ({ name })) } : {};
}

export function deploymentFor(spec: FunctionSpec, namespace: string, owner: Owner, options: DeploymentOptions = {}): V1Deployment {
  const labels = functionLabels(spec.name);
  // The runtime drains for timeout + 5 s after SIGTERM (KUBEFN_DRAIN_MS default); the kubelet's
  // grace period gives it 5 s more before SIGKILL. 30s timeout -> 40 s grace.
  const graceSeconds = Math.ceil(timeoutMs(spec) / 1000) + 10 + preStopSleepSeconds;
  const resources = resourcesFor(spec);
  const deployment: V1Deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: spec.name,
      namespace,
      labels,
      ...(options.generation === undefined ? {} : { annotations: { [kubefnAnnotations.functionGeneration]: String(options.generation) } }),
      ownerReferences: [{ ...owner, controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      ...(options.replicas === undefined ? {} : { replicas: options.replicas }),
      selector: { matchLabels: { [kubefnLabels.function]: spec.name } },
      revisionHistoryLimit: 3,
      // Never fewer ready replicas than asked for during a rollout: a function at 1 replica keeps serving.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: '25%' } },
      template: {
        metadata: {
          labels: { ...(spec.labels ?? {}), ...labels },
          ...(spec.annotations ? { annotations: { ...spec.annotations } } : {}),
        },
        spec: {
          enableServiceLinks: false,
          // No service-account token in a function's pods, unless it names a ServiceAccount of
          // its own to act as (spec.serviceAccount).
          ...(spec.serviceAccount ? { serviceAccountName: spec.serviceAccount, automountServiceAccountToken: true } : { automountServiceAccountToken: false }),
          ...pullSecretsFor(spec, options.imagePullSecrets),
          terminationGracePeriodSeconds: graceSeconds,
          ...(spec.placement?.nodeSelector ? { nodeSelector: { ...spec.placement.nodeSelector } } : {}),
          ...(spec.placement?.tolerations?.length
            ? { tolerations: spec.placement.tolerations.map((t) => ({ ...t }) as V1Toleration) }
            : {}),
          // Not root, whatever the image says; /tmp is the one writable place (an emptyDir).
          securityContext: {
            runAsNonRoot: true,
            runAsUser: functionUser,
            runAsGroup: functionUser,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          volumes: [{ name: tmpVolume, emptyDir: { sizeLimit: '256Mi' } }, ...(spec.secrets?.length ? [secretsVolumeFor(spec.secrets)] : [])],
          containers: [
            {
              name: containerName,
              image: spec.image ?? '',
              // The runtime writes a handler's load failure to /dev/termination-log; from an older
              // runtime the log's tail stands in, so the reason reaches the pod's status either way.
              terminationMessagePolicy: 'FallbackToLogsOnError',
              ports: [
                { name: 'http', containerPort: containerPorts.http, protocol: 'TCP' },
                { name: 'admin', containerPort: containerPorts.admin, protocol: 'TCP' },
              ],
              env: envFor(spec),
              volumeMounts: [
                { name: tmpVolume, mountPath: '/tmp' },
                ...(spec.secrets?.length ? [{ name: secretsVolume, mountPath: secretsMountPath, readOnly: true }] : []),
              ],
              ...(resources ? { resources } : {}),
              ...probesFor(),
              // Endpoint removal takes a moment to reach every gateway: the pod keeps serving
              // through it, and only then gets SIGTERM and drains (the kubelet sleeps; no binary).
              lifecycle: { preStop: { sleep: { seconds: preStopSleepSeconds } } },
              securityContext: {
                allowPrivilegeEscalation: false,
                capabilities: { drop: ['ALL'] },
                seccompProfile: { type: 'RuntimeDefault' },
              },
            },
          ],
        },
      },
    },
  };
  const template = deployment.spec!.template;
  template.metadata!.annotations = { ...(template.metadata!.annotations ?? {}), [kubefnAnnotations.specRevision]: specRevision(template) };
  return deployment;
}

/**
 * Readiness and liveness are separate questions on separate paths. Readiness (/readyz, every
 * second, out at the first failure) decides whether the Service sends calls: it fails while
 * init() runs, while the replica drains, and when its event loop is too busy to answer within a
 * second. Liveness (/healthz) decides whether the kubelet kills and restarts the container: it
 * fails only when the event loop has not turned for a while (a handler that spins). Every 2 s,
 * 2 s each, 3 in a row: a wedged replica is restarted 6 to 8 s after it stopped answering
 * (the process and podman drivers take 3 to 4 s; a kubelet's probes and a CPU-limited,
 * throttled container need the wider margin against killing a replica that is merely slow).
 * The restart is a container restart, under the kubelet's crash backoff. The startup probe holds
 * liveness off until the runtime's admin port first answers (it listens before the handler's
 * init() runs), so a slow import of a large handler is not taken for a wedged one.
 */
export function probesFor(): Pick<V1Container, 'readinessProbe' | 'livenessProbe' | 'startupProbe'> {
  const admin = containerPorts.admin;
  return {
    readinessProbe: { httpGet: { path: adminPaths.ready, port: admin }, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 1 },
    livenessProbe: { httpGet: { path: adminPaths.health, port: admin }, periodSeconds: 2, timeoutSeconds: 2, failureThreshold: 3 },
    // Up to 60 s for the runtime to load and listen; past that the container is restarted.
    startupProbe: { httpGet: { path: adminPaths.health, port: admin }, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 60 },
  };
}

/** A short hash of a pod template (without its revision annotation): changes exactly when the template does. */
export function specRevision(template: V1PodTemplateSpec): string {
  const annotations = { ...(template.metadata?.annotations ?? {}) };
  delete annotations[kubefnAnnotations.specRevision];
  const bare = { ...template, metadata: { ...template.metadata, annotations } };
  return createHash('sha256').update(canonicalJson(bare)).digest('hex').slice(0, 16);
}

/** The ClusterIP Service in front of the replicas: port 80 -> the container's 8080. */
export function serviceFor(spec: FunctionSpec, namespace: string, owner: Owner): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: spec.name,
      namespace,
      labels: functionLabels(spec.name),
      ownerReferences: [{ ...owner, controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      type: 'ClusterIP',
      selector: { [kubefnLabels.function]: spec.name },
      ports: [{ name: 'http', port: servicePort, targetPort: containerPorts.http, protocol: 'TCP' }],
    },
  };
}

/**
 * The spec's env and the runtime contract, then the ports and address kubefn fixes in a pod.
 * KUBEFN_INSTANCE and POD_NAME come from the downward API (the pod's name); POD_NAME is left out
 * when the spec sets it, since apply refuses two entries with one name. A `$(` in a user's value
 * is escaped as `$$(` so the kubelet passes it through unexpanded.
 */
function envFor(spec: FunctionSpec): V1EnvVar[] {
  const podName = { fieldRef: { fieldPath: 'metadata.name' } };
  const user = spec.env ?? {};
  const env: V1EnvVar[] = Object.hasOwn(user, 'POD_NAME') ? [] : [{ name: 'POD_NAME', valueFrom: podName }];
  for (const [name, value] of Object.entries(contractEnv(spec, ''))) {
    if (name === runtimeEnv.instance) env.push({ name, valueFrom: podName });
    else env.push({ name, value: Object.hasOwn(user, name) ? value.replaceAll('$(', '$$$$(') : value });
  }
  for (const [name, secret] of Object.entries(spec.secretEnv ?? {})) {
    env.push({ name, valueFrom: { secretKeyRef: { name: secret, key: secret } } });
  }
  env.push(
    { name: runtimeEnv.port, value: String(containerPorts.http) },
    { name: runtimeEnv.adminPort, value: String(containerPorts.admin) },
    { name: runtimeEnv.host, value: '0.0.0.0' },
  );
  return env;
}

/** The volume of a function's secrets: each Secret's one key as a file named like it, read-only. */
function secretsVolumeFor(secrets: readonly string[]): V1Volume {
  return {
    name: secretsVolume,
    projected: {
      defaultMode: 0o444,
      sources: secrets.map((name) => ({ secret: { name, items: [{ key: name, path: name }] } })),
    },
  };
}

/**
 * Requests equal limits: a function replica gets what it may use (Guaranteed QoS when both cpu and
 * memory are set), and GPUs must be requested and limited alike.
 */
function resourcesFor(spec: FunctionSpec): { limits: Record<string, string>; requests: Record<string, string> } | undefined {
  const r = spec.resources;
  const limits: Record<string, string> = {};
  if (r?.cpu) limits.cpu = r.cpu;
  if (r?.memory) limits.memory = r.memory;
  if (r?.gpu) limits['nvidia.com/gpu'] = String(r.gpu);
  if (Object.keys(limits).length === 0) return undefined;
  return { limits, requests: { ...limits } };
}

/** The digest of an image reference pinned by digest ("reg/x@sha256:..."), else undefined. */
export function imageDigest(image: string | undefined): string | undefined {
  const match = image?.match(/@(sha256:[0-9a-f]{64})$/);
  return match?.[1];
}
