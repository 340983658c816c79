// What a kubelet node needs of the machine: the prerequisites, checked before anything starts so
// that a missing one is named up front, and the host-wide lock.
//
// Needs: Linux, root, containerd (with ctr and containerd-shim-runc-v2), runc, iptables, ip
// (iproute2), gcc with a static libc (libc6-dev, for the pause binary),
// /usr/lib/cni/{bridge,host-local,loopback} (containernetworking-plugins), and Go for the
// Kubernetes binaries. kubeletNodePrerequisites() checks all but Go and libc6-dev (the control
// plane needs Go anyway, and gcc says so when it lacks the static libc).
//
// kube-proxy's iptables chains are host-wide (and every test cluster has the same 10.96.0.1), so
// one kubelet node runs per machine at a time: a lock file in /run names the process that has it;
// startKubeletNode fails with KubeletNodeBusyError or waits, as asked.

import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { acquirePidLock, PidLockBusyError, releasePidLock } from './pid-lock.js';

/** The host-wide lock: one kubelet node per machine (kube-proxy's iptables chains are global). */
const lockFile = '/run/kubefn-kubelet-node.lock';
/** Where containernetworking-plugins installs the CNI plugins. */
export const cniBinDir = '/usr/lib/cni';

/** Another process runs a kubelet node on this machine. */
export class KubeletNodeBusyError extends Error {
  constructor(readonly pid: number) {
    super(`${pid === process.pid ? 'this process' : `process ${pid}`} runs a kubelet node on this machine (${lockFile}); one at a time`);
  }
}

const searchPath = (): string[] => [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];

/** The executable `command` on PATH or in the sbin folders, if any. */
export function which(command: string): string | undefined {
  for (const dir of searchPath()) {
    const file = path.join(dir, command);
    if (executable(file)) return file;
  }
  return undefined;
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Each command the node runs, and the Debian package it comes in. */
const commands: [string, string][] = [
  ['containerd', 'containerd'], ['containerd-shim-runc-v2', 'containerd'], ['ctr', 'containerd'], ['runc', 'runc'],
  ['iptables', 'iptables'], ['iptables-save', 'iptables'], ['ip', 'iproute2'], ['gcc', 'gcc'],
];

/**
 * What this machine lacks to run a kubelet node, one entry each ("root (this process runs as uid
 * 1000)", "containerd (apt-get install containerd)", ...); empty when it can. Synchronous, so a
 * test file can name its node kind when it registers its tests.
 */
export function kubeletNodePrerequisites(): string[] {
  if (process.platform !== 'linux') return [`Linux (this is ${process.platform})`];
  const missing: string[] = [];
  const uid = process.getuid?.();
  if (uid !== 0) missing.push(`root (this process runs as uid ${uid})`);
  for (const [command, pkg] of commands) if (!which(command)) missing.push(`${command} (apt-get install ${pkg})`);
  for (const plugin of ['bridge', 'host-local', 'loopback']) {
    const file = path.join(cniBinDir, plugin);
    if (!executable(file)) missing.push(`${file} (apt-get install containernetworking-plugins)`);
  }
  return missing;
}

/** Whether this machine can run a kubelet node (kubeletNodePrerequisites() finds nothing missing). */
export async function kubeletNodeAvailable(): Promise<boolean> {
  return kubeletNodePrerequisites().length === 0;
}

// ---------------------------------------------------------------------------------------------
// The host-wide lock

/**
 * Takes the lock for this process; resolves whether a dead holder's leftovers must be swept.
 * Throws KubeletNodeBusyError when a live process holds it past `waitMs`.
 */
export async function acquireLock(waitMs: number, onProgress: (line: string) => void): Promise<{ stale: boolean }> {
  try {
    return await acquirePidLock(lockFile, { waitMs, onWait: (holder) => onProgress(`waiting for the kubelet node of process ${holder} to go (one per machine)`) });
  } catch (err) {
    if (err instanceof PidLockBusyError) throw new KubeletNodeBusyError(err.holder);
    throw err;
  }
}

export function releaseLock(): void {
  releasePidLock(lockFile);
}
