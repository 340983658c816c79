// Source-mapped stack traces for a bundle, with its map read only when a stack is first
// formatted. `node --enable-source-maps` parses every map as its module loads: for a function
// bundle that is most of the time it takes to load. A warm runtime (warm.ts) runs without the
// flag and maps the bundle's frames itself, with node's own SourceMap class, the way node would
// print them.

import { readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const mapComment = '//# sourceMappingURL=';
const dataUrl = /^data:application\/json(?:;charset=utf-8)?;base64,/;

/** Maps frames in `file` (an absolute path) through its source map, read at the first stack formatted. */
export function mapStacksLazily(file: string): void {
  let map: SourceMap | null | undefined;
  // An ES module's frames name it by URL.
  const url = pathToFileURL(file).href;
  Error.prepareStackTrace = (error, frames) => {
    const lines = [header(error)];
    for (const frame of frames) {
      const text = String(frame);
      const line = frame.getLineNumber();
      const column = frame.getColumnNumber();
      const name = frame.getFileName();
      if ((name !== file && name !== url) || line === null || column === null) {
        lines.push(`    at ${text}`);
        continue;
      }
      map ??= readMap(file);
      const entry = map?.findEntry(line - 1, column - 1) as { originalSource?: string; originalLine?: number; originalColumn?: number } | undefined;
      if (!entry?.originalSource || entry.originalLine === undefined || entry.originalColumn === undefined) {
        lines.push(`    at ${text}`);
        continue;
      }
      const source = path.resolve(path.dirname(file), entry.originalSource);
      lines.push(`    at ${text.replace(`${name}:${line}:${column}`, `${source}:${entry.originalLine + 1}:${entry.originalColumn + 1}`)}`);
    }
    return lines.join('\n');
  };
}

/** "Error: message", as V8 starts a stack. */
function header(error: Error): string {
  try {
    return Error.prototype.toString.call(error);
  } catch {
    return '<error>';
  }
}

/** The bundle's map: inline (a data: URL) or a file next to it; null when it has none or it is unreadable. */
function readMap(file: string): SourceMap | null {
  try {
    const text = readFileSync(file, 'utf8');
    const at = text.lastIndexOf(mapComment);
    if (at < 0) return null;
    const url = text.slice(at + mapComment.length).trim();
    const json = dataUrl.test(url)
      ? Buffer.from(url.replace(dataUrl, ''), 'base64').toString('utf8')
      : readFileSync(path.resolve(path.dirname(file), decodeURIComponent(url)), 'utf8');
    return new SourceMap(JSON.parse(json) as ConstructorParameters<typeof SourceMap>[0]);
  } catch {
    return null;
  }
}
