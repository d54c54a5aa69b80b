/**
 * What changed between the routes a proxy serves and a new snapshot, per service, so that the
 * engine touches only what changed: endpoint changes go to the servers of that service over the
 * runtime API, anything else to the renderer. Pure, and linear in the number of routes (a deep
 * comparison that stops at the first difference, not a serialisation of the whole table).
 */
import type { Route } from '../../contracts/route.ts'

/** Deep equality of JSON-like values; a property set to undefined counts as absent (as in JSON). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false
    return true
  }
  const x = a as Record<string, unknown>
  const y = b as Record<string, unknown>
  let count = 0
  for (const key in x) {
    const value = x[key]
    if (value === undefined) continue
    count++
    if (!sameJson(value, y[key])) return false
  }
  for (const key in y) if (y[key] !== undefined) count--
  return count === 0
}

export interface RouteChanges {
  /** Routes of services not served before. */
  added: Route[]
  /** Services served before and absent now. */
  removed: string[]
  /** Routes of services served before that differ. */
  changed: Route[]
  /** True when every changed route differs only in its fixed endpoints (and nothing was added or removed). */
  endpointsOnly: boolean
}

/** Compares `routes` with what is served (by serviceName). */
export function compareRoutes(served: ReadonlyMap<string, Route>, routes: readonly Route[]): RouteChanges {
  const added: Route[] = []
  const changed: Route[] = []
  let endpointsOnly = true
  let kept = 0
  for (const route of routes) {
    const before = served.get(route.serviceName)
    if (before === undefined) {
      added.push(route)
      continue
    }
    kept++
    if (sameJson(before, route)) continue
    changed.push(route)
    if (endpointsOnly && !sameJson({ ...before, endpoints: [] }, { ...route, endpoints: [] })) endpointsOnly = false
  }
  let removed: string[] = []
  if (kept !== served.size) {
    const names = new Set(routes.map((r) => r.serviceName))
    removed = [...served.keys()].filter((name) => !names.has(name))
  }
  return { added, removed, changed, endpointsOnly: endpointsOnly && added.length === 0 && removed.length === 0 }
}
