import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeFailure, StderrTail, type ReplicaExit } from './replica.js';
import { loadErrorBody, rolloutState, type RolloutView } from './rollout.js';
import { formatLoadFailure, parseLoadFailure } from './runtime-contract.js';

const view = (v: Partial<RolloutView>): RolloutView => ({ replicas: 1, readyReplicas: 1, updatedReplicas: 1, generation: 2, observedGeneration: 2, ...v });

describe('rolloutState', () => {
  const cases: [string, Partial<RolloutView>, string][] = [
    ['every ready replica runs the new spec', {}, 'done:updated'],
    ['scaled to zero with the spec applied: the next call starts the new version', { replicas: 0, readyReplicas: 0, updatedReplicas: 0 }, 'done:at-zero'],
    ['an old replica still answers next to a new one', { replicas: 1, readyReplicas: 2, updatedReplicas: 1 }, 'progressing'],
    ['only the old replica is ready', { readyReplicas: 1, updatedReplicas: 0 }, 'progressing'],
    ['no replica ready yet', { readyReplicas: 0, updatedReplicas: 0 }, 'progressing'],
    ['the platform has not applied the spec yet, even at zero', { replicas: 0, readyReplicas: 0, updatedReplicas: 0, observedGeneration: 1 }, 'progressing'],
    ['at zero wanted, an old replica still answering', { replicas: 0, readyReplicas: 1, updatedReplicas: 0 }, 'progressing'],
    ['two of three wanted, both new', { replicas: 3, readyReplicas: 2, updatedReplicas: 2 }, 'done:updated'],
  ];
  for (const [what, v, want] of cases) {
    it(what, () => {
      const s = rolloutState(view(v));
      assert.equal(s.state === 'done' ? `done:${s.reason}` : s.state, want);
    });
  }

  it('fails at once on a load error of the applied spec, whatever the counts', () => {
    const loadError = { code: 'LOAD_FAILED', message: 'init() threw: boom', location: 'handler.js:3:9' };
    const s = rolloutState(view({ readyReplicas: 1, updatedReplicas: 0, loadError }));
    assert.deepEqual(s, { state: 'failed', error: loadError });
  });
});

describe('load failures on the wire', () => {
  it('round-trips through the runtime line and is found in a longer termination message', () => {
    const line = formatLoadFailure({ stage: 'import', message: 'boom', location: 'handler.js:4:7' });
    assert.deepEqual(parseLoadFailure(line), { stage: 'import', message: 'boom', location: 'handler.js:4:7' });
    assert.deepEqual(parseLoadFailure(`{"level":"error"}\nsome stack\n${line}\n`)?.location, 'handler.js:4:7');
  });

  it('ignores lines that only look like one, and bounds the message', () => {
    assert.equal(parseLoadFailure('kubefn:load-failed not json'), undefined);
    assert.equal(parseLoadFailure('kubefn:load-failed {"stage":"import"}'), undefined);
    assert.equal(parseLoadFailure('Error: boom'), undefined);
    const long = parseLoadFailure(formatLoadFailure({ stage: 'init', message: 'x'.repeat(5000) }));
    assert.equal(long?.message.length, 1000);
  });

  it('makes a LOAD_FAILED error naming the stage, with the location and a hint to the logs', () => {
    const body = loadErrorBody('hello', { stage: 'init', message: 'db down', location: 'handler.js:3:9' });
    assert.equal(body.code, 'LOAD_FAILED');
    assert.equal(body.message, 'init() threw: db down');
    assert.equal(body.location, 'handler.js:3:9');
    assert.match(body.hint ?? '', /fn logs hello/);
  });

  it('a replica that reported a load failure before ready failed to load, not to start', () => {
    const tail = new StderrTail();
    tail.add('some warning');
    tail.add(formatLoadFailure({ stage: 'import', message: 'boom', location: 'handler.js:4:7' }));
    assert.deepEqual(tail.lines(), ['some warning'], 'the load-failed line is not repeated in the stderr tail');
    const exit: ReplicaExit = { code: 78, signal: null, phase: 'starting', requested: undefined, error: undefined, stderrTail: tail.lines(), loadFailure: tail.loadFailure() };
    const failure = describeFailure({ id: 'hello-1' }, exit, 30_000, undefined);
    assert.equal(failure.code, 'LOAD_FAILED');
    assert.equal(failure.location, 'handler.js:4:7');
    assert.match(failure.message, /hello-1: the handler module threw while loading: boom \(at handler\.js:4:7\)/);
    // Killed by the start timeout: whatever it printed, that is not a load failure.
    assert.equal(describeFailure({ id: 'hello-1' }, { ...exit, requested: 'start-timeout' }, 30_000, undefined).code, 'START_FAILED');
  });
});
