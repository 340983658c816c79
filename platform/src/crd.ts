// The Function CustomResourceDefinition, generated from FunctionSpecSchema so fn.yaml, the API and the CRD share one schema.

import { Kind, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { stringify } from 'yaml';
import { FunctionSpecSchema } from './spec.js';
import { takesNo, triggerFields, triggerTypes } from './triggers.js';

/** A node of an OpenAPI v3 structural schema, as Kubernetes' JSONSchemaProps. */
export type StructuralSchema = { [key: string]: unknown };

/** A TypeBox schema read as plain data, symbol keys (Kind) included. */
type Raw = Record<PropertyKey, unknown>;

export const crdGroup = 'kubefn.dev';
export const crdVersion = 'v1alpha1';

const int32 = { min: -(2 ** 31), max: 2 ** 31 - 1 };
/** What each TypeBox kind may carry besides `type`; any other key makes the converter throw. */
const allowed: Record<string, string[]> = {
  String: ['pattern', 'minLength', 'maxLength', 'enum'],
  Integer: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf', 'enum'],
  Number: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf', 'enum'],
  Boolean: [],
  Array: ['items', 'minItems', 'maxItems'],
  Object: ['properties', 'required', 'additionalProperties', 'minProperties', 'maxProperties'],
  Record: ['patternProperties', 'additionalProperties', 'minProperties', 'maxProperties'],
  Union: ['anyOf'],
  Literal: ['const'],
};
/** Keys every kind may carry: annotations kept as they are, and TypeBox/JSON Schema ids dropped. */
const annotations = ['title', 'description', 'default'];
const dropped = ['$id', '$schema'];
/** TypeBox's pattern for a Type.String() record key (any string); number keys use another. */
const anyKey = '^(.*)$';

/**
 * Converts a TypeBox schema into a Kubernetes structural schema (every node typed; no
 * logical junctors; no `additionalProperties: false`). Throws, naming the path, on anything
 * it does not understand, so it never emits a schema that is silently looser or wrong.
 *
 * Deliberate differences, each enforced again by parseFunctionSpec when kubefn reads a Function:
 * - `additionalProperties: false` is forbidden in structural schemas; the API server prunes
 *   unknown fields instead, and rejects them when a client asks for strict field validation.
 * - Map keys (Type.Record key patterns) cannot be constrained structurally, and a CEL rule
 *   over every key of an unbounded map exceeds the CEL cost budget; the key pattern goes into
 *   the description instead.
 * - A property with a default is not `required`: the API server fills defaults before it
 *   validates, and it validates a parent's default (e.g. `scale: {}`) without applying the
 *   nested ones, so `required` would reject that default.
 */
export function toStructuralSchema(schema: TSchema, path = ''): StructuralSchema {
  const s = schema as unknown as Raw;
  const kind = s[Kind];
  const at = path || '(root)';
  if (typeof kind !== 'string' || !Object.hasOwn(allowed, kind)) {
    throw new Error(`toStructuralSchema: unsupported schema at ${at}: ${String(kind ?? JSON.stringify(s))}`);
  }
  for (const key of Object.keys(s)) {
    if (key !== 'type' && !annotations.includes(key) && !dropped.includes(key) && !allowed[kind]!.includes(key)) {
      throw new Error(`toStructuralSchema: unsupported keyword "${key}" on ${kind} at ${at}`);
    }
  }
  if (s.default !== undefined && !Value.Check(schema, Value.Default(schema, structuredClone(s.default)))) {
    throw new Error(`toStructuralSchema: default at ${at} does not match its own schema`);
  }
  const out: StructuralSchema = { ...typeOf(kind, s, at) };
  for (const key of ['title', 'description']) if (s[key] !== undefined) out[key] = s[key];
  switch (kind) {
    case 'String':
      copy(s, out, ['pattern', 'minLength', 'maxLength', 'enum']);
      break;
    case 'Integer':
    case 'Number':
      numeric(s, out, at);
      break;
    case 'Array':
      copy(s, out, ['minItems', 'maxItems']);
      out.items = toStructuralSchema(s.items as TSchema, `${path}[]`);
      break;
    case 'Object': {
      if (s.additionalProperties !== undefined && s.additionalProperties !== false) {
        throw new Error(`toStructuralSchema: additionalProperties beside properties at ${at} (use Type.Record for maps)`);
      }
      copy(s, out, ['minProperties', 'maxProperties']);
      const props = (s.properties ?? {}) as Record<string, TSchema>;
      out.properties = Object.fromEntries(
        Object.entries(props).map(([k, v]) => [k, toStructuralSchema(v, path ? `${path}.${k}` : k)]),
      );
      const required = ((s.required ?? []) as string[]).filter((k) => (props[k] as { default?: unknown })?.default === undefined);
      if (required.length > 0) out.required = required;
      break;
    }
    case 'Record': {
      if (s.additionalProperties !== undefined && s.additionalProperties !== false) {
        throw new Error(`toStructuralSchema: additionalProperties on a record at ${at}`);
      }
      const entries = Object.entries((s.patternProperties ?? {}) as Record<string, TSchema>);
      const [keyPattern, value] = entries[0] ?? [];
      if (entries.length !== 1 || keyPattern === undefined || value === undefined || keyPattern === '^(0|[1-9][0-9]*)$') {
        throw new Error(`toStructuralSchema: only string-keyed records are supported at ${at}`);
      }
      if (keyPattern !== anyKey) {
        const note = `keys match ${keyPattern}`;
        out.description = out.description === undefined ? note : `${String(out.description)}; ${note}`;
      }
      copy(s, out, ['minProperties', 'maxProperties']);
      out.additionalProperties = toStructuralSchema(value, `${path}.*`);
      // Kubernetes forbids defaults under additionalProperties (it never applies them there).
      if (hasDefault(out.additionalProperties as StructuralSchema)) {
        throw new Error(`toStructuralSchema: defaults inside map values are not allowed at ${at}`);
      }
      break;
    }
    case 'Union':
    case 'Literal':
      out.enum = literals(s, at);
      break;
  }
  if (s.default !== undefined) out.default = structuredClone(s.default);
  return out;
}

function typeOf(kind: string, s: Raw, at: string): StructuralSchema {
  switch (kind) {
    case 'String':
      return { type: 'string' };
    case 'Integer': {
      const small = [s.minimum ?? s.exclusiveMinimum, s.maximum ?? s.exclusiveMaximum].every(
        (n) => typeof n === 'number' && n >= int32.min && n <= int32.max,
      );
      return { type: 'integer', format: small ? 'int32' : 'int64' };
    }
    case 'Number':
      return { type: 'number' };
    case 'Boolean':
      return { type: 'boolean' };
    case 'Array':
      return { type: 'array' };
    case 'Object':
    case 'Record':
      return { type: 'object' };
    default: {
      // A union of literals is typed by its members, which must all share one JSON type.
      const types = new Set(literals(s, at).map((v) => (typeof v === 'number' ? (Number.isInteger(v) ? 'integer' : 'number') : typeof v)));
      if (types.size !== 1) throw new Error(`toStructuralSchema: literals of mixed types at ${at}`);
      return { type: [...types][0] };
    }
  }
}

/** JSON Schema 2019 `exclusiveMinimum: N` becomes OpenAPI v3.0 `minimum: N, exclusiveMinimum: true`. */
function numeric(s: Raw, out: StructuralSchema, at: string): void {
  for (const [bound, exclusive] of [['minimum', 'exclusiveMinimum'], ['maximum', 'exclusiveMaximum']] as const) {
    if (s[bound] !== undefined && s[exclusive] !== undefined) throw new Error(`toStructuralSchema: both ${bound} and ${exclusive} at ${at}`);
    if (s[bound] !== undefined) out[bound] = s[bound];
    if (typeof s[exclusive] === 'number') {
      out[bound] = s[exclusive];
      out[exclusive] = true;
    } else if (s[exclusive] !== undefined) {
      throw new Error(`toStructuralSchema: ${exclusive} must be a number at ${at}`);
    }
  }
  copy(s, out, ['multipleOf', 'enum']);
}

function literals(s: Raw, at: string): unknown[] {
  const members = s[Kind] === 'Literal' ? [s] : ((s.anyOf ?? []) as Raw[]);
  return members.map((m) => {
    const ok = m[Kind] === 'Literal' && ['string', 'number', 'boolean'].includes(typeof m.const);
    if (!ok) throw new Error(`toStructuralSchema: only unions of literals are supported at ${at}`);
    return m.const;
  });
}

function hasDefault(n: StructuralSchema): boolean {
  const children = [...Object.values((n.properties ?? {}) as Record<string, StructuralSchema>), n.items, n.additionalProperties];
  return n.default !== undefined || children.some((c) => typeof c === 'object' && c !== null && hasDefault(c as StructuralSchema));
}

function copy(from: Raw, to: StructuralSchema, keys: string[]): void {
  for (const key of keys) if (from[key] !== undefined) to[key] = structuredClone(from[key]);
}

/** The node at a dotted path of property names ("scale", "triggers[]"); throws if absent. */
function nodeAt(schema: StructuralSchema, path: string): StructuralSchema {
  let node = schema;
  for (const part of path.split('.')) {
    const name = part.replace(/\[\]$/, '');
    const props = node.properties as Record<string, StructuralSchema> | undefined;
    const next = props?.[name];
    if (next === undefined) throw new Error(`no field ${path} in the schema`);
    node = part.endsWith('[]') ? (next.items as StructuralSchema) : next;
  }
  return node;
}

/**
 * The cross-field checks of parseFunctionSpec that CEL can express cheaply (Kubernetes 1.25+
 * validation rules). Each fieldPath + message reads like parseFunctionSpec's `field: message`.
 * Static messages: a messageExpression that prints the values (string(self.min) + ...) is
 * refused by kube-apiserver 1.34 as over the CEL cost budget by more than 100x.
 * has() guards keep the rules true on a default such as `scale: {}`, which the API server
 * validates before nested defaults apply; on real objects the defaults make the fields exist.
 * Left to parseFunctionSpec: duration ranges, reserved env names, asset paths, env key names.
 */
const celRules: Record<string, StructuralSchema[]> = {
  scale: [
    {
      rule: '!has(self.min) || !has(self.max) || self.min <= self.max',
      fieldPath: '.min',
      message: 'must be <= scale.max',
    },
    {
      rule: '!has(self.initial) || !has(self.max) || self.initial <= self.max',
      fieldPath: '.initial',
      message: 'must be <= scale.max',
    },
  ],
  'triggers[]': [
    ...triggerTypes.flatMap((type) =>
      triggerFields[type].required.map((field) => ({
        rule: `self.type != '${type}' || has(self.${field})`,
        fieldPath: `.${field}`,
        message: `is required for a ${type} trigger`,
      })),
    ),
    // The commonest wrong field; parseFunctionSpec names every other one.
    { rule: "self.type != 'http' || !has(self.subject)", fieldPath: '.subject', message: takesNo('http', 'subject') },
    { rule: "self.type != 'http' || !has(self.schedule)", fieldPath: '.schedule', message: takesNo('http', 'schedule') },
  ],
};

/** Function.spec: the FunctionSpec without `name`, which is the Function's metadata.name. */
export function functionSpecCrdSchema(): StructuralSchema {
  const spec = toStructuralSchema(FunctionSpecSchema);
  delete (spec.properties as Raw).name;
  if (Array.isArray(spec.required)) {
    spec.required = spec.required.filter((k) => k !== 'name');
    if ((spec.required as string[]).length === 0) delete spec.required;
  }
  for (const [path, rules] of Object.entries(celRules)) nodeAt(spec, path)['x-kubernetes-validations'] = rules;
  return { type: spec.type, description: 'the function as in fn.yaml, without name (the name is metadata.name)', ...spec };
}

/** metav1.Condition, as Kubernetes' own types publish it. */
const conditionSchema: StructuralSchema = {
  type: 'object',
  properties: {
    type: { type: 'string', maxLength: 316, pattern: '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$' },
    status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
    observedGeneration: { type: 'integer', format: 'int64', minimum: 0 },
    lastTransitionTime: { type: 'string', format: 'date-time' },
    reason: { type: 'string', minLength: 1, maxLength: 1024, pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$' },
    message: { type: 'string', maxLength: 32_768 },
  },
  required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
};

const statusSchema: StructuralSchema = {
  type: 'object',
  description: 'what kubefn observed; written through the status subresource',
  properties: {
    observedGeneration: { type: 'integer', format: 'int64', description: 'the metadata.generation this status describes' },
    replicas: { type: 'integer', format: 'int32', description: 'replicas of the owned Deployment' },
    readyReplicas: { type: 'integer', format: 'int32', description: 'replicas passing readiness' },
    imageDigest: { type: 'string', description: 'digest of the image the replicas run' },
    url: { type: 'string', description: 'where the function answers' },
    conditions: {
      type: 'array',
      description:
        'Ready: a replica is ready, or the function is scaled to zero on purpose. ActivationStalled (True while it lasts, absent otherwise): replicas were asked for and none became ready within the function\'s p99 start-up, so the autoscaler adds no more until one is; the message says why',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
      items: conditionSchema,
    },
  },
};

/** The complete apiextensions.k8s.io/v1 CustomResourceDefinition of kind Function. */
export function functionCrd(): object {
  const nameSchema = toStructuralSchema(FunctionSpecSchema.properties.name);
  delete nameSchema.description; // metadata may only restrict name's value (structural-schema rule)
  const openAPIV3Schema = {
    type: 'object',
    description: 'A function kubefn builds, runs and scales; see fn.yaml for the same fields.',
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      // The name becomes a Service name, so it must be a DNS-1123 label, not any object name.
      metadata: { type: 'object', properties: { name: nameSchema } },
      spec: functionSpecCrdSchema(),
      status: statusSchema,
    },
    required: ['spec'],
  };
  const column = (name: string, type: string, jsonPath: string, description: string, priority?: number) =>
    ({ name, type, jsonPath, description, ...(priority === undefined ? {} : { priority }) });
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `functions.${crdGroup}`, labels: { 'app.kubernetes.io/part-of': 'kubefn' } },
    spec: {
      group: crdGroup,
      names: { kind: 'Function', listKind: 'FunctionList', plural: 'functions', singular: 'function', shortNames: ['fn'], categories: ['all', 'kubefn'] },
      scope: 'Namespaced',
      versions: [
        {
          name: crdVersion,
          served: true,
          storage: true,
          // No scale subresource: it would need a replicas field on the Function, but replicas
          // are the autoscaler's decision and it scales the owned Deployment directly.
          subresources: { status: {} },
          additionalPrinterColumns: [
            column('Ready', 'integer', '.status.readyReplicas', 'replicas passing readiness'),
            column('Replicas', 'integer', '.status.replicas', 'replicas of the owned Deployment'),
            column('Status', 'string', '.status.conditions[?(@.type=="Ready")].status', 'the Ready condition'),
            column('Stalled', 'string', '.status.conditions[?(@.type=="ActivationStalled")].message', 'why the activation stalled, while it does', 1),
            column('Image', 'string', '.spec.image', 'image the replicas run', 1),
            column('Digest', 'string', '.status.imageDigest', 'digest of that image', 1),
            column('Age', 'date', '.metadata.creationTimestamp', 'time since creation'),
          ],
          schema: { openAPIV3Schema },
        },
      ],
    },
  };
}

/** The CRD as the YAML committed at deploy/crd/function.yaml. */
export function functionCrdYaml(): string {
  const header =
    '# Generated by platform/src/crd.ts (functionCrdYaml) from FunctionSpecSchema in platform/src/spec.ts.\n' +
    '# Do not edit; regenerate with `npm run crd`.\n';
  return header + stringify(functionCrd(), { lineWidth: 0 });
}
