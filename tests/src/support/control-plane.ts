// A real Kubernetes control plane on loopback for the cluster tests: etcd from Debian, and
// kube-apiserver, kube-controller-manager and kube-scheduler built from the k8s.io/kubernetes Go
// module (tests/cluster/k8s) once per machine and cached, with the node's kubelet and kube-proxy
// (see kubelet-node.ts). Credentials are made here: a static admin token, a service-account key,
// a CA and the apiserver's serving certificate signed by it.
//
// The apiserver listens on all addresses, so that pods on the node's bridge network reach it at
// the host's primary IPv4 address (`podHost`): directly as KUBERNETES_SERVICE_HOST/PORT with the
// node agent, through the `kubernetes` Service's cluster IP (10.96.0.1, kube-proxy's NAT) with
// the kubelet, whose InternalIP is `podHost` as well. Its certificate is made here rather than
// self-generated: the one kube-apiserver generates for --bind-address 0.0.0.0 names the advertise
// address, 10.96.0.1 and "localhost" but not 127.0.0.1, which `server` uses. The
// controller-manager's --root-ca-file is the same CA, so every namespace's kube-root-ca.crt
// ConfigMap (ca.crt of the service-account volume) verifies the apiserver.
//
// Every process started here is stopped by close(), and also when the test process ends without
// it (exit, SIGINT, SIGTERM: exit-cleanup.ts), so none outlives the test reparented to PID 1.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { constants, rmSync } from 'node:fs';
import { access, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { homedir, networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Agent, fetch } from 'undici';
import { waitFor } from '@kubefn/platform/testing';
import { onExit, stopSync } from './exit-cleanup.js';
import { acquirePidLock, releasePidLock } from './pid-lock.js';
import { repoRoot } from './platform-process.js';

const run = promisify(execFile);

export const kubernetesVersion = 'v1.34.4';
const components = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'kube-proxy', 'kubectl'] as const;
type Component = (typeof components)[number];

/** Where the built binaries are kept between runs (KUBEFN_K8S_CACHE overrides). */
export function binaryDir(): string {
  return process.env.KUBEFN_K8S_CACHE ?? path.join(homedir(), '.cache', 'kubefn-k8s', kubernetesVersion, 'bin');
}

/** How long a cold build may take (and another process's build be waited for), ms. */
const buildTimeoutMs = 3_600_000;
/** The build in flight in this process, which concurrent callers share. */
let building: Promise<Record<Component, string>> | undefined;

/**
 * The control-plane binaries, the node's kubelet and kube-proxy, and kubectl (which checks that
 * `kubectl apply -k deploy/` works), built with `go build` from tests/cluster/k8s when missing
 * (only the missing ones). A cold build takes many minutes on 2 cores; `onProgress` hears about it.
 *
 * Safe on a fresh machine and with other test processes: the build goes to a temporary folder in
 * the cache and each complete binary is renamed into place, so a build that dies leaves nothing
 * the next run would trust; a lock file in the cache (pid-lock.ts) lets one process build while
 * the others wait for it, and is taken over when its process has died.
 */
export function ensureBinaries(onProgress: (line: string) => void = () => {}): Promise<Record<Component, string>> {
  building ??= buildMissing(onProgress).finally(() => {
    building = undefined;
  });
  return building;
}

async function missingBinaries(paths: Record<Component, string>): Promise<Component[]> {
  const present = await Promise.all(components.map((c) => access(paths[c], constants.X_OK).then(() => true, () => false)));
  return components.filter((_, i) => !present[i]);
}

async function buildMissing(onProgress: (line: string) => void): Promise<Record<Component, string>> {
  const dir = binaryDir();
  const paths = Object.fromEntries(components.map((c) => [c, path.join(dir, c)])) as Record<Component, string>;
  if (!(await missingBinaries(paths)).length) return paths;
  await mkdir(dir, { recursive: true });
  const lock = path.join(dir, '.build.lock');
  await acquirePidLock(lock, {
    waitMs: buildTimeoutMs,
    pollMs: 2_000,
    onWait: (holder) => onProgress(`waiting for process ${holder}, which builds the Kubernetes binaries into ${dir}`),
  });
  let tmp: string | undefined;
  let goBuild: ChildProcess | undefined;
  // Also when the process ends mid-build: stop go and let the next run start clean.
  const forgetExitHook = onExit(() => {
    if (goBuild?.pid !== undefined && goBuild.exitCode === null) stopSync([goBuild.pid]);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    releasePidLock(lock);
  });
  try {
    // Another process may have built them while this one waited.
    const missing = await missingBinaries(paths);
    if (!missing.length) return paths;
    // Holding the lock, any temporary folder is what a dead build left.
    for (const entry of await readdir(dir)) if (entry.startsWith('.build-')) await rm(path.join(dir, entry), { recursive: true, force: true });
    tmp = await mkdtemp(path.join(dir, '.build-'));
    onProgress(`building Kubernetes ${kubernetesVersion} ${missing.join(', ')} into ${dir} (go build, cached afterwards)`);
    const [major, minor] = kubernetesVersion.slice(1).split('.');
    const ldflags = [
      '-s -w',
      `-X k8s.io/component-base/version.gitVersion=${kubernetesVersion}`,
      `-X k8s.io/component-base/version.gitMajor=${major}`,
      `-X k8s.io/component-base/version.gitMinor=${minor}`,
    ].join(' ');
    const build = run(
      'go',
      ['build', '-trimpath', '-tags', 'selinux,notest', '-ldflags', ldflags, '-o', `${tmp}/`, ...missing.map((c) => `k8s.io/kubernetes/cmd/${c}`)],
      { cwd: path.join(repoRoot, 'tests', 'cluster', 'k8s'), env: { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-mod=mod' }, maxBuffer: 64 * 1024 * 1024, timeout: buildTimeoutMs },
    );
    goBuild = build.child;
    await build;
    for (const c of missing) await rename(path.join(tmp, c), paths[c]);
    return paths;
  } finally {
    forgetExitHook();
    if (tmp) await rm(tmp, { recursive: true, force: true });
    releasePidLock(lock);
  }
}

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  server: string;
  /**
   * The address containers on podman bridge networks reach the apiserver at (what pods get as
   * KUBERNETES_SERVICE_HOST): the host's primary IPv4 address, in the serving certificate. Falls
   * back to 127.0.0.1 (unreachable from pods) on a machine without a non-loopback IPv4 address.
   */
  podHost: string;
  /** The apiserver's port, on 127.0.0.1 and on `podHost` (KUBERNETES_SERVICE_PORT). */
  port: number;
  /** A kubeconfig file for the admin (system:masters) token. */
  kubeconfig: string;
  token: string;
  /** The CA that signed the apiserver's serving certificate, PEM: kube-root-ca.crt's ca.crt. */
  ca: string;
  dir: string;
  /**
   * Freezes kube-apiserver (SIGSTOP): connections stay open and nothing answers, for every
   * client, as with a hung or blackholed server; resumeApiserver() (SIGCONT) lets it go on.
   */
  pauseApiserver(): void;
  resumeApiserver(): void;
  close(): Promise<void>;
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler; resolves once /readyz answers. */
export async function startControlPlane(onProgress: (line: string) => void = () => {}): Promise<ControlPlane> {
  const bin = await ensureBinaries(onProgress);
  const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-k8s-'));
  const children: ChildProcess[] = [];
  const logs = new Map<string, string[]>();
  const start = (name: string, cmd: string, args: string[]): ChildProcess => {
    const lines: string[] = [];
    logs.set(name, lines);
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (chunk: Buffer): void => {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      if (lines.length > 200) lines.splice(0, lines.length - 200);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    children.push(child);
    return child;
  };
  // Also when the process ends without close(): stop every child (they would outlive it,
  // reparented to PID 1) and remove the directory.
  const forgetExitHook = onExit(() => {
    const running = children.filter((c) => c.pid !== undefined && c.exitCode === null && c.signalCode === null);
    apiserver?.kill('SIGCONT');
    stopSync(running.map((c) => c.pid!));
    rmSync(dir, { recursive: true, force: true });
  });
  let apiserver: ChildProcess | undefined;
  const close = async (): Promise<void> => {
    forgetExitHook();
    apiserver?.kill('SIGCONT');
    // Newest first, each once the ones started after it are gone: the apiserver takes tens of
    // seconds to stop when etcd has gone first.
    for (const c of [...children].reverse()) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const [etcdPort, etcdPeer, apiPort, podHost] = await Promise.all([freePort(), freePort(), freePort('0.0.0.0'), primaryIPv4()]);
    if (podHost === '127.0.0.1') onProgress('no non-loopback IPv4 address on this machine: pods will not reach the apiserver');
    start('etcd', 'etcd', [
      '--data-dir', path.join(dir, 'etcd'),
      '--listen-client-urls', `http://127.0.0.1:${etcdPort}`,
      '--advertise-client-urls', `http://127.0.0.1:${etcdPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${etcdPeer}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${etcdPeer}`,
      '--initial-cluster', `default=http://127.0.0.1:${etcdPeer}`,
    ]);
    const saKey = path.join(dir, 'sa.key');
    const saPub = path.join(dir, 'sa.pub');
    await run('openssl', ['genrsa', '-out', saKey, '2048']);
    await run('openssl', ['rsa', '-in', saKey, '-pubout', '-out', saPub]);
    const token = (await run('openssl', ['rand', '-hex', '24'])).stdout.trim();
    const tokens = path.join(dir, 'tokens.csv');
    await writeFile(tokens, `${token},kubefn-admin,kubefn-admin,system:masters\n`, { mode: 0o600 });
    const tls = await servingCertificate(dir, podHost);
    apiserver = start(bin['kube-apiserver'], bin['kube-apiserver'], [
      '--etcd-servers', `http://127.0.0.1:${etcdPort}`,
      '--bind-address', '0.0.0.0',
      '--advertise-address', podHost,
      '--secure-port', String(apiPort),
      '--tls-cert-file', tls.cert,
      '--tls-private-key-file', tls.key,
      '--token-auth-file', tokens,
      '--authorization-mode', 'RBAC',
      '--service-account-issuer', 'https://kubernetes.default.svc.cluster.local',
      '--service-account-key-file', saPub,
      '--service-account-signing-key-file', saKey,
      '--service-cluster-ip-range', '10.96.0.0/16',
      '--allow-privileged',
      // Nodes here are reached at their InternalIP; their Hostname does not resolve.
      '--kubelet-preferred-address-types', 'InternalIP,Hostname',
    ]);
    const server = `https://127.0.0.1:${apiPort}`;
    const ca = await readFile(tls.ca, 'utf8');
    const verified = new Agent({ connect: { ca } });
    onProgress(`waiting for kube-apiserver on ${server}`);
    try {
      await waitFor(
        async () => (await fetch(`${server}/readyz`, { headers: { authorization: `Bearer ${token}` }, dispatcher: verified })).status === 200,
        { timeoutMs: 120_000, what: 'kube-apiserver /readyz' },
      );
    } finally {
      await verified.close();
    }
    const kubeconfig = path.join(dir, 'kubeconfig');
    await writeFile(kubeconfig, kubeconfigYaml(server, token, ca), { mode: 0o600 });
    start('kube-controller-manager', bin['kube-controller-manager'], [
      '--kubeconfig', kubeconfig,
      '--service-account-private-key-file', saKey,
      '--root-ca-file', tls.ca,
      '--use-service-account-credentials',
      '--leader-elect=false',
      '--secure-port', '0',
      '--controllers', '*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle',
    ]);
    const schedulerConfig = path.join(dir, 'scheduler.yaml');
    await writeFile(
      schedulerConfig,
      `apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: ${kubeconfig}\nleaderElection:\n  leaderElect: false\n`,
    );
    start('kube-scheduler', bin['kube-scheduler'], ['--config', schedulerConfig, '--secure-port', '0']);
    const signal = (name: NodeJS.Signals) => () => void apiserver!.kill(name);
    return { server, podHost, port: apiPort, kubeconfig, token, ca, dir, pauseApiserver: signal('SIGSTOP'), resumeApiserver: signal('SIGCONT'), close };
  } catch (err) {
    const tail = [...logs].map(([n, l]) => `--- ${n}\n${l.slice(-20).join('\n')}`).join('\n');
    await close();
    throw new Error(`control plane did not start: ${(err as Error).message}\n${tail}`);
  }
}

/**
 * The host's primary IPv4 address: the source address of its route to the internet (a UDP
 * connect sends nothing), else the first non-internal IPv4 of an interface that is not a
 * container bridge, else 127.0.0.1.
 */
export async function primaryIPv4(): Promise<string> {
  const routed = await new Promise<string | undefined>((resolve) => {
    const socket = createSocket('udp4');
    socket.once('error', () => {
      socket.close();
      resolve(undefined);
    });
    // The callback hears a failed connect (no route) as its argument.
    socket.connect(53, '1.1.1.1', (err?: Error) => {
      let address: string | undefined;
      try {
        if (!err) address = socket.address().address;
      } catch {
        // not connected after all
      }
      socket.close();
      resolve(address);
    });
  });
  if (routed && routed !== '0.0.0.0' && !routed.startsWith('127.')) return routed;
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    if (/^(podman|cni|veth|docker|br-|virbr)/.test(name)) continue;
    const found = addresses?.find((a) => a.family === 'IPv4' && !a.internal);
    if (found) return found.address;
  }
  return '127.0.0.1';
}

/**
 * A CA and the apiserver's serving certificate signed by it (ECDSA P-256, valid 7 days), naming
 * loopback, the pods' address of the apiserver, the `kubernetes` Service's cluster IP and names.
 */
async function servingCertificate(dir: string, podHost: string): Promise<{ ca: string; cert: string; key: string }> {
  const tlsDir = path.join(dir, 'tls');
  await mkdir(tlsDir, { recursive: true, mode: 0o700 });
  const f = (name: string): string => path.join(tlsDir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', [
    'req', '-x509', ...ec, '-days', '7', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-subj', '/CN=kubefn-test-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await run('openssl', ['req', '-new', ...ec, '-keyout', f('apiserver.key'), '-out', f('apiserver.csr'), '-subj', '/CN=kube-apiserver']);
  const names = ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local', 'localhost'];
  const ips = [...new Set(['127.0.0.1', podHost, '10.96.0.1'])];
  await writeFile(
    f('apiserver.ext'),
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      `subjectAltName=${[...names.map((n) => `DNS:${n}`), ...ips.map((ip) => `IP:${ip}`)].join(',')}`,
      '',
    ].join('\n'),
  );
  const serial = `0x${(await run('openssl', ['rand', '-hex', '16'])).stdout.trim()}`;
  await run('openssl', [
    'x509', '-req', '-in', f('apiserver.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-set_serial', serial,
    '-days', '7', '-extfile', f('apiserver.ext'), '-out', f('apiserver.crt'),
  ]);
  return { ca: f('ca.crt'), cert: f('apiserver.crt'), key: f('apiserver.key') };
}

function kubeconfigYaml(server: string, token: string, ca: string): string {
  const caData = Buffer.from(ca).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: kubefn-test',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${caData}`,
    'users:',
    '- name: admin',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: kubefn-test',
    '  context: { cluster: kubefn-test, user: admin }',
    'current-context: kubefn-test',
    '',
  ].join('\n');
}
