// kubefn installed on the test cluster the way a user installs it: `fn install` from deploy/,
// with the platform image built by kubefn's builder and pushed to a real registry, a function base
// and a NATS image made from this machine's binaries (no public registry answers here), pods run
// by the test cluster's node (the real kubelet where the machine allows, else the node agent),
// which pulls from the registry over plain HTTP, and NATS's store claim bound to a hostPath
// PersistentVolume in a directory of this machine (the test cluster has no storage provisioner).
// Shared by the cluster cases and the cluster benchmark.

import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import { assembleImage, buildLayer, hostBaseName, parseReference, pushFunctionImage, RegistryClient, resolveBase } from '@kubefn/builder';
import { startRegistry, type TestRegistry } from '@kubefn/builder/testing';
import { waitFor } from '@kubefn/platform/testing';
import { startTestCluster, type TestCluster } from './cluster.js';
import { primaryIPv4 } from './control-plane.js';
import { fnBin } from './platform-process.js';
import { hostBaseCached, podmanTestOptions, pushTestBase, testCacheDir } from './podman.js';

const exec = promisify(execFile);

export interface InstalledPlatform {
  cluster: TestCluster;
  registry: TestRegistry;
  client: RegistryClient;
  namespace: string;
  /** The function base image pushed to the registry. */
  base: string;
  /** Where Functions, their Deployments, Services, pods and secrets live. */
  functionNamespace: string;
  /** The users' token (kubefn-token); a test that rotates it sets the new one here. */
  token: string;
  /** The components' token, read from the kubefn-component-token Secret now. */
  componentToken(): Promise<string>;
  /** http://<pod IP>:8080 of each ready gateway pod, sorted. */
  gateways(): Promise<string[]>;
  /** `--insecure-registry <registry>`: what fn deploy needs to push to the platform's plain-HTTP registry. */
  insecure: string[];
  /** Runs the fn binary with KUBEFN_HOME, the kubeconfig and `env`; resolves stdout, rejects with stderr. */
  fn(args: string[], env?: Record<string, string>): Promise<string>;
  /** What `fn install` took, ms (image build and push, apply, wait). */
  installMs: number;
  /** The host directory of the PersistentVolume that holds NATS's JetStream store. */
  natsStore: string;
  close(): Promise<void>;
}

export const platformNamespace = 'kubefn';
/** deploy/'s namespace of functions (config.yaml function-namespace). */
export const functionNamespace = 'kubefn-fn';
/** NATS's store claim: volumeClaimTemplate "data" of deploy/nats.yaml's StatefulSet kubefn-nats, pod 0. */
export const natsClaim = 'data-kubefn-nats-0';

/** Whether `pod` is Ready and not on its way out. */
export const isReadyPod = (pod: V1Pod): boolean =>
  !pod.metadata?.deletionTimestamp && (pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false);

/**
 * A hostPath PersistentVolume for NATS's store claim, in a directory of this machine (where the
 * node runs pods) that the server's uid can write: the test cluster has no StorageClass and no
 * provisioner, so without one the claim would stay Pending and NATS never start. Its claimRef
 * reserves it for that claim. deploy/ itself is left as it is (a claim of the default class).
 */
async function createNatsVolume(cluster: TestCluster): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-nats-store-'));
  await chmod(dir, 0o777);
  const core = cluster.kc.makeApiClient(cluster.k8s.CoreV1Api);
  await core.createPersistentVolume({
    body: {
      metadata: { name: `kubefn-test-nats-${randomBytes(3).toString('hex')}`, labels: { 'app.kubernetes.io/part-of': 'kubefn-tests' } },
      spec: {
        capacity: { storage: '1Gi' },
        accessModes: ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: 'Retain',
        hostPath: { path: dir, type: 'Directory' },
        claimRef: { namespace: platformNamespace, name: natsClaim },
      },
    },
  });
  return dir;
}

/**
 * What the install pushes to `registry` before it starts: the function base (kubefn/node-base:host)
 * and the NATS image, both on the host base; resolves their references [base, nats].
 */
export async function platformImages(client: RegistryClient, registry: string): Promise<[string, string]> {
  return Promise.all([pushTestBase(client, registry), pushNatsImage(client, registry)]);
}

/** The NATS image: Debian's nats-server on the host base (glibc comes with it). */
async function pushNatsImage(client: RegistryClient, registry: string): Promise<string> {
  // Built once per process: pushTestBase may be building it right now.
  await hostBaseCached();
  const base = await resolveBase(hostBaseName, client, testCacheDir);
  const binary = await readFile(await natsServerPath());
  const layer = await buildLayer([{ path: 'usr/local/bin/nats-server', content: binary, mode: 0o755 }]);
  const image = assembleImage(base.base, layer, { entrypoint: ['nats-server'], workingDir: '/', env: {}, exposedPorts: [4222], labels: {}, createdBy: 'kubefn test nats image' });
  const report = await pushFunctionImage(client, { layer, image, base }, parseReference(`${registry}/kubefn-test/nats:debian`));
  return report.ref;
}

/** Debian's nats-server (package nats-server, installed by .ci/run), wherever PATH or /usr/sbin has it. */
async function natsServerPath(): Promise<string> {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin']) {
    const file = path.join(dir, 'nats-server');
    if (dir && (await access(file, constants.X_OK).then(() => true, () => false))) return file;
  }
  throw new Error('nats-server is not installed (apt-get install nats-server): the cluster tests package it as the NATS image');
}

export interface InstallOptions {
  /**
   * The cluster to install on, with a node; it stays up after close(). Default: a cluster of
   * its own (with the node testNodeKind() chooses), stopped by close().
   */
  cluster?: TestCluster;
  onProgress?: (line: string) => void;
  timeoutMs?: number;
}

export async function installTestPlatform(options: InstallOptions = {}): Promise<InstalledPlatform> {
  const progress = options.onProgress ?? (() => {});
  if (options.cluster && !options.cluster.node) throw new Error('installTestPlatform: the cluster has no node to run the platform on');
  // The registry listens on the host's address, so the builder pod can push to it and the node
  // pull from it by the same name the CLI pushes to (plain HTTP, like an in-cluster registry).
  const registry = await startRegistry({ advertise: await primaryIPv4() });
  const insecure = ['--insecure-registry', registry.host];
  const own = !options.cluster;
  let cluster = options.cluster;
  let natsStore: string | undefined;
  try {
    const client = new RegistryClient({ insecureRegistries: [registry.host] });
    const [base, nats] = await platformImages(client, registry.host);
    if (cluster) {
      await cluster.installFunctionCrd();
      await cluster.createNamespace(platformNamespace);
      await cluster.node!.trustRegistry(registry.host);
    } else {
      cluster = await startTestCluster({ namespace: platformNamespace, node: true, insecureRegistries: [registry.host], onProgress: progress });
    }
    natsStore = await createNatsVolume(cluster);
    const home = await mkdtemp(path.join(tmpdir(), 'kubefn-install-'));
    const podmanEnv = (await podmanTestOptions()).env;
    const c = cluster;
    const fn = async (args: string[], env: Record<string, string> = {}): Promise<string> => {
      try {
        const r = await exec(process.execPath, [fnBin, ...args], {
          env: { ...process.env, ...podmanEnv, KUBEFN_HOME: home, KUBECONFIG: c.cp.kubeconfig, ...env },
          timeout: options.timeoutMs ?? 600_000,
          maxBuffer: 16 * 1024 * 1024,
        });
        return r.stdout;
      } catch (err) {
        const e = err as { stderr?: string; stdout?: string; message: string };
        throw new Error(`fn ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`);
      }
    };
    progress('fn install');
    const started = performance.now();
    await fn(['install', '--registry', registry.host, ...insecure, '--base', base, '--nats-image', nats, '--timeout', '300']);
    const installMs = performance.now() - started;
    const k8s = cluster.k8s;
    const core = cluster.kc.makeApiClient(k8s.CoreV1Api);
    const secret = await core.readNamespacedSecret({ name: 'kubefn-token', namespace: platformNamespace });
    const token = Buffer.from(secret.data!.token!, 'base64').toString();
    const gateways = async (): Promise<string[]> => {
      const pods = await core.listNamespacedPod({ namespace: platformNamespace, labelSelector: 'app.kubernetes.io/name=kubefn-gateway' });
      return pods.items
        .filter((p) => !p.metadata?.deletionTimestamp && p.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') && p.status.podIP)
        .map((p) => `http://${p.status!.podIP}:8080`)
        .sort();
    };
    await waitFor(async () => (await gateways()).length === 2, { timeoutMs: 60_000, what: 'two ready gateway pods' });
    return {
      cluster,
      registry,
      client,
      namespace: platformNamespace,
      functionNamespace,
      base,
      token,
      componentToken: async () =>
        Buffer.from((await core.readNamespacedSecret({ name: 'kubefn-component-token', namespace: platformNamespace })).data!.token!, 'base64').toString(),
      gateways,
      insecure,
      fn,
      installMs,
      natsStore,
      close: async () => {
        if (own) await c.close();
        await registry.close();
        await rm(natsStore!, { recursive: true, force: true });
      },
    };
  } catch (err) {
    if (own) await cluster?.close();
    await registry.close();
    if (natsStore) await rm(natsStore, { recursive: true, force: true });
    throw err;
  }
}
