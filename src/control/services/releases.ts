/**
 * Releases in progress (docs/releasing.md), as GET /v1/status and the dashboard show them: every
 * canary (its percent, and the paths it shares with the service that holds them) and every drain
 * (the old service, the one that took its paths, when the drain ends and how long is left). Read
 * from the stored table and its plan, so every control replica answers the same.
 */
import type { Route } from '../../contracts/route.ts'
import type { RoutePlan } from '../../contracts/route-planner.ts'

export interface CanaryReport {
  serviceName: string
  /** Percent of new sessions on the shared paths that go to this service. */
  percent: number
  /** The paths it shares, each with the service that holds it (empty: it shares none, see docs). */
  paths: Array<{ host: string; path: string; sharedWith: string }>
}

export interface DrainReport {
  /** The old service: only its pinned clients still reach its tasks. */
  serviceName: string
  /** The service that took its paths. */
  to: string
  until: string
  /** Whole seconds until `until` (0 once it passed: the drain reaper removes the route shortly). */
  secondsLeft: number
}

export interface ReleasesReport {
  canaries: CanaryReport[]
  drains: DrainReport[]
}

const byName = (a: { serviceName: string }, b: { serviceName: string }): number => (a.serviceName < b.serviceName ? -1 : a.serviceName > b.serviceName ? 1 : 0)

/** The releases of `table` at `now` (ms); `plan` is the table's plan (its canary shares). */
export function releasesOf(table: readonly Route[], plan: Pick<RoutePlan, 'shares'>, now: number): ReleasesReport {
  const canaries: CanaryReport[] = []
  const drains: DrainReport[] = []
  for (const route of table) {
    if (route.drain !== undefined) {
      const left = Math.ceil((Date.parse(route.drain.until) - now) / 1000)
      drains.push({ serviceName: route.serviceName, to: route.drain.to, until: route.drain.until, secondsLeft: Number.isFinite(left) ? Math.max(0, left) : 0 })
    } else if (route.canary !== undefined) {
      const paths = plan.shares
        .filter((s) => s.kind === 'canary' && s.serviceName === route.serviceName)
        .map((s) => ({ host: s.host, path: s.path, sharedWith: s.holder }))
      canaries.push({ serviceName: route.serviceName, percent: route.canary, paths })
    }
  }
  return { canaries: canaries.sort(byName), drains: drains.sort(byName) }
}
