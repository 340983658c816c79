// Table layout and human-readable ages, sizes, durations and image names.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ageSince, formatAge, formatBytes, formatElapsed, formatTable, shortImage } from './output.js';
import { describeFunction, listHeaders, listRows } from './functions.js';
import type { FunctionInfo } from './client.js';
import { parseFunctionSpec } from '@kubefn/platform';

describe('formatTable', () => {
  it('pads every column but the last to its widest cell, three spaces apart', () => {
    const text = formatTable(['NAME', 'READY', 'AGE'], [
      ['hello', '1', '5m'],
      ['a-much-longer-name', '10', '2d'],
    ]);
    assert.equal(
      text,
      ['NAME                 READY   AGE', 'hello                1       5m', 'a-much-longer-name   10      2d', ''].join('\n'),
    );
  });

  it('prints only the header for no rows and never leaves trailing spaces', () => {
    assert.equal(formatTable(['A', 'B'], []), 'A   B\n');
    assert.equal(formatTable(['A', 'B'], [['x', '']]), 'A   B\nx\n');
  });
});

describe('formatAge', () => {
  const cases: [number, string][] = [
    [0, '0s'],
    [-5000, '0s'],
    [45_000, '45s'],
    [119_000, '119s'],
    [150_000, '2m30s'],
    [300_000, '5m'],
    [50 * 60_000, '50m'],
    [(5 * 60 + 10) * 60_000, '5h10m'],
    [30 * 3_600_000, '30h'],
    [(3 * 24 + 4) * 3_600_000, '3d4h'],
    [40 * 86_400_000, '40d'],
    [800 * 86_400_000, '2y'],
  ];
  for (const [ms, want] of cases) it(`${ms}ms -> ${want}`, () => assert.equal(formatAge(ms), want));

  it('ageSince reads RFC 3339 and tolerates garbage', () => {
    const now = Date.parse('2026-01-02T12:00:00Z');
    assert.equal(ageSince('2026-01-02T11:50:00Z', now), '10m');
    assert.equal(ageSince('yesterday', now), '<unknown>');
    assert.equal(ageSince(undefined, now), '<unknown>');
  });
});

describe('formatBytes / formatElapsed / shortImage', () => {
  it('formats sizes in binary units', () => {
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(12_600), '12.3 KiB');
    assert.equal(formatBytes(3_500_000), '3.3 MiB');
  });

  it('formats elapsed time', () => {
    assert.equal(formatElapsed(87.4), '87ms');
    assert.equal(formatElapsed(1234), '1.2s');
    assert.equal(formatElapsed(95_000), '1m35s');
  });

  it('shortens digests to 12 hex digits', () => {
    const hex = '0123456789abcdef'.repeat(4);
    assert.equal(shortImage(`bundle:sha256:${hex}`), 'bundle:0123456789ab');
    assert.equal(shortImage(`127.0.0.1:5000/fn/hello@sha256:${hex}`), '127.0.0.1:5000/fn/hello@0123456789ab');
    assert.equal(shortImage('registry/hello:1.2'), 'registry/hello:1.2');
    assert.equal(shortImage(''), '<none>');
  });
});

describe('fn list / describe layout', () => {
  const now = Date.parse('2026-01-02T12:00:00Z');
  const fn = (name: string, over: Partial<FunctionInfo> = {}): FunctionInfo => ({
    name,
    image: `bundle:sha256:${'ab'.repeat(32)}`,
    replicas: 2,
    availableReplicas: 1,
    invocationCount: 42,
    createdAt: '2026-01-02T11:57:00Z',
    spec: parseFunctionSpec({ name, env: { GREETING: 'hi' }, triggers: [{ type: 'http' }, { type: 'nats', subject: 'orders' }] }),
    ...over,
  });

  it('sorts by name and fills the NAME REPLICAS READY INVOCATIONS IMAGE AGE columns', () => {
    const text = formatTable(listHeaders, listRows([fn('zeta'), fn('alpha', { createdAt: undefined })], now));
    assert.equal(
      text,
      [
        'NAME    REPLICAS   READY   INVOCATIONS   IMAGE                 AGE',
        'alpha   2          1       42            bundle:abababababab   <unknown>',
        'zeta    2          1       42            bundle:abababababab   3m',
        '',
      ].join('\n'),
    );
  });

  it('describes the URL, replicas, scale settings, triggers and env', () => {
    const text = describeFunction(fn('hello'), 'http://gw/function/hello', now);
    assert.match(text, /^Name:\s+hello$/m);
    assert.match(text, /^URL:\s+http:\/\/gw\/function\/hello$/m);
    assert.match(text, /^Replicas:\s+1 ready \/ 2 desired$/m);
    assert.match(text, /^Scale:\s+min 0, max 10, initial 1$/m);
    assert.match(text, /^Triggers:\s+http; nats orders$/m);
    assert.match(text, /^Env:\s+GREETING=hi$/m);
    assert.match(text, /^Created:\s+2026-01-02T11:57:00Z \(3m ago\)$/m);
    assert.doesNotMatch(text, /^Pending:/m, 'no jetstream trigger, no pending target');
  });

  it('shows the pending target of a function with a jetstream trigger', () => {
    const triggers = [{ type: 'jetstream' as const, subject: 'orders', stream: 'ORDERS' }];
    const bySpec = fn('orders', { spec: parseFunctionSpec({ name: 'orders', scale: { pendingTarget: 25 }, triggers }) });
    assert.match(describeFunction(bySpec, 'http://gw/function/orders', now), /^Pending:\s+25 waiting messages per replica$/m);
    const byDefault = fn('orders', { spec: parseFunctionSpec({ name: 'orders', triggers }) });
    assert.match(describeFunction(byDefault, 'http://gw/function/orders', now), /^Pending:\s+default waiting messages per replica$/m);
  });
});
