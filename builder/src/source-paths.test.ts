import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultPathLimits, linkProblem, pathProblem, pathSegments } from './source-paths.js';

describe('pathProblem', () => {
  const limits = { maxPathLength: 16, maxDepth: 3 };
  const cases: [string, string | undefined][] = [
    ['a/b/c', undefined],
    ['./a//b/', undefined],
    ['a..b', undefined],
    ['', 'is empty'],
    ['a\0b', 'contains a NUL byte'],
    ['a'.repeat(17), 'is longer than 16 bytes'],
    ['é'.repeat(9), 'is longer than 16 bytes'], // 18 bytes in UTF-8
    ['/etc/passwd', 'is an absolute path'],
    ['a\\b', 'uses Windows path syntax (a backslash or drive letter)'],
    ['C:x', 'uses Windows path syntax (a backslash or drive letter)'],
    ['a/../b', 'has a ".." component'],
    ['..', 'has a ".." component'],
    ['a/b/c/d', 'is nested more than 3 deep'],
  ];
  for (const [name, want] of cases) {
    it(`${JSON.stringify(name)} -> ${want ?? 'fine'}`, () => assert.equal(pathProblem(name, limits), want));
  }

  it('allows the default depth and no more', () => {
    const deep = (n: number) => Array.from({ length: n }, () => 'd').join('/');
    assert.equal(pathProblem(deep(defaultPathLimits.maxDepth), defaultPathLimits), undefined);
    assert.match(pathProblem(deep(defaultPathLimits.maxDepth + 1), defaultPathLimits) ?? '', /nested more than/);
  });
});

describe('linkProblem', () => {
  const cases: [string, string, string | undefined][] = [
    ['a/l', 'b', undefined],
    ['a/l', '../b', undefined],
    ['a/b/l', '../../c', undefined],
    ['l', '../x', 'leads outside the archive'],
    ['a/l', '../..', 'leads outside the archive'],
    ['a/l', 'b/../../../x', 'leads outside the archive'],
    ['l', '/etc', 'is an absolute path'],
  ];
  for (const [at, target, want] of cases) {
    it(`${at} -> ${target}: ${want ?? 'inside'}`, () => assert.equal(linkProblem(pathSegments(at), target, defaultPathLimits), want));
  }
});
