// Which machine a native addon (a `.node` file) was built for, and whether a target can load it:
// read from the platform package that holds it, the prebuilds/<os>-<arch> folder it sits in, or
// the binary's own header (ELF, Mach-O, PE).

import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { familySync } from 'detect-libc';

export type Libc = 'glibc' | 'musl';

/** Where a function runs: node's `process.platform` and `process.arch` names, and the C library on Linux. */
export interface NativeTarget {
  os: string;
  arch: string;
  libc?: Libc | undefined;
}

/** A binary's platform; an absent `libc` (or arch "universal" on darwin) loads on either. */
export type NativePlatform = NativeTarget;

/** This machine: the target of the process driver, and of an image built from this machine's node. */
export function hostTarget(): NativeTarget {
  const libc = process.platform === 'linux' ? (familySync() ?? undefined) : undefined;
  return { os: process.platform, arch: process.arch, libc: libc === 'glibc' || libc === 'musl' ? libc : undefined };
}

/** "linux-x64-glibc", "darwin-arm64": how platforms are named in messages and in `Bundle.natives`. */
export function formatPlatform(p: NativePlatform): string {
  return [p.os, p.arch, ...(p.libc ? [p.libc] : [])].join('-');
}

export function runsOn(binary: NativePlatform, target: NativeTarget): boolean {
  if (binary.os !== target.os) return false;
  if (binary.arch !== target.arch && !(binary.os === 'darwin' && binary.arch === 'universal')) return false;
  return !binary.libc || !target.libc || binary.libc === target.libc;
}

/** OCI image architectures in node's names. */
const ociArch: Record<string, string> = { amd64: 'x64', arm64: 'arm64', arm: 'arm', '386': 'ia32', ppc64le: 'ppc64', s390x: 's390x', riscv64: 'riscv64' };

export function archFromOci(architecture: string): string {
  return ociArch[architecture] ?? architecture;
}

/** What a platform package's package.json says it is for (npm's `os`, `cpu` and `libc` fields). */
export interface PackagePlatformFields {
  os?: unknown;
  cpu?: unknown;
  libc?: unknown;
}

function single(v: unknown): string | undefined {
  const list = Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
  const positive = list.filter((x): x is string => typeof x === 'string' && !x.startsWith('!'));
  return positive.length === 1 ? positive[0] : undefined;
}

/**
 * The platform of the `.node` file at `file`. `pkg` is the package.json of the package that
 * holds it: a platform package (`@img/sharp-linux-x64`, `@swc/core-linux-x64-gnu`) names its
 * os, cpu and libc there; prebuildify names its folders `prebuilds/<os>-<arch>` and tags
 * files `.glibc.node` / `.musl.node`; anything else is read from the binary itself.
 */
export async function binaryPlatform(file: string, pkg: PackagePlatformFields): Promise<NativePlatform | undefined> {
  const os = single(pkg.os);
  const cpu = single(pkg.cpu);
  if (os && cpu) {
    const libc = single(pkg.libc);
    return { os, arch: cpu, libc: libc === 'glibc' || libc === 'musl' ? libc : os === 'linux' ? await elfLibc(file) : undefined };
  }
  const prebuild = /(?:^|[/\\])prebuilds[/\\]([a-z0-9]+)-([a-z0-9]+)[/\\]/.exec(file);
  if (prebuild) {
    const base = path.basename(file);
    const libc = base.includes('musl') ? 'musl' : base.includes('glibc') ? 'glibc' : prebuild[1] === 'linux' ? await elfLibc(file) : undefined;
    return { os: prebuild[1]!, arch: prebuild[2]!, libc };
  }
  return headerPlatform(file);
}

const elfMachines: Record<number, string> = { 0x03: 'ia32', 0x28: 'arm', 0x3e: 'x64', 0xb7: 'arm64', 0x15: 'ppc64', 0x16: 's390x', 0xf3: 'riscv64' };
const machoCpus: Record<number, string> = { 0x01000007: 'x64', 0x0100000c: 'arm64', 7: 'ia32' };
const peMachines: Record<number, string> = { 0x8664: 'x64', 0xaa64: 'arm64', 0x14c: 'ia32' };

/** The platform in a binary's header, or undefined when it is none of ELF, Mach-O or PE. */
export async function headerPlatform(file: string): Promise<NativePlatform | undefined> {
  const head = Buffer.alloc(4096);
  const handle = await open(file, 'r');
  let n: number;
  try {
    ({ bytesRead: n } = await handle.read(head, 0, head.length, 0));
  } finally {
    await handle.close();
  }
  const h = head.subarray(0, n);
  if (n >= 20 && h.readUInt32BE(0) === 0x7f454c46) {
    const machine = h[5] === 2 ? h.readUInt16BE(18) : h.readUInt16LE(18);
    // EI_OSABI 9 is FreeBSD; Linux binaries say 0 (System V) or 3.
    const os = h[7] === 9 ? 'freebsd' : 'linux';
    return { os, arch: elfMachines[machine] ?? `elf-${machine}`, libc: os === 'linux' ? await elfLibc(file) : undefined };
  }
  if (n >= 8) {
    const magic = h.readUInt32BE(0);
    if (magic === 0xcafebabe) return { os: 'darwin', arch: 'universal' };
    if (magic === 0xcffaedfe || magic === 0xcefaedfe) return { os: 'darwin', arch: machoCpus[h.readUInt32LE(4)] ?? 'unknown' };
  }
  if (n >= 0x40 && h[0] === 0x4d && h[1] === 0x5a) {
    const pe = h.readUInt32LE(0x3c);
    const machine = pe + 6 <= n ? h.readUInt16LE(pe + 4) : 0;
    return { os: 'win32', arch: peMachines[machine] ?? 'unknown' };
  }
  return undefined;
}

/**
 * The C library a Linux shared object links: musl's loader and libc are named `ld-musl-*` /
 * `libc.musl-*`, glibc's symbols are versioned `GLIBC_*`. Undefined when it names neither
 * (statically linked), so it loads on either.
 */
async function elfLibc(file: string): Promise<Libc | undefined> {
  const bytes = await readFile(file);
  if (bytes.includes('ld-musl-') || bytes.includes('libc.musl-')) return 'musl';
  if (bytes.includes('GLIBC_')) return 'glibc';
  return undefined;
}
