// The Function CRD: committed YAML cannot drift, the schema is structural, and it agrees with parseFunctionSpec.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { Type, type TSchema } from '@sinclair/typebox';
import { parse } from 'yaml';
import { functionCrd, functionCrdYaml, toStructuralSchema, type StructuralSchema } from './crd.js';
import { activationCondition, functionStatusOf, type Condition, type FunctionResource } from './kubernetes/status.js';
import { FunctionSpecSchema, parseFunctionSpec } from './spec.js';

type Node = StructuralSchema;
interface Version { name: string; served: boolean; storage: boolean; additionalPrinterColumns: { jsonPath: string }[]; schema: { openAPIV3Schema: Node } }
const crd = functionCrd() as { spec: { versions: Version[] } };
const version = crd.spec.versions[0]!;
const root = version.schema.openAPIV3Schema;
const props = (n: Node) => (n.properties ?? {}) as Record<string, Node>;
const specSchema = props(root).spec!;

/** Every schema node with its path: properties, items and additionalProperties. */
function* nodes(n: Node, path = ''): Generator<[string, Node]> {
  yield [path || '(root)', n];
  for (const [k, v] of Object.entries(props(n))) yield* nodes(v, `${path}.${k}`);
  if (typeof n.items === 'object') yield* nodes(n.items as Node, `${path}[]`);
  if (typeof n.additionalProperties === 'object') yield* nodes(n.additionalProperties as Node, `${path}.*`);
}

/** Kubernetes' defaulting: missing fields get their default, then defaults apply inside (top-down). */
function applyDefaults(value: unknown, n: Node): unknown {
  if (Array.isArray(value)) return value.map((v) => applyDefaults(v, n.items as Node));
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  for (const [k, p] of Object.entries(props(n))) if (out[k] == null && p.default !== undefined) out[k] = structuredClone(p.default);
  for (const [k, v] of Object.entries(out)) {
    const p = props(n)[k] ?? (typeof n.additionalProperties === 'object' ? (n.additionalProperties as Node) : undefined);
    if (p) out[k] = applyDefaults(v, p);
  }
  return out;
}

/** Kubernetes' pruning: fields the schema does not specify are dropped. */
function prune(value: unknown, n: Node): unknown {
  if (Array.isArray(value)) return value.map((v) => prune(v, n.items as Node));
  if (typeof value !== 'object' || value === null) return value;
  const extra = typeof n.additionalProperties === 'object' ? (n.additionalProperties as Node) : undefined;
  return Object.fromEntries(
    Object.entries(value).flatMap(([k, v]) => {
      const p = props(n)[k] ?? extra;
      return p ? [[k, prune(v, p)]] : [];
    }),
  );
}

/** JSONSchemaProps fields this CRD may use; a typo or a non-OpenAPI-v3.0 keyword fails. */
const known = new Set([
  'type', 'format', 'title', 'description', 'default', 'properties', 'additionalProperties', 'items', 'required',
  'enum', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf', 'minLength', 'maxLength',
  'pattern', 'minItems', 'maxItems', 'minProperties', 'maxProperties', 'nullable',
  'x-kubernetes-validations', 'x-kubernetes-list-type', 'x-kubernetes-list-map-keys',
]);

test('deploy/crd/function.yaml is what functionCrdYaml() generates (run `npm run crd`)', async () => {
  const committed = await readFile(new URL('../../deploy/crd/function.yaml', import.meta.url), 'utf8');
  assert.equal(committed, functionCrdYaml());
  assert.deepEqual(parse(committed), functionCrd());
});

test('the CRD names, scope, version and subresources', () => {
  const c = functionCrd() as Record<string, any>;
  assert.equal(c.apiVersion, 'apiextensions.k8s.io/v1');
  assert.equal(c.metadata.name, `${c.spec.names.plural}.${c.spec.group}`);
  assert.deepEqual(c.spec.names, {
    kind: 'Function', listKind: 'FunctionList', plural: 'functions', singular: 'function', shortNames: ['fn'], categories: ['all', 'kubefn'],
  });
  assert.equal(c.spec.scope, 'Namespaced');
  assert.equal(c.spec.versions.length, 1);
  assert.deepEqual([version.name, version.served, version.storage], ['v1alpha1', true, true]);
  assert.deepEqual(c.spec.versions[0].subresources, { status: {} }, 'status only; no scale subresource');
  assert.deepEqual(root.required, ['spec']);
});

test('the schema is structural', () => {
  for (const [path, n] of nodes(root)) {
    assert.equal(Object.getOwnPropertySymbols(n).length, 0, `${path}: TypeBox symbol left`);
    for (const key of Object.keys(n)) assert.ok(known.has(key), `${path}: keyword "${key}"`);
    const typed = typeof n.type === 'string' || n['x-kubernetes-int-or-string'] === true || n['x-kubernetes-preserve-unknown-fields'] === true;
    assert.ok(typed, `${path}: no type`);
    assert.ok(n.additionalProperties === undefined || typeof n.additionalProperties === 'object', `${path}: additionalProperties must be a schema`);
    assert.ok(!(n.properties && n.additionalProperties), `${path}: properties and additionalProperties are mutually exclusive`);
    for (const k of ['exclusiveMinimum', 'exclusiveMaximum']) assert.ok(n[k] === undefined || n[k] === true, `${path}: ${k} must be boolean`);
    if (n.type === 'array') assert.equal(typeof n.items, 'object', `${path}: array without items`);
    for (const k of (n.required ?? []) as string[]) assert.ok(props(n)[k], `${path}: required ${k} is not a property`);
    if (n.default !== undefined) assert.deepEqual(prune(n.default, n), n.default, `${path}: default would be pruned`);
    if (path.includes('.*')) assert.equal(n.default, undefined, `${path}: no defaults under additionalProperties`);
    for (const k of (n['x-kubernetes-list-map-keys'] ?? []) as string[]) {
      const item = n.items as Node;
      assert.ok((item.required as string[]).includes(k) || props(item)[k]?.default !== undefined, `${path}: map key ${k}`);
    }
  }
  assert.ok(!JSON.stringify(root).includes('"$'), 'no $id/$schema/$ref');
  // Only name (and generateName) of metadata may be restricted, and nothing else about metadata.
  assert.deepEqual(Object.keys(props(root).metadata!).sort(), ['properties', 'type']);
  assert.deepEqual(Object.keys(props(props(root).metadata!)), ['name']);
});

test('the CRD defaults fill in what parseFunctionSpec fills in', () => {
  for (const input of [{}, { scale: { max: 3 } }, { scale: { min: 2 }, triggers: [{ type: 'nats', subject: 'orders' }] }]) {
    const { name: _, ...expected } = parseFunctionSpec({ name: 'x', ...input });
    assert.deepEqual(applyDefaults(input, specSchema), expected, JSON.stringify(input));
  }
});

test('every FunctionSpec field (but name, which is metadata.name) is in the CRD spec', () => {
  const same = (t: Record<string, any>, n: Node, path: string): void => {
    if (t.type === 'array') return same(t.items, n.items as Node, `${path}[]`);
    if (!t.properties) return;
    const want = Object.keys(t.properties).filter((k) => path !== 'spec' || k !== 'name');
    assert.deepEqual(Object.keys(props(n)), want, path);
    for (const k of want) same(t.properties[k], props(n)[k]!, `${path}.${k}`);
  };
  same(FunctionSpecSchema, specSchema, 'spec');
  const name = props(props(root).metadata!).name!;
  assert.equal(name.pattern, FunctionSpecSchema.properties.name.pattern);
  assert.equal(name.maxLength, FunctionSpecSchema.properties.name.maxLength);
});

test('printer columns point at fields the schema has', () => {
  const objectMeta = new Set(['name', 'namespace', 'creationTimestamp', 'generation', 'labels', 'annotations']);
  for (const { jsonPath } of version.additionalPrinterColumns) {
    const parts = jsonPath.slice(1).replace(/\[\?\(.*?\)\]/g, '[]').split('.');
    if (parts[0] === 'metadata') {
      assert.ok(objectMeta.has(parts[1]!), jsonPath);
      continue;
    }
    let n: Node | undefined = root;
    for (const part of parts) {
      n = props(n!)[part.replace('[]', '')];
      assert.ok(n, `${jsonPath}: no ${part}`);
      if (part.endsWith('[]')) n = n.items as Node;
    }
  }
});

test('the CEL rules say what parseFunctionSpec says', () => {
  const rules = (n: Node) => (n['x-kubernetes-validations'] ?? []) as { rule: string; fieldPath?: string; message: string }[];
  const cases: [string, Node, object][] = [
    ['scale', props(specSchema).scale!, { scale: { min: 5, max: 2, initial: 3 } }],
    ['triggers.0', (props(specSchema).triggers!.items as Node), { triggers: [{ type: 'nats' }] }],
    ['triggers.0', (props(specSchema).triggers!.items as Node), { triggers: [{ type: 'cron' }] }],
    ['triggers.0', (props(specSchema).triggers!.items as Node), { triggers: [{ type: 'jetstream' }] }],
    ['triggers.0', (props(specSchema).triggers!.items as Node), { triggers: [{ type: 'http', subject: 'x', schedule: '@hourly' }] }],
  ];
  const wanted = new Set<string>();
  for (const [field, n] of cases) for (const r of rules(n)) wanted.add(`${field}${r.fieldPath ?? ''}: ${r.message}`);
  assert.equal(wanted.size, 8);
  const said = cases.map(([, , input]) => {
    try {
      parseFunctionSpec({ name: 'x', ...input });
      return '';
    } catch (err) {
      return (err as Error).message;
    }
  }).join('\n');
  for (const w of wanted) assert.ok(said.includes(w), `parseFunctionSpec never says "${w}":\n${said}`);
});

test('the converter maps TypeBox to OpenAPI v3.0 and does not touch its input', () => {
  const before = JSON.stringify(FunctionSpecSchema);
  toStructuralSchema(FunctionSpecSchema);
  assert.equal(JSON.stringify(FunctionSpecSchema), before);
  assert.deepEqual(toStructuralSchema(Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 5 })), {
    type: 'number', minimum: 0, exclusiveMinimum: true, maximum: 5, exclusiveMaximum: true,
  });
  assert.deepEqual(toStructuralSchema(Type.Integer({ minimum: 0, maximum: 9 })), { type: 'integer', format: 'int32', minimum: 0, maximum: 9 });
  assert.deepEqual(toStructuralSchema(Type.Integer({ minimum: 0 })), { type: 'integer', format: 'int64', minimum: 0 });
  assert.deepEqual(toStructuralSchema(Type.Union([Type.Literal('a'), Type.Literal('b')], { default: 'a' })), { type: 'string', enum: ['a', 'b'], default: 'a' });
  assert.deepEqual(toStructuralSchema(Type.Record(Type.String(), Type.Boolean())), { type: 'object', additionalProperties: { type: 'boolean' } });
  assert.deepEqual(toStructuralSchema(Type.Object({ a: Type.String({ default: 'x' }), b: Type.Optional(Type.String()), c: Type.String() }, { additionalProperties: false })), {
    type: 'object', properties: { a: { type: 'string', default: 'x' }, b: { type: 'string' }, c: { type: 'string' } }, required: ['c'],
  });
});

test('the converter throws on what it does not understand', () => {
  const unsupported: [string, TSchema][] = [
    ['Intersect', Type.Intersect([Type.Object({ a: Type.String() }), Type.Object({ b: Type.String() })])],
    ['Any', Type.Any()],
    ['Unknown', Type.Unknown()],
    ['Null', Type.Null()],
    ['nested Any', Type.Object({ ok: Type.String(), bad: Type.Array(Type.Any()) })],
    ['mixed union', Type.Union([Type.Literal('a'), Type.Literal(1)])],
    ['union of types', Type.Union([Type.String(), Type.Number()])],
    ['number-keyed record', Type.Record(Type.Number(), Type.String())],
    ['open object', Type.Object({ a: Type.String() }, { additionalProperties: Type.String() })],
    ['uniqueItems', Type.Array(Type.String(), { uniqueItems: true })],
    ['format', Type.String({ format: 'email' })],
    ['bad default', Type.Integer({ minimum: 1, default: 0 })],
    ['default in a map value', Type.Record(Type.String(), Type.Object({ a: Type.String({ default: 'x' }) }))],
  ];
  for (const [what, schema] of unsupported) assert.throws(() => toStructuralSchema(schema), /toStructuralSchema/, what);
  assert.throws(() => toStructuralSchema(Type.Object({ bad: Type.Array(Type.Any()) })), /at bad\[\]/);
});

test('the status schema takes an ActivationStalled condition whole, and the driver reads it back as FunctionStatus.activation', () => {
  const statusSchema = props(root).status!;
  const conditions = props(statusSchema).conditions!;
  const item = conditions.items as Node;
  const stall = { reason: 'no replica became ready within 4.2 s (p99 start-up); 3 asked for', since: '2026-01-02T12:00:00.000Z' };
  const condition = activationCondition(stall);
  // What the API server checks of a condition: required fields, the type and reason patterns, the status enum, a date-time.
  for (const k of item.required as string[]) assert.ok((condition as unknown as Record<string, unknown>)[k] !== undefined, `required ${k}`);
  assert.match(condition.type, new RegExp(props(item).type!.pattern as string));
  assert.match(condition.reason, new RegExp(props(item).reason!.pattern as string));
  assert.ok((props(item).status!.enum as string[]).includes(condition.status));
  assert.ok(condition.message.length <= (props(item).message!.maxLength as number));
  assert.match(condition.lastTransitionTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const status: { conditions: Condition[] } = { conditions: [{ type: 'Ready', status: 'False', reason: 'ReplicasNotReady', message: '0 of 3 replica(s) ready', lastTransitionTime: '2026-01-02T11:59:00Z' }, condition] };
  assert.deepEqual(prune(status, statusSchema), status, 'nothing of it is pruned');
  const fn: FunctionResource = { metadata: { name: 'hello', generation: 1, creationTimestamp: new Date('2026-01-01T00:00:00Z') }, status };
  const read = functionStatusOf(fn, parseFunctionSpec({ name: 'hello', image: 'img' }), undefined);
  assert.deepEqual(read.activation, { state: 'ActivationStalled', reason: stall.reason, since: '2026-01-02T12:00:00Z' });
  const recovered: FunctionResource = { ...fn, status: { conditions: [status.conditions[0]!] } };
  assert.equal(functionStatusOf(recovered, parseFunctionSpec({ name: 'hello', image: 'img' }), undefined).activation, undefined, 'no condition, no activation');
});
