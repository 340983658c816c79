// `fn up --autoscaler-config <file>` applies a changed file without a restart: the scale defaults
// `fn describe` shows move to the new values, and a bad file is refused with the last good kept.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { fnBin, newHome, repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const exec = promisify(execFile);
const slow = path.join(repoRoot, 'tests', 'fixtures', 'slow');

describe('the autoscaler config applied live in fn up', () => {
  let platform: RunningPlatform;
  let api: Api;
  let file: string;
  let home: string;

  before(async () => {
    home = await newHome();
    file = path.join(await mkdtemp(path.join(tmpdir(), 'kubefn-as-config-')), 'autoscaler.yaml');
    await writeFile(file, 'stable-window: 60s\ncontainer-concurrency-target-default: "100"\n');
    platform = await startPlatform(home, { args: ['--autoscaler-config', file] });
    api = new Api(platform.url, platform.token);
  });
  after(async () => {
    await platform?.stop();
  });

  it('takes a rewritten file at once, refuses a bad one, and takes one renamed over it', { timeout: 120_000 }, async () => {
    await api.deploy({ name: 'knobs', image: await api.upload(slow, 'handler.js'), scale: { min: 0, initial: 0 } });
    const scaling = async () => (await api.status('knobs')).scaling;
    assert.deepEqual((await scaling())?.stableWindow, { value: '60s', from: 'config' });

    await writeFile(file, 'stable-window: 20s\ncontainer-concurrency-target-default: "7"\n');
    await waitFor(async () => (await scaling())?.stableWindow?.value === '20s', { what: 'the new stable window reported', timeoutMs: 20_000 });
    assert.deepEqual((await scaling())?.target, { value: 7, from: 'config' });
    const applied = platform.output.find((l) => l.includes('autoscaler config applied'));
    assert.ok(applied, `one info line says the config was applied:\n${platform.output.slice(-20).join('\n')}`);
    assert.match(applied, /stable-window.*1m -> 20s/);
    // What fn describe prints from it.
    const described = await exec(process.execPath, [fnBin, 'describe', 'knobs'], { env: { ...process.env, KUBEFN_HOME: home, KUBEFN_GATEWAY: platform.url }, timeout: 60_000 });
    assert.match(described.stdout, /^Windows:\s+stable 20s \(config\),/m);
    assert.match(described.stdout, /^Target:\s+7 \(config\) in-flight/m);

    await writeFile(file, 'stable-window: 20s\npanic-threshold: "300"\n');
    await waitFor(() => platform.output.some((l) => l.includes('autoscaler config refused')), { what: 'the bad file refused', timeoutMs: 20_000 });
    assert.ok(platform.output.some((l) => l.includes('refused') && l.includes('panic-threshold')), 'the warning names the bad key');
    assert.deepEqual((await scaling())?.target, { value: 7, from: 'config' }, 'the last good config stays');

    // Saved as many editors do: a new file renamed over the old one.
    const tmp = `${file}.tmp`;
    await writeFile(tmp, 'stable-window: 40s\n');
    await rename(tmp, file);
    await waitFor(async () => (await scaling())?.stableWindow?.value === '40s', { what: 'the renamed-over file applied', timeoutMs: 20_000 });
    assert.deepEqual((await scaling())?.target, { value: 100, from: 'config' }, 'a key left out is back at its default');
  });
});
