import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mergeScopes, parseWwwAuthenticate } from './auth.js';

describe('parseWwwAuthenticate', () => {
  const cases: [string, ReturnType<typeof parseWwwAuthenticate>][] = [
    ['Basic realm="Registry Realm"', [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]],
    [
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/node:pull,push"',
      [{ scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/node:pull,push' } }],
    ],
    // Escapes inside quoted strings, unquoted tokens, spaces around "=", names in any case.
    ['Bearer Realm = "a\\"b\\\\c" , service=reg , error=insufficient_scope', [{ scheme: 'bearer', params: { realm: 'a"b\\c', service: 'reg', error: 'insufficient_scope' } }]],
    // Several challenges: a comma followed by a name without "=" starts the next one.
    [
      'Basic realm="x, y", Bearer realm="https://t/token",scope="repository:a:pull", Negotiate',
      [
        { scheme: 'basic', params: { realm: 'x, y' } },
        { scheme: 'bearer', params: { realm: 'https://t/token', scope: 'repository:a:pull' } },
        { scheme: 'negotiate', params: {} },
      ],
    ],
    ['Negotiate abc+/def==, Basic realm=r', [{ scheme: 'negotiate', params: {}, token68: 'abc+/def==' }, { scheme: 'basic', params: { realm: 'r' } }]],
    ['', []],
  ];
  for (const [header, want] of cases) {
    it(`parses ${JSON.stringify(header.slice(0, 50))}`, () => assert.deepEqual(parseWwwAuthenticate(header), want));
  }
});

describe('mergeScopes', () => {
  it('merges the actions asked on one resource', () => {
    assert.deepEqual(mergeScopes(['repository:a:pull,push', 'repository:a:pull', 'repository:b/c:pull', 'registry:catalog:*']), [
      'repository:a:pull,push',
      'repository:b/c:pull',
      'registry:catalog:*',
    ]);
  });
});
