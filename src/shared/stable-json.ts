/**
 * Stable serialisation, whatever the key order of the objects: two equal values give the same
 * string (idempotent writes compare routes by it; the agent compares snapshots by it).
 */
export function stableStringify(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  )
}
