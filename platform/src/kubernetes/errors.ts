// Kubernetes API failures as kubefn errors: the status code picks the catalogue code, the API server's message is kept.

import { KubefnError, dependencyErrorCode, isKubefnError, type ErrorCode } from '../errors.js';

export function kubeError(err: unknown, doing: string): KubefnError {
  if (isKubefnError(err) && err instanceof KubefnError) return err;
  if (isApiError(err)) {
    const body = parseBody(err.body);
    const message = body?.message ?? String((err as { message?: unknown }).message ?? `HTTP ${err.code}`);
    const code: ErrorCode = err.code === 422 ? 'BAD_REQUEST' : dependencyErrorCode(err.code);
    // A 403's message names the verb and resource the API server refused ("... cannot patch
    // resource "deployments/scale" in API group "apps" in the namespace ..."): kept as it is.
    const hint =
      code === 'FORBIDDEN'
        ? 'the kubefn service account lacks this permission: check its RBAC rules (deploy/ in this repository lists what the driver needs)'
        : code === 'UNAUTHORIZED'
          ? 'the Kubernetes credentials were refused: check the kubeconfig or the service-account token'
          : code === 'UNAVAILABLE'
            ? 'the Kubernetes API server is overloaded or restarting; the call can be retried'
            : undefined;
    return new KubefnError(code, `${doing}: ${message}`, { cause: err, ...(hint ? { hint } : {}) });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new KubefnError('UNAVAILABLE', `${doing}: ${message}`, { cause: err, hint: 'check that the Kubernetes API server is reachable' });
}

function parseBody(body: unknown): { message?: string } | undefined {
  if (typeof body === 'string') {
    try {
      return JSON.parse(body) as { message?: string };
    } catch {
      return { message: body.slice(0, 500) };
    }
  }
  return typeof body === 'object' && body !== null ? (body as { message?: string }) : undefined;
}

/** An ApiException of client-node (told by its numeric HTTP `code`), optionally with that status. */
export function isApiError(err: unknown, status?: number): err is { code: number; body?: unknown } {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' && (status === undefined || code === status);
}
