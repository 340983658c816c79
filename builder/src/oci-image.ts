// Assembles an OCI image config and manifest: a base image plus one function layer.
// Reproducible: nothing in the output depends on the time or the machine.

import type { Layer } from './oci-layer.js';
import { layerMediaType, sha256 } from './oci-layer.js';

export const manifestMediaType = 'application/vnd.oci.image.manifest.v1+json';
export const configMediaType = 'application/vnd.oci.image.config.v1+json';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

/** The parts of an OCI image config kubefn reads and writes; other fields pass through. */
export interface ImageConfig {
  architecture: string;
  os: string;
  created?: string;
  config?: {
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    ExposedPorts?: Record<string, object>;
    Labels?: Record<string, string>;
    User?: string;
    [key: string]: unknown;
  };
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[];
  [key: string]: unknown;
}

export interface BaseImage {
  config: ImageConfig;
  /** The base's layer descriptors, in order. */
  layers: Descriptor[];
}

export interface ImageSettings {
  entrypoint: string[];
  env?: Record<string, string>;
  /** TCP ports, e.g. [8080, 8081]. */
  exposedPorts?: number[];
  labels?: Record<string, string>;
  workingDir?: string;
  /** What the history entry says made the layer. */
  createdBy?: string;
  /** The user to run as when the base names none or root (e.g. '65534:65534'); a base's own non-root user is kept. */
  userIfRoot?: string;
}

/** Whether an image config's User runs its process as root: unset, empty, `root` or uid 0. */
export function runsAsRoot(user: string | undefined): boolean {
  const name = (user ?? '').split(':')[0]!.trim();
  return name === '' || name === 'root' || name === '0';
}

export interface AssembledImage {
  config: Buffer;
  configDescriptor: Descriptor;
  manifest: Buffer;
  manifestDescriptor: Descriptor;
}

/** Every image kubefn writes claims this creation time, so rebuilding changes nothing. */
export const fixedCreated = '1970-01-01T00:00:00Z';

/** An empty linux/amd64 base: the image is the function layer alone. */
export function scratchBase(): BaseImage {
  return { config: { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: {} }, layers: [] };
}

export function assembleImage(base: BaseImage, layer: Layer, settings: ImageSettings): AssembledImage {
  if (base.config.rootfs.diff_ids.length !== base.layers.length) {
    throw new Error(`base image has ${base.layers.length} layers but ${base.config.rootfs.diff_ids.length} diff_ids`);
  }
  const inner = { ...(base.config.config ?? {}) };
  // Our variables replace the base's of the same name, keeping the base's order.
  const env = new Map((inner.Env ?? []).map((e) => [e.split('=')[0]!, e] as const));
  for (const [k, v] of Object.entries(settings.env ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) env.set(k, `${k}=${v}`);
  inner.Env = [...env.values()];
  inner.Entrypoint = settings.entrypoint;
  inner.Cmd = null;
  if (settings.workingDir) inner.WorkingDir = settings.workingDir;
  if (settings.userIfRoot && runsAsRoot(inner.User)) inner.User = settings.userIfRoot;
  if (settings.exposedPorts?.length) {
    inner.ExposedPorts = { ...(inner.ExposedPorts ?? {}) };
    for (const p of [...settings.exposedPorts].sort((a, b) => a - b)) inner.ExposedPorts[`${p}/tcp`] = {};
  }
  if (settings.labels) inner.Labels = sortKeys({ ...(inner.Labels ?? {}), ...settings.labels });
  const config: ImageConfig = {
    ...base.config,
    created: fixedCreated,
    config: inner,
    rootfs: { type: 'layers', diff_ids: [...base.config.rootfs.diff_ids, layer.diffId] },
    history: [...(base.config.history ?? []), { created: fixedCreated, created_by: settings.createdBy ?? 'kubefn build', comment: 'function bundle' }],
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDescriptor: Descriptor = { mediaType: configMediaType, digest: sha256(configBytes), size: configBytes.length };
  const manifest = {
    schemaVersion: 2,
    mediaType: manifestMediaType,
    config: configDescriptor,
    layers: [...base.layers, { mediaType: layerMediaType, digest: layer.digest, size: layer.blob.length }],
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  return {
    config: configBytes,
    configDescriptor,
    manifest: manifestBytes,
    manifestDescriptor: { mediaType: manifestMediaType, digest: sha256(manifestBytes), size: manifestBytes.length },
  };
}

function sortKeys(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
