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

  it("shows the status's last error with its code and hint, and no row without one", () => {
    const lastError = { code: 'UNHEALTHY', message: 'replica hello-2 was unresponsive: 3 liveness probe(s) in a row failed', hint: 'see `fn logs hello`' };
    const text = describeFunction(fn('hello', { lastError }), 'u', now);
    assert.match(text, /^Last error:\s+UNHEALTHY: replica hello-2 was unresponsive: 3 liveness probe\(s\) in a row failed$/m);
    assert.match(text, /^\s+hint: see `fn logs hello`$/m);
    assert.doesNotMatch(describeFunction(fn('hello'), 'u', now), /Last error/);
  });

  it('shows a stalled activation with its reason and since when, and no row without one', () => {
    const activation = { state: 'ActivationStalled' as const, reason: 'no replica became ready within 4.2 s (p99 start-up); 3 asked for', since: '2026-01-02T11:59:00Z' };
    const text = describeFunction(fn('hello', { activation }), 'u', now);
    assert.match(text, /^Activation:\s+ActivationStalled: no replica became ready within 4\.2 s \(p99 start-up\); 3 asked for \(since 2026-01-02T11:59:00Z\)$/m);
    assert.doesNotMatch(describeFunction(fn('hello'), 'u', now), /ActivationStalled/);
  });

  it('shows each scale value in effect and where it comes from, when the gateway reports them', () => {
    const spec = parseFunctionSpec({ name: 'hello', scale: { target: 5, stableWindow: '30s' } });
    const scaling = {
      metric: { value: 'concurrency', from: 'default' as const },
      target: { value: 5, from: 'spec' as const },
      targetUtilizationPercent: { value: 70, from: 'config' as const },
      stableWindow: { value: '30s', from: 'spec' as const },
      panicWindowPercent: { value: 10, from: 'default' as const },
      panicThresholdPercent: { value: 200, from: 'default' as const },
      maxScaleDownRate: { value: 2, from: 'default' as const },
      scaleDownDelay: { value: '0s', from: 'default' as const },
      scaleToZeroGrace: { value: '30s', from: 'default' as const },
    };
    const text = describeFunction(fn('hello', { spec, scaling }), 'u', now);
    assert.match(text, /^Target:\s+5 in-flight per replica at 70% \(config\) utilization; no per-replica cap$/m);
    assert.match(text, /^Windows:\s+stable 30s, panic 10% \(default\) of it above 200% \(default\) of target$/m);
    assert.match(text, /^Scale down:\s+max rate 2x \(default\), delay 0s \(default\), to zero after 30s \(default\) idle$/m);
    assert.doesNotMatch(text, /\bdefault (in-flight|%)/, 'no bare "default" where the value is known');
  });

  it('shows the limits the platform does not enforce and the last error, when there are any', () => {
    const spec = parseFunctionSpec({ name: 'hog', resources: { cpu: '500m', memory: '128Mi' } });
    const lastError = { code: 'OUT_OF_MEMORY', message: 'replica hog-1 used 141 MiB, over its 128Mi limit; killed' };
    const warnings = ['resources.cpu 500m is not enforced by the process driver on this machine: no cpu controller', 'second'];
    const text = describeFunction(fn('hog', { spec, lastError, warnings }), 'u', now);
    assert.match(text, /^Resources:\s+cpu 500m, memory 128Mi$/m);
    assert.match(text, /^Warnings:\s+resources\.cpu 500m is not enforced by the process driver on this machine: no cpu controller$/m);
    assert.match(text, /^\s+second$/m);
    assert.match(text, /^Last error:\s+OUT_OF_MEMORY: replica hog-1 used 141 MiB, over its 128Mi limit; killed$/m);
    const plain = describeFunction(fn('hello'), 'u', now);
    assert.doesNotMatch(plain, /^(Warnings|Last error):/m);
  });

  it('shows the pending target of a function with a jetstream trigger', () => {
    const triggers = [{ type: 'jetstream' as const, subject: 'orders', stream: 'ORDERS' }];
    const bySpec = fn('orders', { spec: parseFunctionSpec({ name: 'orders', scale: { pendingTarget: 25 }, triggers }) });
    assert.match(describeFunction(bySpec, 'http://gw/function/orders', now), /^Pending:\s+25 waiting messages per replica$/m);
    const byDefault = fn('orders', { spec: parseFunctionSpec({ name: 'orders', triggers }) });
    assert.match(describeFunction(byDefault, 'http://gw/function/orders', now), /^Pending:\s+default waiting messages per replica$/m);
  });

  it('shows the NATS link and each event trigger\'s state as the gateway reports it', () => {
    const triggers = [
      { type: 'http' as const },
      { type: 'jetstream' as const, subject: 'orders.>', stream: 'ORDERS', maxDeliver: 3, deadLetter: 'orders.dead' },
      { type: 'cron' as const, schedule: '@every 1m' },
    ];
    const info = fn('orders', {
      spec: parseFunctionSpec({ name: 'orders', triggers }),
      events: {
        nats: { connected: true, server: '127.0.0.1:4222' },
        triggers: [
          { type: 'jetstream', index: 1, ready: true, pending: 7, ackPending: 2, redelivered: 1, delivered: 10, acked: 8, retried: 1, deadLettered: 1, lastError: 'function answered 500: boom', lastErrorAt: '2026-01-02T12:00:00Z' },
          { type: 'cron', index: 2, next: '2026-01-02T12:01:00.000Z', fired: 3, skipped: 2, missed: 0 },
        ],
      },
    });
    const text = describeFunction(info, 'http://gw/function/orders', now);
    assert.match(text, /^Triggers:\s+http; jetstream orders\.> \(stream ORDERS, max 3 deliveries, dead letters to orders\.dead\); cron "@every 1m"$/m);
    assert.match(text, /^NATS:\s+connected \(127\.0\.0\.1:4222\)$/m);
    assert.match(text, /^\s+#1 jetstream orders\.>: consuming; 7 pending, 2 unacked, 1 redelivered; here: 10 delivered, 8 acked, 1 retried, 1 dead-lettered; last error at 2026-01-02T12:00:00Z: function answered 500: boom$/m);
    assert.match(text, /^\s+#2 cron "@every 1m": next 2026-01-02T12:01:00\.000Z; fired 3, taken by another gateway 2, missed 0$/m);
    const down = describeFunction({ ...info, events: { nats: { connected: false, error: 'disconnected' }, triggers: [{ type: 'jetstream', index: 1, ready: false, error: 'connection closed' }] } }, 'u', now);
    assert.match(down, /^NATS:\s+not connected: disconnected$/m);
    assert.match(down, /#1 jetstream orders\.>: not ready \(connection closed\)/);
  });
});
