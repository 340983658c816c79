// The image flags' help repeats two of the builder's names so that registering them loads no builder: they must not drift.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as builder from '@kubefn/builder';
import { defaultBase, hostBaseName } from './image-options.js';

describe('image options', () => {
  it("name the builder's host base and default base", () => {
    assert.equal(hostBaseName, builder.hostBaseName);
    assert.equal(defaultBase, builder.defaultBase);
  });
});
