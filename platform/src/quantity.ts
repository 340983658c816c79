// Kubernetes resource quantities ("500m", "2", "256Mi", "1.5G") as numbers, for drivers that
// hand limits to something other than Kubernetes.

const suffixes: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/** The value of a quantity the spec schema accepted; throws on anything else. */
export function parseQuantity(quantity: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$/.exec(quantity);
  if (!m) throw new Error(`invalid quantity "${quantity}"`);
  return Number(m[1]) * suffixes[m[2] ?? '']!;
}
