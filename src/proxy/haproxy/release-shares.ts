/**
 * Releases of a stateful service in HAProxy terms (docs/releasing.md). The paths a main service
 * shares with a canary or a draining service are served by ONE backend, the main one's, holding
 * the servers of both (the planner's BackendShare says which):
 * - `balance roundrobin` weights split NEW sessions: the canary's servers together get `percent`
 *   of the total weight, the main service's the rest. A request carrying the affinity cookie of a
 *   server goes to that server whatever the weights (cookie persistence comes before balancing),
 *   so a pinned client stays on its side in both directions, and a new percentage is `set server
 *   <b>/<s> weight <w>` over the runtime API: no reload, nobody moved.
 * - a draining service's servers have weight 0: "the server will not participate in
 *   load-balancing but will still accept persistent connections" (HAProxy's manual, `weight`), the
 *   same as `set server ... state drain`, but held in the configuration, so a reload or a restart
 *   of the proxy keeps it. When the drain ends the control plane removes the route, the servers
 *   leave the backend, and their clients' cookies name no server: they are balanced to the new
 *   service and given a new cookie.
 * The cookie is the main route's: a canary or a takeover with drain inherits its name (the control
 * plane stores it in the new route's stickyCookie), and a task's dynamic cookie value depends on
 * the key and its address only, so the cookies stay valid across the promotion.
 */
import type { Endpoint } from './servers.ts'

/** HAProxy's largest weight: the busiest group of servers gets it, the others in proportion. */
export const MAX_WEIGHT = 256

/** One group of servers of a shared backend and the percent of new sessions it gets (0: pinned clients only). */
export interface ServerGroup {
  percent: number
  servers: Endpoint[]
}

/**
 * The servers of a shared backend with their weights: the main group gets what the canaries leave
 * (at least 1 percent), each group's share split evenly among its servers, scaled so the largest
 * per-server weight is MAX_WEIGHT; a group with a share never rounds down to 0. Names are unique
 * (a server whose name another group took first is left out).
 */
export function weighServers(main: readonly Endpoint[], shares: readonly ServerGroup[]): Endpoint[] {
  const canaryPercent = shares.reduce((sum, g) => sum + (g.servers.length > 0 ? g.percent : 0), 0)
  const groups: ServerGroup[] = [{ percent: Math.max(1, 100 - canaryPercent), servers: [...main] }, ...shares]
  const perServer = groups.map((g) => (g.servers.length === 0 ? 0 : g.percent / g.servers.length))
  const top = Math.max(...perServer)
  const out: Endpoint[] = []
  const taken = new Set<string>()
  groups.forEach((g, i) => {
    const share = perServer[i] ?? 0
    const weight = share === 0 || top === 0 ? 0 : Math.max(1, Math.round((MAX_WEIGHT * share) / top))
    for (const e of g.servers) {
      if (taken.has(e.name)) continue
      taken.add(e.name)
      out.push({ ...e, weight })
    }
  })
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}
