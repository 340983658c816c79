// Event triggers on a real cluster, end to end: kubefn installed from deploy/ (shared with
// platform-install.cases.ts), a function with a jetstream and a core NATS trigger deployed by
// the real `fn deploy` through a gateway pod, messages published from this process straight to
// the NATS pod that deploy/ runs (pod IPs answer from the host on both kinds of test node).
// The function (tests/fixtures/events) echoes the CloudEvent it got; its trigger's `output`
// subject brings every answer back here, so each message handled is counted by its ce-id, and
// the gateways' own counts (GET /system/function/<name> and /metrics of each gateway pod) say
// which gateway delivered it. Then the NATS pod is deleted: it comes back on its claim with
// every stream and the consumer's position, at a new address the gateways follow.

import assert from 'node:assert/strict';
import { copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { waitFor } from '@kubefn/platform/testing';
import { platformNamespace, type InstalledPlatform } from '../support/platform-install.js';
import { fixturesDir } from '../support/podman.js';

const timeout = 600_000;
const name = 'events';
const stream = 'KFEVENTS';
const subject = 'kfevents.in';
const coreSubject = 'kfevents.core';
const output = 'kfevents.out';
/** A stream of the test's own, never consumed: what is in it must outlive the NATS pod. */
const keptStream = 'KFKEPT';

let sharedPlatform: () => Promise<InstalledPlatform>;

/** Registers the suite on kubefn as `platform()` installs it on the shared test cluster. */
export function eventCases(platform: () => Promise<InstalledPlatform>): void {
  sharedPlatform = platform;
  describe('event triggers through the gateways of the cluster', { timeout }, suite);
}

/** What the fixture answers, as it arrives on the output subject. */
interface Echo {
  event: { id: string; source: string };
  body: string;
}

interface TriggerState {
  type: string;
  ready: boolean;
  error?: string;
  delivered: number;
  acked?: number;
  retried?: number;
  deadLettered?: number;
  succeeded?: number;
  failed?: number;
  dropped?: number;
  pending?: number;
  ackPending?: number;
}

interface Events {
  nats: { connected: boolean; server?: string; error?: string };
  triggers: TriggerState[];
}

function suite(): void {
  let p: InstalledPlatform;
  let nc: NatsConnection | undefined;
  /** Every answer that came back on the output subject, in order. */
  const echoes: Echo[] = [];

  const core = () => p.cluster.kc.makeApiClient(p.cluster.k8s.CoreV1Api);
  const fn = async (...args: string[]) => p.fn(['--gateway', (await p.gateways())[0]!, ...args], { KUBEFN_TOKEN: p.token });

  /** The ready NATS pod that is not on its way out. */
  const natsPod = async () => {
    const pods = await core().listNamespacedPod({ namespace: platformNamespace, labelSelector: 'app.kubernetes.io/name=kubefn-nats' });
    return pods.items.find((x) => !x.metadata?.deletionTimestamp && x.status?.podIP && x.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
  };

  /** The token NATS asks its clients for: the kubefn-nats-token Secret fn install made. */
  const natsToken = async () =>
    Buffer.from((await core().readNamespacedSecret({ name: 'kubefn-nats-token', namespace: platformNamespace })).data!.token!, 'base64').toString();

  /** Connects this process to the NATS pod and listens on the output subject. */
  const listen = async (): Promise<NatsConnection> => {
    const pod = await natsPod();
    assert.ok(pod, 'a ready NATS pod');
    const conn = await connect({ servers: `${pod.status!.podIP}:4222`, name: 'kubefn-cluster-test', token: await natsToken() });
    const sub: Subscription = conn.subscribe(output);
    void (async () => {
      for await (const m of sub) {
        try {
          echoes.push(m.json<Echo>());
        } catch {
          process.stderr.write(`# events: an answer that is not JSON on ${output}: ${m.string().slice(0, 200)}\n`);
        }
      }
    })();
    await conn.flush();
    return conn;
  };

  /** GET /system/function/<name> of each gateway pod: its `events`. */
  const eventsByGateway = async (): Promise<Map<string, Events>> => {
    const out = new Map<string, Events>();
    for (const gw of await p.gateways()) {
      const res = await fetch(`${gw}/system/function/${name}`, { headers: { authorization: `Bearer ${p.token}` } });
      assert.equal(res.status, 200, gw);
      out.set(gw, ((await res.json()) as { events: Events }).events);
    }
    return out;
  };

  const trigger = (e: Events, type: string) => e.triggers.find((t) => t.type === type)!;

  /** Waits until `done()`; on a timeout, fails with what the gateways say about the triggers. */
  const until = async (done: () => boolean, what: string, timeoutMs: number): Promise<void> => {
    try {
      await waitFor(done, { timeoutMs, what });
    } catch (err) {
      const states = await eventsByGateway().then((m) => JSON.stringify(Object.fromEntries(m)), (e: unknown) => String(e));
      throw new Error(`${(err as Error).message}; ${echoes.length} answers came back; the gateways say: ${states}`, { cause: err });
    }
  };

  /** The answers that came back for the given JetStream sequences, waiting until all have. */
  const handled = async (ids: string[], what: string): Promise<Echo[]> => {
    const wanted = new Set(ids);
    await until(() => new Set(echoes.filter((e) => wanted.has(e.event.id)).map((e) => e.event.id)).size === wanted.size, what, 120_000);
    return echoes.filter((e) => wanted.has(e.event.id));
  };

  before(async () => {
    p = await sharedPlatform();
    const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-e2e-events-'));
    await copyFile(path.join(fixturesDir, 'events', 'handler.js'), path.join(dir, 'handler.js'));
    await writeFile(
      path.join(dir, 'fn.yaml'),
      YAML.stringify({
        name,
        handler: 'handler.js',
        triggers: [
          { type: 'http' },
          // A few messages in flight per gateway, so both gateways take their share.
          { type: 'jetstream', stream, subject, output, maxInFlight: 4 },
          { type: 'nats', subject: coreSubject, queue: name, output },
        ],
        // One replica throughout: this is about delivery, not scale from zero.
        scale: { min: 1 },
      }),
    );
    nc = await listen();
    const started = performance.now();
    await fn('deploy', dir, ...p.insecure, '--json');
    process.stderr.write(`# events: fn deploy took ${Math.round(performance.now() - started)} ms\n`);
  });

  after(async () => {
    await nc?.close();
    if (p) await fn('delete', name).catch(() => {});
  });

  it('both gateways connect to the NATS of deploy/, found through the kubefn-nats Service, and consume the triggers', async () => {
    const natsAddress = `${(await natsPod())!.status!.podIP}:4222`;
    await waitFor(
      async () => {
        const all = await eventsByGateway();
        return all.size === 2 && [...all.values()].every((e) => e.nats.connected && trigger(e, 'jetstream')?.ready && trigger(e, 'nats')?.ready);
      },
      { timeoutMs: 60_000, what: 'both gateways connected with both triggers ready' },
    );
    for (const [gw, e] of await eventsByGateway()) {
      assert.equal(e.nats.server, natsAddress, `${gw} uses the NATS pod`);
    }
    // The replica answers through each gateway before any event is sent: what follows is the
    // steady state, not a cold start.
    for (const gw of await p.gateways()) {
      const res = await fetch(`${gw}/function/${name}`, { method: 'POST', body: 'hello' });
      const text = await res.text();
      assert.equal(res.status, 200, `${gw}: ${text}`);
      assert.equal((JSON.parse(text) as Echo).body, 'hello');
    }
  });

  it('NATS refuses a client without its token, or with a wrong one', async () => {
    const servers = `${(await natsPod())!.status!.podIP}:4222`;
    await assert.rejects(connect({ servers, name: 'kubefn-cluster-test-anonymous', maxReconnectAttempts: 0 }), /Authorization/i);
    await assert.rejects(connect({ servers, name: 'kubefn-cluster-test-wrong', token: 'not-the-token-of-nats', maxReconnectAttempts: 0 }), /Authorization/i);
  });

  it('every JetStream message is handled once, through both gateways, with no redelivery', async () => {
    const js = jetstream(nc!);
    const count = 200;
    const acks = await Promise.all(Array.from({ length: count }, (_, i) => js.publish(subject, `slow:${10 + (i % 3) * 10}`)));
    const ids = acks.map((a) => `${stream}-${a.seq}`);
    const started = performance.now();
    const got = await handled(ids, `the ${count} JetStream messages handled`);
    process.stderr.write(`# events: ${count} JetStream messages handled in ${Math.round(performance.now() - started)} ms\n`);
    assert.equal(got.length, count, `each message answered once (${got.length - count} extra answers)`);

    // The server delivered each message once: the consumer's delivery sequence is the number of
    // messages, and nothing is left pending, unacked or redelivered.
    const consumer = await (await jetstreamManager(nc!)).consumers.info(stream, name);
    assert.equal(consumer.delivered.stream_seq, acks.at(-1)!.seq);
    assert.equal(consumer.delivered.consumer_seq, acks.at(-1)!.seq, 'one delivery per message');
    assert.equal(consumer.num_redelivered, 0);
    assert.equal(consumer.num_ack_pending, 0);
    assert.equal(consumer.num_pending, 0);

    // Each gateway says how many it delivered: both took part, and together exactly every one.
    let total = 0;
    const byGateway: Record<string, number> = {};
    await waitFor(
      async () => {
        const all = await eventsByGateway();
        return [...all.values()].every((e) => trigger(e, 'jetstream').acked === trigger(e, 'jetstream').delivered);
      },
      { timeoutMs: 10_000, what: 'every delivery acked in the gateways' },
    );
    for (const [gw, e] of await eventsByGateway()) {
      const t = trigger(e, 'jetstream');
      byGateway[gw] = t.delivered;
      total += t.delivered;
      assert.equal(t.retried, 0, gw);
      assert.equal(t.deadLettered, 0, gw);
      // /metrics of the same pod agrees.
      const metrics = await (await fetch(`${gw}/metrics`)).text();
      const line = metrics.split('\n').find((l) => l.startsWith(`kubefn_events_delivered_total{function="${name}",trigger="jetstream:${subject}"}`));
      assert.equal(Number(line?.split(' ').at(-1)), t.delivered, `${gw} /metrics`);
    }
    process.stderr.write(`# events: JetStream deliveries per gateway ${JSON.stringify(byGateway)}\n`);
    assert.equal(total, count);
    for (const [gw, n] of Object.entries(byGateway)) assert.ok(n > 0, `${gw} delivered some of the messages`);
  });

  it('every core NATS message goes to one gateway of the queue group', async () => {
    const count = 100;
    const bodies = Array.from({ length: count }, (_, i) => `core-${i}`);
    for (const b of bodies) nc!.publish(coreSubject, b);
    await nc!.flush();
    const wanted = new Set(bodies);
    await until(() => new Set(echoes.filter((e) => wanted.has(e.body)).map((e) => e.body)).size === count, `the ${count} core NATS messages handled`, 60_000);
    const got = echoes.filter((e) => wanted.has(e.body));
    assert.equal(got.length, count, 'each core message handled once');
    for (const e of got) assert.equal(e.event.source, `nats://${coreSubject}`);
    let total = 0;
    for (const [gw, e] of await eventsByGateway()) {
      const t = trigger(e, 'nats');
      assert.ok(t.delivered > 0, `${gw} took part in the queue group`);
      assert.equal(t.dropped, 0);
      total += t.delivered;
    }
    assert.equal(total, count);
  });

  it('NATS deleted and back on its claim: streams and the consumer survive, the gateways follow it to its new address', async () => {
    // A stream of the test's own that nothing consumes: its messages must be there afterwards.
    const jsm = await jetstreamManager(nc!);
    await jsm.streams.add({ name: keptStream, subjects: ['kfkept.>'] });
    const js = jetstream(nc!);
    for (let i = 0; i < 20; i++) await js.publish(`kfkept.${i}`, `kept-${i}`);
    const was = { stream: (await jsm.streams.info(stream)).state.last_seq, consumer: (await jsm.consumers.info(stream, name)).delivered.stream_seq };
    const old = (await natsPod())!;
    await nc!.close();
    nc = undefined;

    const started = performance.now();
    await core().deleteNamespacedPod({ name: old.metadata!.name!, namespace: platformNamespace });
    await waitFor(async () => (await natsPod())?.metadata?.uid !== undefined && (await natsPod())?.metadata?.uid !== old.metadata!.uid, {
      timeoutMs: 180_000,
      what: 'a new NATS pod ready',
    });
    const fresh = (await natsPod())!;
    process.stderr.write(`# events: NATS pod replaced in ${Math.round(performance.now() - started)} ms (${old.status!.podIP} -> ${fresh.status!.podIP})\n`);
    assert.equal(fresh.spec?.volumes?.find((v) => v.name === 'data')?.persistentVolumeClaim?.claimName, 'data-kubefn-nats-0');

    nc = await listen();
    const jsm2 = await jetstreamManager(nc);
    const kept = await jsm2.streams.info(keptStream);
    assert.equal(kept.state.messages, 20, 'the messages of a stream nobody consumed are still there');
    assert.equal((await jsm2.streams.info(stream)).state.last_seq, was.stream, "the trigger's stream kept its sequence");
    assert.equal((await jsm2.consumers.info(stream, name)).delivered.stream_seq, was.consumer, 'the durable consumer kept its position');

    const address = `${fresh.status!.podIP}:4222`;
    await waitFor(
      async () => {
        const all = await eventsByGateway();
        return [...all.values()].every((e) => e.nats.connected && e.nats.server === address && trigger(e, 'jetstream').ready);
      },
      { timeoutMs: 120_000, what: `both gateways reconnected to ${address}` },
    );
    process.stderr.write(`# events: gateways consuming again ${Math.round(performance.now() - started)} ms after the NATS pod was deleted\n`);

    // Consumption goes on where it stopped: the next messages, and only them, once each.
    const acks = await Promise.all(Array.from({ length: 50 }, () => jetstream(nc!).publish(subject, 'after')));
    assert.equal(acks[0]!.seq > was.stream, true);
    const ids = acks.map((a) => `${stream}-${a.seq}`);
    const got = await handled(ids, 'the messages published after the restart handled');
    assert.equal(got.length, ids.length, 'each handled once');
    const consumer = await jsm2.consumers.info(stream, name);
    assert.equal(consumer.num_redelivered, 0);
    assert.equal(consumer.num_pending, 0);

    // Each gateway logged losing NATS and finding it again.
    for (const gw of await core().listNamespacedPod({ namespace: platformNamespace, labelSelector: 'app.kubernetes.io/name=kubefn-gateway' }).then((l) => l.items)) {
      const log = await core().readNamespacedPodLog({ name: gw.metadata!.name!, namespace: platformNamespace, container: 'gateway' });
      assert.match(log, /"msg":"disconnected from NATS; reconnecting"/, gw.metadata!.name);
      assert.match(log, /"msg":"reconnected to NATS"/, gw.metadata!.name);
      if (old.status!.podIP !== fresh.status!.podIP) assert.match(log, /"msg":"NATS servers changed"/, gw.metadata!.name);
    }
    await jsm2.streams.delete(keptStream);
  });
}
