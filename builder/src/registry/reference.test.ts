import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isKubefnError } from '@kubefn/platform';
import { formatReference, isLoopbackRegistry, parseReference, registryApiHost, type ImageReference } from './reference.js';

const d = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  const cases: [string, ImageReference][] = [
    ['node', { registry: 'docker.io', repository: 'library/node', tag: 'latest' }],
    ['node:20', { registry: 'docker.io', repository: 'library/node', tag: '20' }],
    ['acme/fn:v1', { registry: 'docker.io', repository: 'acme/fn', tag: 'v1' }],
    ['docker.io/node', { registry: 'docker.io', repository: 'library/node', tag: 'latest' }],
    ['index.docker.io/acme/fn', { registry: 'docker.io', repository: 'acme/fn', tag: 'latest' }],
    ['ghcr.io/acme/team/fn:1.2.3', { registry: 'ghcr.io', repository: 'acme/team/fn', tag: '1.2.3' }],
    ['localhost/fn', { registry: 'localhost', repository: 'fn', tag: 'latest' }],
    ['localhost:5000/fn:dev', { registry: 'localhost:5000', repository: 'fn', tag: 'dev' }],
    ['127.0.0.1:5000/a/b', { registry: '127.0.0.1:5000', repository: 'a/b', tag: 'latest' }],
    ['[::1]:5000/fn', { registry: '[::1]:5000', repository: 'fn', tag: 'latest' }],
    ['Registry.Example.COM/fn', { registry: 'registry.example.com', repository: 'fn', tag: 'latest' }],
    // A first component without "." or ":" and not "localhost" is part of the repository.
    ['myhost/fn', { registry: 'docker.io', repository: 'myhost/fn', tag: 'latest' }],
    [`fn@${d}`, { registry: 'docker.io', repository: 'library/fn', digest: d }],
    [`ghcr.io/acme/fn:v1@${d}`, { registry: 'ghcr.io', repository: 'acme/fn', tag: 'v1', digest: d }],
    ['a__b/c.d-e--f/g_h', { registry: 'docker.io', repository: 'a__b/c.d-e--f/g_h', tag: 'latest' }],
    [`x/y:${'T'.repeat(128)}`, { registry: 'docker.io', repository: 'x/y', tag: 'T'.repeat(128) }],
  ];
  for (const [ref, want] of cases) {
    it(`parses ${ref.length > 60 ? `${ref.slice(0, 60)}…` : ref}`, () => {
      assert.deepEqual(parseReference(ref), want);
    });
  }

  const errors: [string, RegExp][] = [
    ['', /empty/],
    [' node', /spaces/],
    ['Node', /component "Node" must be lowercase/],
    ['ghcr.io/Acme/fn', /component "Acme" must be lowercase/],
    ['a//b', /component "" may only/],
    ['a/-b', /component "-b"/],
    ['a/b.', /component "b\."/],
    ['a___b', /component "a___b"/],
    ['node:', /tag ""/],
    ['node:.x', /tag "\.x"/],
    [`node:${'t'.repeat(129)}`, /tag "t+"/],
    ['node@sha256:abc', /digest "sha256:abc" must have 64 lowercase hex digits/],
    [`node@sha256:${'A'.repeat(64)}`, /64 lowercase hex/],
    ['node@latest', /digest "latest" is not/],
    ['ghcr.io/', /repository name is empty/],
    ['bad_host.io:x/fn', /registry "bad_host.io:x" is not a host name/],
    ['-bad.io/fn', /registry "-bad.io"/],
    [`ghcr.io/${'a'.repeat(250)}`, /longer than 255/],
  ];
  for (const [ref, message] of errors) {
    it(`rejects ${JSON.stringify(ref.length > 40 ? `${ref.slice(0, 40)}…` : ref)}`, () => {
      assert.throws(
        () => parseReference(ref),
        (err: unknown) => isKubefnError(err, 'BAD_REQUEST') && message.test(err.message) && err.message.includes('invalid image reference') && !!err.hint,
      );
    });
  }
});

describe('formatReference', () => {
  it('writes the full form, which parses back to the same reference', () => {
    for (const ref of ['node', 'ghcr.io/acme/fn:v1', `localhost:5000/fn@${d}`, `acme/fn:v1@${d}`]) {
      const parsed = parseReference(ref);
      assert.deepEqual(parseReference(formatReference(parsed)), parsed);
    }
    assert.equal(formatReference(parseReference('node')), 'docker.io/library/node:latest');
  });
});

describe('registryApiHost', () => {
  it("maps Docker Hub to its API host and leaves others alone", () => {
    assert.equal(registryApiHost('docker.io'), 'registry-1.docker.io');
    assert.equal(registryApiHost('ghcr.io'), 'ghcr.io');
    assert.equal(registryApiHost('localhost:5000'), 'localhost:5000');
  });
});

describe('isLoopbackRegistry', () => {
  const cases: [string, boolean][] = [
    ['localhost', true],
    ['localhost:5000', true],
    ['LOCALHOST:5000', true],
    ['127.0.0.1', true],
    ['127.1.2.3:443', true],
    ['[::1]', true],
    ['[::1]:5000', true],
    ['localhost.example.com', false],
    ['127.0.0.1.nip.io', false],
    ['128.0.0.1:5000', false],
    ['[::2]:5000', false],
    ['ghcr.io', false],
  ];
  for (const [registry, want] of cases) {
    it(`${registry} -> ${want}`, () => assert.equal(isLoopbackRegistry(registry), want));
  }
});
