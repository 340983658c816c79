// /system/secrets: the OpenFaaS secrets API (faas-cli secret list/create/update/remove) over the
// driver's secret store. Values go in, never out: list answers names only.

import type { FastifyInstance } from 'fastify';
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { KubefnError, validateName, type Driver, type SecretStore } from '@kubefn/platform';
import { checkNamespace, namespace } from './openfaas.js';

/** faas-provider's Secret: `value` as text, or `rawValue` (Go []byte, so base64) when `value` is empty. */
const SecretBody = Type.Object({
  name: Type.String({ maxLength: 253 }),
  namespace: Type.Optional(Type.String({ maxLength: 253 })),
  value: Type.Optional(Type.String()),
  rawValue: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9+/]*={0,2}$' })),
});
const NamespaceQuery = Type.Object({ namespace: Type.Optional(Type.String({ maxLength: 253 })) });
const DeleteBody = Type.Object({ name: Type.String({ maxLength: 253 }), namespace: Type.Optional(Type.String({ maxLength: 253 })) });

export async function secretRoutes(base: FastifyInstance, driver: Driver): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get('/system/secrets', { schema: { querystring: NamespaceQuery } }, async (request) => {
    checkNamespace(request.query.namespace);
    const names = await store(driver).list();
    return names.map((name) => ({ name, namespace }));
  });

  app.post('/system/secrets', { schema: { body: SecretBody, querystring: NamespaceQuery } }, async (request, reply) => {
    const { name, value } = secretFrom(request.body, request.query.namespace);
    await store(driver).create(name, value);
    return reply.code(201).send();
  });

  app.put('/system/secrets', { schema: { body: SecretBody, querystring: NamespaceQuery } }, async (request, reply) => {
    const { name, value } = secretFrom(request.body, request.query.namespace);
    await store(driver).update(name, value);
    return reply.code(200).send();
  });

  app.delete('/system/secrets', { schema: { body: DeleteBody, querystring: NamespaceQuery } }, async (request, reply) => {
    checkNamespace(request.body.namespace ?? request.query.namespace);
    validateName(request.body.name, 'secret');
    await store(driver).remove(request.body.name);
    return reply.code(200).send();
  });
}

function store(driver: Driver): SecretStore {
  if (!driver.secrets) {
    throw new KubefnError('NOT_SUPPORTED', `this ${driver.kind} driver keeps no secrets`, {
      hint: '`fn up` and a cluster install keep them; a driver made without a secret store does not',
    });
  }
  return driver.secrets;
}

function secretFrom(body: { name: string; namespace?: string; value?: string; rawValue?: string }, queryNamespace: string | undefined): { name: string; value: Buffer } {
  checkNamespace(body.namespace ?? queryNamespace);
  validateName(body.name, 'secret');
  const value = body.value ? Buffer.from(body.value, 'utf8') : body.rawValue ? Buffer.from(body.rawValue, 'base64') : undefined;
  if (!value || value.length === 0) {
    throw new KubefnError('BAD_REQUEST', `secret "${body.name}" has no value`, {
      hint: 'send {"name", "value"} (text) or {"name", "rawValue"} (base64 bytes)',
    });
  }
  return { name: body.name, value };
}
