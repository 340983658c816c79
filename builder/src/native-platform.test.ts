import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { baseTarget, hostBaseName, type ResolvedBase } from './image-build.js';
import { binaryPlatform, headerPlatform, hostTarget, runsOn } from './native-platform.js';
import { scratchBase } from './oci-image.js';

describe('native platforms', () => {
  let dir: string;
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function file(name: string, bytes: Buffer): Promise<string> {
    dir ??= await mkdtemp(path.join(tmpdir(), 'kubefn-native-platform-'));
    const f = path.join(dir, name);
    await writeFile(f, bytes);
    return f;
  }

  it('reads ELF, Mach-O and PE headers', async () => {
    const elf = Buffer.alloc(80);
    elf.writeUInt32BE(0x7f454c46, 0);
    elf[5] = 1;
    elf.writeUInt16LE(0xb7, 18);
    elf.write('ld-musl-aarch64.so.1', 64);
    assert.deepEqual(await headerPlatform(await file('a.node', elf)), { os: 'linux', arch: 'arm64', libc: 'musl' });
    const macho = Buffer.from([0xcf, 0xfa, 0xed, 0xfe, 0x07, 0, 0, 0x01]);
    assert.deepEqual(await headerPlatform(await file('b.node', macho)), { os: 'darwin', arch: 'x64' });
    const pe = Buffer.alloc(0x90);
    pe.write('MZ', 0);
    pe.writeUInt32LE(0x80, 0x3c);
    pe.writeUInt16LE(0x8664, 0x84);
    assert.deepEqual(await headerPlatform(await file('c.node', pe)), { os: 'win32', arch: 'x64' });
    assert.equal(await headerPlatform(await file('d.node', Buffer.from('not a binary'))), undefined);
  });

  it("prefers a platform package's os, cpu and libc fields to the header", async () => {
    const f = await file('e.node', Buffer.from('whatever'));
    assert.deepEqual(await binaryPlatform(f, { os: ['linux'], cpu: ['arm64'], libc: ['musl'] }), { os: 'linux', arch: 'arm64', libc: 'musl' });
  });

  it('matches libc only when both sides name one', () => {
    assert.ok(runsOn({ os: 'linux', arch: 'x64', libc: 'glibc' }, { os: 'linux', arch: 'x64', libc: 'glibc' }));
    assert.ok(runsOn({ os: 'linux', arch: 'x64' }, { os: 'linux', arch: 'x64', libc: 'musl' }));
    assert.ok(!runsOn({ os: 'linux', arch: 'x64', libc: 'glibc' }, { os: 'linux', arch: 'x64', libc: 'musl' }));
    assert.ok(!runsOn({ os: 'linux', arch: 'arm64' }, { os: 'linux', arch: 'x64' }));
    assert.ok(runsOn({ os: 'darwin', arch: 'universal' }, { os: 'darwin', arch: 'arm64' }));
  });

  it("tells a base image's target from its config, name and history", () => {
    const base = (name: string, architecture: string, createdBy: string[] = []): ResolvedBase => {
      const b = scratchBase();
      b.config = { ...b.config, architecture, history: createdBy.map((c) => ({ created_by: c })) };
      return { name, base: b, source: undefined, blobs: new Map() };
    };
    assert.deepEqual(baseTarget(base('docker.io/library/node:20-bookworm-slim', 'amd64')), { os: 'linux', arch: 'x64', libc: 'glibc' });
    assert.deepEqual(baseTarget(base('docker.io/library/node:20-alpine', 'arm64')), { os: 'linux', arch: 'arm64', libc: 'musl' });
    assert.deepEqual(baseTarget(base('registry.local/node:20', 'amd64', ['ADD alpine-minirootfs-3.20.3-x86_64.tar.gz /'])).libc, 'musl');
    assert.deepEqual(baseTarget(base('127.0.0.1:5000/kubefn/node-base:host', 'amd64', ['kubefn host-node base (node v20.20.2, musl)'])).libc, 'musl');
    assert.deepEqual(baseTarget(base('127.0.0.1:5000/kubefn/node-base:host', 'amd64', ['kubefn host-node base (node v20.20.2)'])).libc, 'glibc');
    assert.equal(baseTarget(base(hostBaseName, 'amd64')).libc, hostTarget().libc);
  });
});
