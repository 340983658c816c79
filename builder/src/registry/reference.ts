// Image references ("node:20", "ghcr.io/acme/fn@sha256:…") parsed and normalised the way
// docker does, and validated against the grammar of the distribution spec.

import { KubefnError } from '@kubefn/platform';

export interface ImageReference {
  /** Registry host, with port when one was given: "docker.io", "localhost:5000". */
  registry: string;
  /** Repository path inside the registry: "library/node", "acme/fn". */
  repository: string;
  /** Absent when only a digest was given. */
  tag?: string;
  /** "sha256:<64 hex>"; when both are present the digest is what gets pulled. */
  digest?: string;
}

export const dockerHub = 'docker.io';
export const defaultTag = 'latest';

// The distribution spec's reference grammar (github.com/distribution/reference, regexp.go).
const pathComponent = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const registryPattern = new RegExp(`^(?:${domainComponent}(?:\\.${domainComponent})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const tagPattern = /^[\w][\w.-]{0,127}$/;
const digestPattern = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const sha256Hex = /^[a-f0-9]{64}$/;
/** Registry plus repository, as in the spec. */
const maxNameLength = 255;

const example = 'e.g. "node:20", "ghcr.io/acme/fn:v1" or "localhost:5000/fn@sha256:<64 hex digits>"';

function bad(ref: string, what: string): KubefnError {
  return new KubefnError('BAD_REQUEST', `invalid image reference "${ref}": ${what}`, { hint: `an image reference looks like ${example}` });
}

export function parseReference(ref: string): ImageReference {
  if (ref === '' || ref !== ref.trim()) throw bad(ref, 'it is empty or has surrounding spaces');
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    checkDigest(ref, digest);
  }
  // A tag is a ":" after the last "/" (a ":" before it is a registry port).
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!tagPattern.test(tag)) {
      throw bad(ref, `tag "${tag}" must be 1-128 letters, digits, "_", "." or "-", not starting with "." or "-"`);
    }
  }
  let registry = dockerHub;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      registry = first;
      repository = rest.slice(slash + 1);
    }
  }
  if (!registryPattern.test(registry)) throw bad(ref, `registry "${registry}" is not a host name with an optional port`);
  registry = registry.toLowerCase();
  if (registry === 'index.docker.io') registry = dockerHub;
  if (registry === dockerHub && repository !== '' && !repository.includes('/')) repository = `library/${repository}`;
  checkRepository(ref, repository);
  if (registry.length + 1 + repository.length > maxNameLength) throw bad(ref, `the name is longer than ${maxNameLength} characters`);
  if (tag === undefined && digest === undefined) tag = defaultTag;
  const out: ImageReference = { registry, repository };
  if (tag !== undefined) out.tag = tag;
  if (digest !== undefined) out.digest = digest;
  return out;
}

function checkRepository(ref: string, repository: string): void {
  if (repository === '') throw bad(ref, 'the repository name is empty');
  for (const component of repository.split('/')) {
    if (pathComponent.test(component)) continue;
    const why = component !== component.toLowerCase() ? 'must be lowercase' : 'may only have lowercase letters, digits and single separators (".", "_", "__", "-") between them';
    throw bad(ref, `repository "${repository}": component "${component}" ${why}`);
  }
}

function checkDigest(ref: string, digest: string): void {
  if (!digestPattern.test(digest)) throw bad(ref, `digest "${digest}" is not "<algorithm>:<hex>"`);
  const [algorithm, hex] = digest.split(':') as [string, string];
  if (algorithm === 'sha256' && !sha256Hex.test(hex)) throw bad(ref, `digest "${digest}" must have 64 lowercase hex digits after "sha256:"`);
}

/** The full form, which parses back to the same reference: "docker.io/library/node:20". */
export function formatReference(r: ImageReference): string {
  return `${r.registry}/${r.repository}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${r.digest}` : ''}`;
}

/** The host that serves the registry API: Docker Hub's is not "docker.io" itself. */
export function registryApiHost(registry: string): string {
  return registry === dockerHub ? 'registry-1.docker.io' : registry;
}

export { isLoopbackRegistry } from '@kubefn/platform';
