// fn.yaml loading: defaults filled, errors naming the file, the field and its line.

import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadFnYaml } from './fn-yaml.js';

let root: string;
before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kubefn-fn-yaml-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function fnDir(name: string, yaml: string): Promise<string> {
  const dir = path.join(root, name);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'fn.yaml'), yaml);
  return dir;
}

interface ErrorShape {
  code: string;
  message: string;
  hint?: string;
  fields?: { field: string; message: string }[];
}

async function loadError(target: string, overrides = {}): Promise<ErrorShape> {
  try {
    await loadFnYaml(target, overrides);
  } catch (err) {
    return err as ErrorShape;
  }
  assert.fail(`expected ${target} to fail`);
}

describe('loadFnYaml', () => {
  it('loads a good file with defaults filled in', async () => {
    const dir = await fnDir('good', 'name: hello\nscale:\n  max: 3\nenv:\n  GREETING: hi\n');
    const loaded = await loadFnYaml(dir);
    assert.equal(loaded.file, path.join(dir, 'fn.yaml'));
    assert.equal(loaded.dir, dir);
    assert.equal(loaded.spec.name, 'hello');
    assert.equal(loaded.spec.handler, 'handler.js');
    assert.equal(loaded.spec.scale.max, 3);
    assert.equal(loaded.spec.scale.min, 0);
    assert.equal(loaded.spec.timeout, '30s');
    assert.deepEqual(loaded.spec.env, { GREETING: 'hi' });
    assert.deepEqual(loaded.spec.triggers, [{ type: 'http' }]);
  });

  it('accepts the path of the file itself', async () => {
    const dir = await fnDir('by-file', 'name: by-file\n');
    assert.equal((await loadFnYaml(path.join(dir, 'fn.yaml'))).spec.name, 'by-file');
  });

  it('names the file, the field and its line for a bad field', async () => {
    const dir = await fnDir('bad-field', 'name: hello\nscale:\n  min: 1\n  maxx: 3\ntimeout: soon\n');
    const err = await loadError(dir);
    assert.equal(err.code, 'INVALID_SPEC');
    assert.match(err.message, /bad-field[/\\]fn\.yaml/);
    const byField = Object.fromEntries((err.fields ?? []).map((f) => [f.field, f.message]));
    assert.match(byField['scale.maxx'] ?? '', /unknown field \[.*fn\.yaml:4:3\]/);
    assert.match(byField.timeout ?? '', /duration.*"soon".*fn\.yaml:5:1\]/);
  });

  it('reports cross-field rules at the field they name', async () => {
    const dir = await fnDir('min-max', 'name: hello\nscale:\n  min: 5\n  max: 2\n');
    const err = await loadError(dir);
    assert.deepEqual(err.fields?.map((f) => f.field), ['scale.min']);
    assert.match(err.fields?.[0]?.message ?? '', /must be <= scale.max \(5 > 2\) \[.*fn\.yaml:3:3\]/);
  });

  it('applies command-line overrides and attributes their errors to the flag', async () => {
    const dir = await fnDir('overrides', 'name: hello\nenv:\n  A: "1"\n');
    const loaded = await loadFnYaml(dir, { name: 'other', env: { B: '2' }, min: 1, max: 4 });
    assert.equal(loaded.spec.name, 'other');
    assert.deepEqual(loaded.spec.env, { A: '1', B: '2' });
    assert.equal(loaded.spec.scale.min, 1);
    assert.equal(loaded.spec.scale.max, 4);

    const err = await loadError(dir, { env: { PORT: '1' } });
    assert.match(err.fields?.[0]?.message ?? '', /reserved.*\[from --env\]/);
  });

  it('points at the line of a YAML syntax error', async () => {
    const dir = await fnDir('syntax', 'name: hello\nname: again\n');
    const err = await loadError(dir);
    assert.equal(err.code, 'INVALID_SPEC');
    assert.match(err.message, /not valid YAML/);
    assert.match(err.fields?.[0]?.field ?? '', /fn\.yaml:2:1$/);
  });

  it('explains an empty file and a file that is not a mapping', async () => {
    assert.match((await loadError(await fnDir('empty', '# nothing\n'))).message, /is empty/);
    assert.match((await loadError(await fnDir('list', '- a\n- b\n'))).message, /must be a mapping/);
  });

  it('tells the user to run fn init when there is no fn.yaml', async () => {
    const dir = path.join(root, 'no-yaml');
    await mkdir(dir);
    const err = await loadError(dir);
    assert.equal(err.code, 'NOT_FOUND');
    assert.match(err.message, /no fn\.yaml in/);
    assert.match(err.hint ?? '', /fn init/);
    assert.match((await loadError(path.join(root, 'missing'))).hint ?? '', /fn init/);
  });
});
