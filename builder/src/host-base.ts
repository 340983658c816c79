// A minimal Node.js base image made from this machine's own node binary and the shared
// libraries it links: for machines that cannot pull a public Node image (air-gapped hosts, CI),
// and the smallest base that still runs every kubefn function.

import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { KubefnError } from '@kubefn/platform';
import { buildLayer, type Layer, type LayerFile } from './oci-layer.js';
import { fixedCreated, type BaseImage } from './oci-image.js';
import { hostTarget } from './native-platform.js';

const run = promisify(execFile);

export interface HostNodeBase {
  base: BaseImage;
  /** The one layer of the base: node, its libraries, CA certificates, /etc/passwd, /tmp. */
  layer: Layer;
  nodeVersion: string;
}

/** Where node lives inside the image; on PATH. */
export const hostBaseNodePath = '/usr/local/bin/node';
/** nobody:nogroup; replicas do not run as root. */
export const hostBaseUser = '65534:65534';

const caBundle = '/etc/ssl/certs/ca-certificates.crt';

/**
 * Builds the base image in memory. The same node binary and libraries give the same digest.
 * Linux only (it reads `ldd`); the layer is amd64 when this machine is.
 */
export async function hostNodeBase(nodePath: string = process.execPath): Promise<HostNodeBase> {
  if (process.platform !== 'linux') {
    throw new KubefnError('NOT_SUPPORTED', `a base image from the host's node needs Linux (this is ${process.platform})`, {
      hint: 'name a Node.js base image with --base instead',
    });
  }
  const [{ stdout: version }, linked] = await Promise.all([run(nodePath, ['--version']), linkedLibraries(nodePath)]);
  const libraries = [...new Set([...linked, ...(await cLibraryFamily(linked))])].sort();
  const files: LayerFile[] = [
    { path: hostBaseNodePath, content: await readFile(nodePath), mode: 0o755 },
    ...(await Promise.all(libraries.map(async (lib) => ({ path: lib, content: await readFile(lib), mode: 0o755 })))),
    { path: 'etc/passwd', content: Buffer.from('root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n') },
    { path: 'etc/group', content: Buffer.from('root:x:0:\nnogroup:x:65534:\n') },
    { path: 'tmp', content: Buffer.alloc(0), mode: 0o1777, directory: true },
  ];
  const ca = await readFile(caBundle).catch(() => undefined);
  if (ca) files.push({ path: caBundle, content: ca });
  const layer = await buildLayer(files);
  const nodeVersion = version.trim();
  const { libc } = hostTarget();
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  const base: BaseImage = {
    config: {
      architecture: arch,
      os: 'linux',
      created: fixedCreated,
      config: {
        Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'NODE_ENV=production', `NODE_VERSION=${nodeVersion.replace(/^v/, '')}`],
        User: hostBaseUser,
        WorkingDir: '/',
      },
      rootfs: { type: 'layers', diff_ids: [layer.diffId] },
      // The C library is read back by baseTarget(), to tell which native addons the image loads.
      history: [{ created: fixedCreated, created_by: `kubefn host-node base (node ${nodeVersion}${libc ? `, ${libc}` : ''})` }],
    },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer.digest, size: layer.blob.length }],
  };
  return { base, layer, nodeVersion };
}

/**
 * Parts of glibc that node itself does not link but prebuilt native addons do (sharp's libvips
 * links libresolv): tiny, and tied to the libc.so.6 beside them, so they come from this machine too.
 */
const cLibraryParts = ['libresolv.so.2', 'librt.so.1', 'libutil.so.1', 'libanl.so.1', 'libdl.so.2', 'libpthread.so.0'];

async function cLibraryFamily(linked: readonly string[]): Promise<string[]> {
  const libc = linked.find((l) => path.basename(l) === 'libc.so.6');
  if (!libc) return [];
  const found = await Promise.all(
    cLibraryParts.map(async (name) => {
      const file = path.join(path.dirname(libc), name);
      return (await stat(file).catch(() => null))?.isFile() ? file : undefined;
    }),
  );
  return found.filter((f): f is string => f !== undefined);
}

/** The absolute paths `ldd` lists for a binary, the dynamic loader included. */
async function linkedLibraries(binary: string): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await run('ldd', [binary]));
  } catch (err) {
    throw new KubefnError('BUILD_FAILED', `cannot list the libraries ${binary} links: ${(err as Error).message}`, {
      hint: 'ldd (Debian package libc-bin) must be on PATH to build a base image from the host',
    });
  }
  const paths = new Set<string>();
  for (const line of stdout.split('\n')) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (m) paths.add(m[1]!);
  }
  if (paths.size === 0) {
    throw new KubefnError('BUILD_FAILED', `${binary} links no shared libraries that ldd can see`, {
      hint: 'a statically linked node needs no base layer of libraries; use --base with a Node.js image',
    });
  }
  return [...paths].sort();
}
