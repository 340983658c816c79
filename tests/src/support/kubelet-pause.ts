// The sandbox image every pod's network namespace runs in (registry.k8s.io/pause:3.10.1, what
// kubeadm v1.34 uses): no registry is reachable from here, so it is Kubernetes' own pause
// (build/pause/linux/pause.c of the k8s.io/kubernetes module, found with `go list -m`) compiled
// with build/pause/Makefile's flags (gcc -Os -Wall -Werror -static), cached next to the other
// binaries, packed by kubefn's builder into an OCI archive (one layer: /pause, the entrypoint)
// that the node imports with `ctr images import`.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { assembleImage, buildLayer, scratchBase, writeOciArchive } from '@kubefn/builder';
import { binaryDir } from './control-plane.js';
import { repoRoot } from './platform-process.js';

const run = promisify(execFile);

/** The sandbox image containerd runs every pod's network namespace in (kubeadm's for v1.34). */
export const pauseImage = 'registry.k8s.io/pause:3.10.1';

/** Kubernetes' pause, compiled from the module's build/pause/linux/pause.c, cached next to the other binaries. */
export async function ensurePause(onProgress: (line: string) => void): Promise<string> {
  const version = pauseImage.split(':').pop()!;
  const file = path.join(binaryDir(), `pause-${version}`);
  if (await access(file, constants.X_OK).then(() => true, () => false)) return file;
  const moduleDir = path.join(repoRoot, 'tests', 'cluster', 'k8s');
  const env = { ...process.env, GOFLAGS: '-mod=mod' };
  const { stdout } = await run('go', ['list', '-m', '-json', 'k8s.io/kubernetes'], { cwd: moduleDir, env, maxBuffer: 1024 * 1024 });
  const source = path.join((JSON.parse(stdout) as { Dir: string }).Dir, 'build', 'pause', 'linux', 'pause.c');
  onProgress(`compiling ${source} into ${file}`);
  await mkdir(binaryDir(), { recursive: true });
  // Compiled aside and renamed into place: the cache never holds half a binary, and two processes
  // compiling at once each rename a complete one.
  const tmp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  try {
    // build/pause/Makefile's CFLAGS, with our own VERSION (printed by `pause -v`).
    await run('gcc', ['-Os', '-Wall', '-Werror', '-static', `-DVERSION=v${version}-kubefn`, '-o', tmp, source]);
    await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
  return file;
}

export async function pauseArchive(binary: string): Promise<Buffer> {
  const layer = await buildLayer([{ path: 'pause', content: await readFile(binary), mode: 0o755 }]);
  const image = assembleImage(scratchBase(), layer, { entrypoint: ['/pause'], createdBy: 'kubefn tests: pause.c of k8s.io/kubernetes, gcc -static' });
  return writeOciArchive(image, [{ digest: layer.digest, content: layer.blob }], pauseImage);
}
