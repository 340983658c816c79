// The OpenFaaS gateway API's shapes <-> kubefn's FunctionSpec, where the concepts match.

import { KubefnError, type ColdStartPath, type ErrorBody, type FunctionSpec, type FunctionActivation, type FunctionStatus } from '@kubefn/platform';

/** OpenFaaS FunctionDeployment, the body of POST/PUT /system/functions. */
export interface FunctionDeployment {
  service: string;
  image: string;
  namespace?: string;
  envProcess?: string;
  envVars?: Record<string, string>;
  constraints?: string[];
  secrets?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  limits?: Record<string, string>;
  requests?: Record<string, string>;
  readOnlyRootFilesystem?: boolean;
}

/** OpenFaaS FunctionStatus plus kubefn's full `spec`. */
export interface FunctionStatusBody {
  name: string;
  image: string;
  namespace: string;
  envVars: Record<string, string>;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  secrets: string[];
  constraints: string[];
  limits?: Record<string, string>;
  replicas: number;
  availableReplicas: number;
  invocationCount: number;
  createdAt: string;
  spec: FunctionSpec;
  /** kubefn: ready replicas that run the current spec (availableReplicas counts old ones too, during an update). */
  updatedReplicas?: number;
  /** kubefn: the spec's generation, and the one the driver has applied (see FunctionStatus). */
  generation?: number;
  observedGeneration?: number;
  /** kubefn: why replicas are missing, when the driver knows. */
  lastError?: ErrorBody;
  /** kubefn: the current spec's handler cannot load (LOAD_FAILED, with `location`). */
  loadError?: ErrorBody;
  /** kubefn: what of the spec the driver does not enforce where it runs (a CPU limit without a cpu cgroup). */
  warnings?: string[];
  /** kubefn: how a replica starts from zero: from the warm pool, or as a new process and why. */
  coldStart?: ColdStartPath;
  /** Set while the autoscaler holds the function's activation as stalled (FunctionStatus.activation). */
  activation?: FunctionActivation;
}

export const namespace = 'default';

/**
 * The names a caller may give kubefn's one function namespace: its own, and OpenFaaS's default
 * function namespace, which faas-cli sends unless told otherwise (`-n`).
 */
export const servedNamespaces: ReadonlySet<string> = new Set([namespace, 'openfaas-fn']);

/** NOT_FOUND unless `ns` is absent or one of servedNamespaces. */
export function checkNamespace(ns: string | undefined): void {
  if (ns && !servedNamespaces.has(ns)) {
    throw new KubefnError('NOT_FOUND', `namespace "${ns}" is not served here`, { hint: `use "${namespace}" (or "openfaas-fn") or omit it` });
  }
}

/**
 * Accepts either a kubefn spec (has `name`) or an OpenFaaS FunctionDeployment (has `service`).
 * Returns the unvalidated spec input; the caller validates it.
 */
export function specInputFromBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new KubefnError('BAD_REQUEST', 'body must be a JSON object: a kubefn function spec or an OpenFaaS FunctionDeployment');
  }
  const b = body as Record<string, unknown>;
  if (!('service' in b)) return b;
  const d = b as unknown as FunctionDeployment;
  checkNamespace(d.namespace);
  const spec: Record<string, unknown> = { name: d.service, image: d.image };
  if (d.envVars) spec.env = d.envVars;
  if (d.secrets?.length) spec.secrets = d.secrets;
  const labels = { ...(d.labels ?? {}) };
  const scale: Record<string, unknown> = {};
  // OpenFaaS autoscaling labels map onto kubefn's scale settings.
  const num = (k: string) => (labels[k] !== undefined ? Number(labels[k]) : undefined);
  if (num('com.openfaas.scale.min') !== undefined) scale.min = num('com.openfaas.scale.min');
  if (num('com.openfaas.scale.max') !== undefined) scale.max = num('com.openfaas.scale.max');
  if (num('com.openfaas.scale.target') !== undefined) scale.target = num('com.openfaas.scale.target');
  if (labels['com.openfaas.scale.zero'] === 'false' && scale.min === undefined) scale.min = 1;
  if (Object.keys(scale).length) spec.scale = scale;
  if (Object.keys(labels).length) spec.labels = labels;
  if (d.annotations) spec.annotations = d.annotations;
  const limits = d.limits ?? {};
  const resources: Record<string, unknown> = {};
  if (limits.cpu) resources.cpu = limits.cpu;
  if (limits.memory) resources.memory = limits.memory;
  if (limits['nvidia.com/gpu']) resources.gpu = Number(limits['nvidia.com/gpu']);
  if (Object.keys(resources).length) spec.resources = resources;
  if (d.constraints?.length) {
    const nodeSelector: Record<string, string> = {};
    for (const c of d.constraints) {
      const m = /^\s*([^=!\s]+)\s*==?\s*(\S+)\s*$/.exec(c);
      if (!m) throw new KubefnError('INVALID_SPEC', `constraint "${c}" is not of the form key=value`, { fields: [{ field: 'constraints', message: 'must be key=value' }] });
      nodeSelector[m[1]!] = m[2]!;
    }
    spec.placement = { nodeSelector };
  }
  return spec;
}

export function statusBody(s: FunctionStatus, invocationCount: number): FunctionStatusBody {
  const spec = s.spec;
  const limits: Record<string, string> = {};
  if (spec.resources?.cpu) limits.cpu = spec.resources.cpu;
  if (spec.resources?.memory) limits.memory = spec.resources.memory;
  if (spec.resources?.gpu) limits['nvidia.com/gpu'] = String(spec.resources.gpu);
  const body: FunctionStatusBody = {
    name: spec.name,
    image: spec.image ?? '',
    namespace,
    envVars: spec.env ?? {},
    labels: { ...(spec.labels ?? {}), faas_function: spec.name },
    annotations: spec.annotations ?? {},
    secrets: spec.secrets ?? [],
    constraints: Object.entries(spec.placement?.nodeSelector ?? {}).map(([k, v]) => `${k}==${v}`),
    replicas: s.replicas,
    availableReplicas: s.readyReplicas,
    invocationCount,
    createdAt: s.createdAt,
    spec,
  };
  if (Object.keys(limits).length) body.limits = limits;
  // Added fields only, so OpenFaaS clients that ignore unknown ones are unaffected.
  if (s.updatedReplicas !== undefined) body.updatedReplicas = s.updatedReplicas;
  if (s.generation !== undefined) body.generation = s.generation;
  if (s.observedGeneration !== undefined) body.observedGeneration = s.observedGeneration;
  if (s.lastError) body.lastError = s.lastError;
  if (s.loadError) body.loadError = s.loadError;
  if (s.warnings?.length) body.warnings = s.warnings;
  if (s.coldStart) body.coldStart = s.coldStart;
  if (s.activation) body.activation = s.activation;
  return body;
}
