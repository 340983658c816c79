// Packs a function directory (trusted: the developer's own) into a reproducible tar.gz for upload
// to the build service, leaving out what .kubefnignore lists.

import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { KubefnError } from '@kubefn/platform';
import { reproducibleGzip } from './gzip.js';
import { writeTar, type TarEntry } from './oci-layer.js';
import { defaultPathLimits, fileMode, isInside, pathProblem, quote } from './source-paths.js';

const MiB = 1024 * 1024;

export interface PackOptions {
  /** Most bytes of file content; default 100 MiB. */
  maxBytes?: number;
  /** Most files and directories; default 20 000. */
  maxEntries?: number;
}

export interface PackedSource {
  /** The tar.gz to upload. */
  archive: Buffer;
  files: number;
  /** Bytes of file content, before compression. */
  bytes: number;
}

/** Never packed: version control, kubefn's own state, tool caches. Same syntax as .kubefnignore. */
const alwaysIgnored = ['.git', '.kubefn', '/node_modules/.cache'];
const ignoreHint = 'list build output, data and anything else the function does not need in .kubefnignore';

/**
 * A reproducible tar.gz of `dir` for upload: files and directories in byte order, fixed times and
 * owners, modes 0o755 (executable) or 0o644. A symlink is stored as the file it points to, and
 * only if that file is inside `dir`. `.kubefnignore` in `dir` lists paths to leave out, one per
 * line: `#` comments, `name` matches at any depth, a pattern with a `/` is anchored at `dir`, a
 * trailing `/` matches directories only, `*` matches within one path segment; no `!` or `**`.
 */
export async function packSource(dir: string, options: PackOptions = {}): Promise<PackedSource> {
  const maxBytes = options.maxBytes ?? 100 * MiB;
  const maxEntries = options.maxEntries ?? 20_000;
  const root = await realpath(dir);
  const ignored = ignoreMatcher([...alwaysIgnored, ...(await readIgnoreFile(root))]);
  const tooLarge = (what: string) =>
    new KubefnError('BODY_TOO_LARGE', `${dir} has more than ${what}`, { hint: ignoreHint });
  const entries: TarEntry[] = [];
  let files = 0;
  let bytes = 0;

  const walk = async (rel: string): Promise<void> => {
    for (const d of await readdir(path.join(root, rel), { withFileTypes: true })) {
      const child = rel === '' ? d.name : `${rel}/${d.name}`;
      if (ignored(child, d.isDirectory())) continue;
      if (!d.isDirectory() && !d.isFile() && !d.isSymbolicLink()) continue; // sockets, FIFOs: not source
      const why = pathProblem(child, defaultPathLimits);
      if (why) throw new KubefnError('BAD_REQUEST', `cannot pack ${quote(child)}: it ${why}`, { hint: ignoreHint });
      if (entries.length >= maxEntries) throw tooLarge(`${maxEntries} files and directories`);
      if (d.isDirectory()) {
        entries.push({ name: `${child}/`, mode: 0o755 });
        await walk(child);
        continue;
      }
      const file = d.isSymbolicLink() ? await followLink(root, child) : path.join(root, child);
      const st = await stat(file);
      if (bytes + st.size > maxBytes) throw tooLarge(`${maxBytes} bytes of files`);
      bytes += st.size;
      files++;
      entries.push({ name: child, mode: fileMode(st.mode), content: await readFile(file) });
    }
  };
  await walk('');

  // Byte-wise order, directories as "<dir>/" so each comes right before its contents (as buildLayer).
  entries.sort((x, y) => Buffer.compare(Buffer.from(x.name), Buffer.from(y.name)));
  const archive = await reproducibleGzip(await writeTar(entries));
  return { archive, files, bytes };
}

/** Follows a symlink inside the packed directory to the file it names, if that stays inside. */
async function followLink(root: string, rel: string): Promise<string> {
  const hint = 'replace the link with the file itself, or list it in .kubefnignore';
  const real = await realpath(path.join(root, rel)).catch(() => {
    throw new KubefnError('BAD_REQUEST', `cannot pack ${quote(rel)}: it is a broken symlink`, { hint });
  });
  if (!isInside(root, real)) {
    throw new KubefnError('BAD_REQUEST', `cannot pack ${quote(rel)}: it is a symlink to ${real}, outside ${root}`, { hint });
  }
  if (!(await stat(real)).isFile()) {
    throw new KubefnError('BAD_REQUEST', `cannot pack ${quote(rel)}: only symlinks to files are packed`, { hint });
  }
  return real;
}

async function readIgnoreFile(root: string): Promise<string[]> {
  try {
    return (await readFile(path.join(root, '.kubefnignore'), 'utf8')).split(/\r?\n/);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Compiles ignore lines (syntax in packSource's comment) into a test of a relative path. */
function ignoreMatcher(lines: string[]): (rel: string, isDirectory: boolean) => boolean {
  const rules = lines
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((line) => {
      if (line.startsWith('!')) {
        throw new KubefnError('INVALID_SPEC', `.kubefnignore: "!" patterns are not supported (${line})`);
      }
      const body = line.replace(/^\/+|\/+$/g, '');
      const glob = body.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*');
      return {
        re: new RegExp(`^${glob}$`),
        anchored: line.startsWith('/') || body.includes('/'),
        directoryOnly: line.endsWith('/'),
      };
    });
  return (rel, isDirectory) =>
    rules.some((r) => (isDirectory || !r.directoryOnly) && r.re.test(r.anchored ? rel : path.posix.basename(rel)));
}
