// What a cluster's operator lets functions ask of its nodes: the node-selector label keys and the
// taint keys a function may use (kubefn-config `allowed-node-selector-keys` and
// `allowed-toleration-keys`). Unset, anything goes; set, a spec that names anything else is
// refused, by the gateway at deploy and by the controller for a Function applied with kubectl.

import { KubefnError, type FieldError } from '../errors.js';
import type { FunctionSpec } from '../spec.js';

export interface PlacementAllowlist {
  /** Label keys a function's placement.nodeSelector may use; undefined: any. */
  nodeSelectorKeys?: readonly string[];
  /**
   * Taint keys a function's placement.tolerations may tolerate; undefined: any. A toleration
   * with no key (which tolerates every taint) is refused whenever this is set.
   */
  tolerationKeys?: readonly string[];
}

/** The allowlist of comma-separated settings; an empty or unset one allows anything. */
export function placementAllowlist(nodeSelectorKeys: string | undefined, tolerationKeys: string | undefined): PlacementAllowlist {
  const list = (v: string | undefined) => {
    const keys = (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    return keys.length ? keys : undefined;
  };
  const n = list(nodeSelectorKeys);
  const t = list(tolerationKeys);
  return { ...(n ? { nodeSelectorKeys: n } : {}), ...(t ? { tolerationKeys: t } : {}) };
}

/** What in `spec`'s placement the allowlist does not allow, as field errors. */
export function placementErrors(spec: FunctionSpec, allow: PlacementAllowlist): FieldError[] {
  const out: FieldError[] = [];
  if (allow.nodeSelectorKeys) {
    for (const key of Object.keys(spec.placement?.nodeSelector ?? {})) {
      if (!allow.nodeSelectorKeys.includes(key)) {
        out.push({ field: `placement.nodeSelector.${key}`, message: `is not a node label functions may select on here (allowed: ${allow.nodeSelectorKeys.join(', ')})` });
      }
    }
  }
  if (allow.tolerationKeys) {
    (spec.placement?.tolerations ?? []).forEach((t, i) => {
      if (t.key === undefined || t.key === '') {
        out.push({ field: `placement.tolerations.${i}`, message: 'tolerates every taint; name the taint key (allowed: ' + allow.tolerationKeys!.join(', ') + ')' });
      } else if (!allow.tolerationKeys!.includes(t.key)) {
        out.push({ field: `placement.tolerations.${i}.key`, message: `"${t.key}" is not a taint functions may tolerate here (allowed: ${allow.tolerationKeys!.join(', ')})` });
      }
    });
  }
  return out;
}

/** Throws INVALID_SPEC naming every placement the allowlist refuses. */
export function checkPlacement(spec: FunctionSpec, allow: PlacementAllowlist): void {
  const fields = placementErrors(spec, allow);
  if (fields.length === 0) return;
  throw new KubefnError('INVALID_SPEC', `function "${spec.name}" asks for node placement this cluster does not allow: ${fields.map((f) => `${f.field} ${f.message}`).join('; ')}`, {
    fields,
    hint: 'the cluster operator sets what functions may use in the kubefn-config ConfigMap (allowed-node-selector-keys, allowed-toleration-keys)',
  });
}
