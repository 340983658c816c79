// Path checks shared by packing a function directory and extracting an upload: what a name in a
// source archive may be, judged by its text alone, so both sides agree on what is allowed.

import path from 'node:path';

export interface PathLimits {
  /** Longest entry name or link target, in bytes. */
  maxPathLength: number;
  /** Most path segments in an entry name. */
  maxDepth: number;
}

export const defaultPathLimits: Readonly<PathLimits> = Object.freeze({ maxPathLength: 1024, maxDepth: 64 });

/** Why `p`, an entry name or link target, is not a plain relative "/" path, or undefined if it is. */
function syntaxProblem(p: string, maxPathLength: number): string | undefined {
  if (p === '') return 'is empty';
  if (p.includes('\0')) return 'contains a NUL byte';
  if (Buffer.byteLength(p) > maxPathLength) return `is longer than ${maxPathLength} bytes`;
  if (p.startsWith('/')) return 'is an absolute path';
  if (p.includes('\\') || /^[A-Za-z]:/.test(p)) return 'uses Windows path syntax (a backslash or drive letter)';
  return undefined;
}

/** Why `name` is not a safe path inside the archive, or undefined if it is. */
export function pathProblem(name: string, limits: PathLimits): string | undefined {
  const why = syntaxProblem(name, limits.maxPathLength);
  if (why) return why;
  const segments = pathSegments(name);
  if (segments.includes('..')) return 'has a ".." component';
  if (segments.length > limits.maxDepth) return `is nested more than ${limits.maxDepth} deep`;
  return undefined;
}

/** "./a//b/" -> ["a", "b"]; safe only for names pathProblem accepted. */
export function pathSegments(name: string): string[] {
  return name.split('/').filter((s) => s !== '' && s !== '.');
}

/** Why a symlink at `segments` to `target` leaves the archive, judged by its text alone. */
export function linkProblem(segments: string[], target: string, limits: Pick<PathLimits, 'maxPathLength'>): string | undefined {
  const why = syntaxProblem(target, limits.maxPathLength);
  if (why) return why;
  const resolved = path.posix.normalize(path.posix.join(...segments.slice(0, -1), target));
  return resolved === '..' || resolved.startsWith('../') ? 'leads outside the archive' : undefined;
}

/** Whether `p` is `root` or under it; both absolute, with symlinks already resolved. */
export function isInside(root: string, p: string): boolean {
  return p === root || p.startsWith(root + path.sep);
}

/** 0o755 if any execute bit is set, else 0o644: no setuid, nothing group or world writable. */
export function fileMode(mode: number): number {
  return mode & 0o111 ? 0o755 : 0o644;
}

/** A name for an error message: JSON-quoted, cut at 200 characters. */
export function quote(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}...` : name);
}
