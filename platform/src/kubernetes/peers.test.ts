import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1EndpointSlice } from '@kubernetes/client-node';
import { endpointsOf, pendingEndpointsOf } from './endpoints.js';
import { peersOf } from './peers.js';

const slice = (endpoints: V1EndpointSlice['endpoints'], ports = [{ name: 'http', port: 8080 }]): V1EndpointSlice => ({
  addressType: 'IPv4',
  endpoints,
  ports,
});

describe('peersOf', () => {
  it('lists ready endpoints on the named port, sorted by pod name, once each', () => {
    const peers = peersOf(
      [
        slice([
          { addresses: ['10.0.0.2'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'gw-b' } },
          { addresses: ['10.0.0.3'], conditions: { ready: false }, targetRef: { kind: 'Pod', name: 'gw-c' } },
          { addresses: ['10.0.0.1'], targetRef: { kind: 'Pod', name: 'gw-a' } },
        ]),
        slice([{ addresses: ['10.0.0.2'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'gw-b' } }]),
        slice([{ addresses: ['fd00::1'], conditions: { ready: true } }]),
      ],
      'http',
    );
    assert.deepEqual(peers, [
      { id: 'fd00::1', url: 'http://[fd00::1]:8080' },
      { id: 'gw-a', url: 'http://10.0.0.1:8080' },
      { id: 'gw-b', url: 'http://10.0.0.2:8080' },
    ]);
  });

  it('skips slices without the port and FQDN slices', () => {
    assert.deepEqual(peersOf([slice([{ addresses: ['10.0.0.1'] }], [{ name: 'metrics', port: 9090 }])], 'http'), []);
    assert.deepEqual(peersOf([{ ...slice([{ addresses: ['a.example'] }]), addressType: 'FQDN' }], 'http'), []);
  });
});

describe('pendingEndpointsOf', () => {
  it('lists pods with an address that are neither ready nor terminating', () => {
    const slices = [
      slice([
        { addresses: ['10.0.0.1'], conditions: { ready: false }, targetRef: { kind: 'Pod', name: 'starting' } },
        { addresses: ['10.0.0.2'], conditions: { ready: false, terminating: true }, targetRef: { kind: 'Pod', name: 'going' } },
        { addresses: ['10.0.0.3'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'up' } },
      ]),
    ];
    assert.deepEqual(pendingEndpointsOf(slices).map((e) => [e.id, e.adminUrl]), [['starting', 'http://10.0.0.1:8081']]);
    assert.deepEqual(endpointsOf(slices).map((e) => e.id), ['up']);
  });
});
