// The FunctionSpec: one schema (fn.yaml, the management API, later the CRD), validated once at the boundary.

import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import { durationPattern, parseDuration } from './duration.js';
import { KubefnError, type FieldError } from './errors.js';
import { namePattern } from './names.js';
import { TriggerSchema, triggerErrors } from './triggers.js';

/** DNS-1123 label: what Kubernetes accepts as a Service name. */
const envKeyPattern = '^[A-Za-z_][A-Za-z0-9_]*$';
const quantityPattern = '^[0-9]+(\\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$';

const Duration = (def: string, description: string) =>
  Type.String({ pattern: durationPattern, default: def, description });
const OptionalDuration = (description: string) => Type.String({ pattern: durationPattern, description });
const Quantity = (description: string) => Type.String({ pattern: quantityPattern, description });
const strict = { additionalProperties: false } as const;

/**
 * Autoscaling knobs left out mean "the cluster default" (the autoscaler's config file, else
 * Knative's defaults), so they have no schema default; min, max, initial and
 * containerConcurrency are read by drivers and the gateway and keep theirs.
 */
export const ScaleSchema = Type.Object(
  {
    min: Type.Integer({ minimum: 0, maximum: 1000, default: 0, description: 'replicas kept when idle; 0 allows scale to zero' }),
    max: Type.Integer({ minimum: 1, maximum: 1000, default: 10, description: 'upper bound on replicas' }),
    initial: Type.Integer({ minimum: 0, maximum: 1000, default: 1, description: 'replicas started on deploy (never below min)' }),
    metric: Type.Optional(Type.Union([Type.Literal('concurrency'), Type.Literal('rps')], { description: 'what to scale on: in-flight requests or requests/s' })),
    target: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100_000, description: 'in-flight requests (or req/s) per replica to aim for' })),
    targetUtilizationPercent: Type.Optional(Type.Number({ minimum: 1, maximum: 100, description: 'share of target to aim for, leaving headroom' })),
    containerConcurrency: Type.Integer({ minimum: 0, maximum: 10_000, default: 0, description: 'hard cap on in-flight requests per replica; 0 = no cap' }),
    pendingTarget: Type.Optional(Type.Number({ minimum: 1, maximum: 100_000, description: 'messages waiting in event triggers per replica to aim for' })),
    stableWindow: Type.Optional(OptionalDuration('averaging window for scaling decisions')),
    panicWindowPercent: Type.Optional(Type.Number({ minimum: 1, maximum: 100, description: 'panic window as a share of the stable window' })),
    panicThresholdPercent: Type.Optional(Type.Number({ minimum: 110, maximum: 1000, description: 'panic when the panic window wants this share of the ready replicas' })),
    maxScaleUpRate: Type.Optional(Type.Number({ exclusiveMinimum: 1, description: 'one decision grows to at most ready replicas x this' })),
    maxScaleDownRate: Type.Optional(Type.Number({ exclusiveMinimum: 1, description: 'one decision shrinks to no fewer than ready replicas / this' })),
    scaleDownDelay: Type.Optional(OptionalDuration('hold the highest recent decision this long before scaling down')),
    scaleToZeroGrace: Type.Optional(OptionalDuration('idle time after the stable window before the last replica goes')),
  },
  { ...strict, default: {} },
);

export const TolerationSchema = Type.Object(
  {
    key: Type.Optional(Type.String({ maxLength: 316 })),
    operator: Type.Optional(Type.Union([Type.Literal('Equal'), Type.Literal('Exists')])),
    value: Type.Optional(Type.String({ maxLength: 63 })),
    effect: Type.Optional(
      Type.Union([Type.Literal('NoSchedule'), Type.Literal('PreferNoSchedule'), Type.Literal('NoExecute')]),
    ),
    tolerationSeconds: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  strict,
);

export const FunctionSpecSchema = Type.Object(
  {
    name: Type.String({ pattern: namePattern, minLength: 1, maxLength: 63, description: 'DNS-1123 label' }),
    handler: Type.String({ minLength: 1, maxLength: 1024, default: 'handler.js', description: 'handler module, relative to fn.yaml' }),
    image: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, description: 'what replicas run; set by `fn deploy`' })),
    assets: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), {
        maxItems: 256,
        description: 'files or directories, relative to fn.yaml, shipped in the image next to the bundle (/app/<path>)',
      }),
    ),
    env: Type.Optional(Type.Record(Type.String({ pattern: envKeyPattern }), Type.String({ maxLength: 32_768 }))),
    secrets: Type.Optional(
      Type.Array(Type.String({ pattern: namePattern, maxLength: 63 }), {
        maxItems: 64,
        description: 'secrets (`fn secret create`) the function reads as files: /var/openfaas/secrets/<name>',
      }),
    ),
    secretEnv: Type.Optional(
      Type.Record(Type.String({ pattern: envKeyPattern }), Type.String({ pattern: namePattern, maxLength: 63 }), {
        description: 'environment variables set to a secret\'s value, e.g. DB_PASSWORD: db-password; each secret must be in `secrets`',
      }),
    ),
    imagePullSecrets: Type.Optional(
      Type.Array(Type.String({ pattern: namePattern, maxLength: 63 }), {
        maxItems: 16,
        description: 'Kubernetes: Secrets (kubernetes.io/dockerconfigjson) the kubelet pulls the image with, beside the platform-wide one',
      }),
    ),
    serviceAccount: Type.Optional(
      Type.String({
        pattern: namePattern,
        maxLength: 63,
        description: "Kubernetes: the ServiceAccount the function's pods run as, with its token mounted; without it they get none",
      }),
    ),
    labels: Type.Optional(Type.Record(Type.String({ maxLength: 317 }), Type.String({ maxLength: 63 }))),
    annotations: Type.Optional(Type.Record(Type.String({ maxLength: 317 }), Type.String({ maxLength: 65_536 }))),
    resources: Type.Optional(
      Type.Object(
        {
          cpu: Type.Optional(Quantity('CPU limit, e.g. "500m" or "2"')),
          memory: Type.Optional(Quantity('memory limit, e.g. "256Mi"')),
          gpu: Type.Optional(Type.Integer({ minimum: 0, maximum: 16, description: 'whole GPUs (nvidia.com/gpu)' })),
        },
        strict,
      ),
    ),
    placement: Type.Optional(
      Type.Object(
        {
          nodeSelector: Type.Optional(Type.Record(Type.String({ maxLength: 317 }), Type.String({ maxLength: 63 }))),
          tolerations: Type.Optional(Type.Array(TolerationSchema, { maxItems: 32 })),
        },
        strict,
      ),
    ),
    timeout: Duration('30s', 'per-call deadline; the handler sees its AbortSignal fire'),
    scale: ScaleSchema,
    triggers: Type.Array(TriggerSchema, { maxItems: 32, default: [{ type: 'http' }] }),
  },
  strict,
);

export type FunctionSpec = Static<typeof FunctionSpecSchema>;
export type ScaleSpec = Static<typeof ScaleSchema>;
/** What a user may write: everything but the name has a default. */
export type FunctionSpecInput = Partial<Omit<FunctionSpec, 'scale'>> & { name: string; scale?: Partial<ScaleSpec> };

const checker = TypeCompiler.Compile(FunctionSpecSchema);

/** Environment variables the runtime owns; a spec may not set them. */
export const reservedEnv = new Set(['PORT', 'ADMIN_PORT', 'NODE_OPTIONS']);
const reservedEnvPrefix = 'KUBEFN_';
/** Secrets named so are the platform's (the kubefn-token Secret, ...): no function may name one. */
export const reservedSecretPrefix = 'kubefn-';

/**
 * Validates and fills defaults. Throws INVALID_SPEC naming every bad field, e.g.
 * `scale.min: must be <= scale.max (5 > 2)`.
 */
export function parseFunctionSpec(input: unknown): FunctionSpec {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new KubefnError('INVALID_SPEC', 'function spec must be an object', {
      fields: [{ field: '', message: 'must be an object' }],
    });
  }
  const value = Value.Default(FunctionSpecSchema, structuredClone(input)) as unknown;
  const fields = schemaErrors(checker.Errors(value));
  if (fields.length === 0) fields.push(...semanticErrors(value as FunctionSpec));
  if (fields.length > 0) {
    const summary = fields.map((f) => `${f.field || '(root)'}: ${f.message}`).join('; ');
    const name = (input as { name?: unknown }).name;
    const who = typeof name === 'string' ? ` for function "${name}"` : '';
    throw new KubefnError('INVALID_SPEC', `invalid spec${who}: ${summary}`, { fields });
  }
  return value as FunctionSpec;
}

interface TypeBoxError {
  path: string;
  message: string;
  schema: TSchema;
  value: unknown;
}

function schemaErrors(errors: Iterable<TypeBoxError>): FieldError[] {
  const seen = new Set<string>();
  const out: FieldError[] = [];
  for (const e of errors) {
    const field = e.path.replace(/^\//, '').split('/').filter(Boolean).join('.');
    if (seen.has(field)) continue;
    seen.add(field);
    out.push({ field, message: describe(e) });
    if (out.length >= 20) break;
  }
  return out;
}

function describe(e: TypeBoxError): string {
  const s = e.schema as Record<string, unknown>;
  if (e.message.startsWith('Unexpected property')) return 'unknown field';
  if (e.value === undefined && e.message.startsWith('Expected required')) return 'is required';
  if (s.pattern === durationPattern) return `must be a duration like "500ms", "30s" or "2m" (got ${JSON.stringify(e.value)})`;
  if (s.pattern === namePattern) {
    return `must be a DNS-1123 label: lower-case letters, digits and "-", starting and ending with a letter or digit (got ${JSON.stringify(e.value)})`;
  }
  if (s.pattern === quantityPattern) return `must be a quantity like "500m", "2", "256Mi" (got ${JSON.stringify(e.value)})`;
  if (s.pattern === envKeyPattern) return 'must be a valid environment variable name';
  if (Array.isArray(s.anyOf)) {
    const allowed = (s.anyOf as { const?: unknown }[]).map((x) => JSON.stringify(x.const)).join(', ');
    return `must be one of ${allowed} (got ${JSON.stringify(e.value)})`;
  }
  return `${e.message.toLowerCase()} (got ${JSON.stringify(e.value)})`;
}

function semanticErrors(spec: FunctionSpec): FieldError[] {
  const out: FieldError[] = [];
  const s = spec.scale;
  if (s.min > s.max) out.push({ field: 'scale.min', message: `must be <= scale.max (${s.min} > ${s.max})` });
  if (s.initial > s.max) out.push({ field: 'scale.initial', message: `must be <= scale.max (${s.initial} > ${s.max})` });
  if (s.stableWindow !== undefined && (parseDuration(s.stableWindow) < 6000 || parseDuration(s.stableWindow) > 3_600_000)) {
    out.push({ field: 'scale.stableWindow', message: 'must be between 6s and 1h' });
  }
  if (s.scaleToZeroGrace !== undefined && parseDuration(s.scaleToZeroGrace) > 3_600_000) {
    out.push({ field: 'scale.scaleToZeroGrace', message: 'must be between 0s and 1h' });
  }
  const timeoutMs = parseDuration(spec.timeout);
  if (timeoutMs < 1 || timeoutMs > 3_600_000) out.push({ field: 'timeout', message: 'must be between 1ms and 1h' });
  for (const key of Object.keys(spec.env ?? {})) {
    if (reservedEnv.has(key) || key.startsWith(reservedEnvPrefix)) {
      out.push({ field: `env.${key}`, message: `is reserved for the runtime (PORT, ADMIN_PORT, NODE_OPTIONS, ${reservedEnvPrefix}*)` });
    }
  }
  const listed = new Set(spec.secrets ?? []);
  for (const secret of listed) {
    if (secret.startsWith(reservedSecretPrefix)) {
      out.push({ field: 'secrets', message: `"${secret}" is one of the platform's own Secrets (${reservedSecretPrefix}*, kubefn-token among them); a function may not read them` });
    }
  }
  if (spec.serviceAccount?.startsWith(reservedSecretPrefix)) {
    out.push({ field: 'serviceAccount', message: `"${spec.serviceAccount}" is one of the platform's own service accounts (${reservedSecretPrefix}*); a function may not act as it` });
  }
  for (const [key, secret] of Object.entries(spec.secretEnv ?? {})) {
    if (!new RegExp(envKeyPattern).test(key)) out.push({ field: `secretEnv.${key}`, message: 'must be a valid environment variable name' });
    if (!listed.has(secret)) out.push({ field: `secretEnv.${key}`, message: `names secret "${secret}", which is not in \`secrets\`` });
    if (reservedEnv.has(key) || key.startsWith(reservedEnvPrefix)) {
      out.push({ field: `secretEnv.${key}`, message: `is reserved for the runtime (PORT, ADMIN_PORT, NODE_OPTIONS, ${reservedEnvPrefix}*)` });
    }
    if (spec.env?.[key] !== undefined) out.push({ field: `secretEnv.${key}`, message: 'is also set in `env`; set it in one place' });
  }
  if (spec.handler.includes('\0')) out.push({ field: 'handler', message: 'must be a file path' });
  (spec.assets ?? []).forEach((a, i) => {
    const parts = a.replace(/\/+$/, '').split('/');
    if (a.startsWith('/') || a.includes('\\') || a.includes('\0') || parts.some((p) => p === '..' || p === '')) {
      out.push({ field: `assets.${i}`, message: 'must be a path inside the function directory, like "public" or "data/words.txt"' });
    }
  });
  spec.triggers.forEach((t, i) => out.push(...triggerErrors(t, i)));
  return out;
}

/** Numbers the runtime and gateway need, derived once from a valid spec. */
export function timeoutMs(spec: FunctionSpec): number {
  return parseDuration(spec.timeout);
}
