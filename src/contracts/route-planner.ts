/**
 * The route planner: the one place that decides, from the whole routing table, which service
 * serves which (host, path). Pure and deterministic; shared by both planes:
 * - the control plane runs it on every write (`bindingKeys` for the atomic conflict check in
 *   the store, `planRoutes` for the shadowing report of `GET /v1/routes/{serviceName}`,
 *   `/v1/status` and the Docker Flow Proxy form's `warnings`);
 * - the proxy's renderer prints its plan and decides nothing itself.
 *
 * Precedence, for one request (host H, path P):
 * 1. The longest prefix wins, matched on whole path segments ('/demo' serves /demo and
 *    /demo/x, never /demonstration), across every route.
 * 2. At equal prefix length, the more specific host wins: an exact host, then a wildcard
 *    (`*.example.com`; a longer suffix first), then a route without a host.
 * 3. Several routes holding the very same (host, path) — a *binding key* — can only come from
 *    the Docker Flow Proxy form or `com.df.*` labels (Tether's own forms refuse such a write with
 *    409 ROUTE_CONFLICT): Docker Flow Proxy's order decides, `aclName` (default: the service
 *    name) ascending, then the service name. The first one serves, the others are *shadowed*,
 *    and the plan says so.
 * Within one route, a path given for two ports is served by the first destination.
 */
import type { Route } from './route.ts'

/** One (host, path) a service serves. `host` is '' for "any host", else a host name or `*.suffix`. */
export interface HttpBinding {
  host: string
  path: string
  serviceName: string
  port: number
}

/** A binding that lost to another route holding the same (host, path). */
export interface ShadowedBinding extends HttpBinding {
  /** The service that serves this (host, path) instead (may be the same service: an earlier destination). */
  shadowedBy: string
}

export interface RoutePlan {
  /**
   * The bindings that serve, in matching order: every host binding first (longest path, then
   * exact host, then longer wildcard suffix, then path and service name), then the host-less
   * ones sorted by path. A renderer that tries them in this order, first match wins, with
   * host-less bindings consulted only when no host binding has an equal or longer prefix,
   * serves exactly the precedence above.
   */
  http: HttpBinding[]
  shadowed: ShadowedBinding[]
}

/** The key a binding is held under: two routes holding the same key contend for it. */
export function bindingKey(host: string, path: string): string {
  return `http|${host}|${path}`
}

/** Parses a key made by bindingKey. */
export function parseBindingKey(key: string): { host: string; path: string } {
  const [, host = '', ...rest] = key.split('|')
  return { host, path: rest.join('|') }
}

/** Every binding a route asks for, in the route's order (first destination first), without repeats. */
export function routeBindings(route: Route): HttpBinding[] {
  const hosts = route.serviceDomain.length > 0 ? route.serviceDomain : ['']
  const seen = new Set<string>()
  const out: HttpBinding[] = []
  for (const destination of route.destinations) {
    for (const path of destination.servicePath) {
      for (const host of hosts) {
        const key = bindingKey(host, path)
        if (seen.has(key)) continue
        seen.add(key)
        out.push({ host, path, serviceName: route.serviceName, port: destination.port })
      }
    }
  }
  return out
}

/** The binding keys a route holds, sorted (what the store's conflict index records). */
export function bindingKeys(route: Route): string[] {
  return routeBindings(route)
    .map((b) => bindingKey(b.host, b.path))
    .sort()
}

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/** Docker Flow Proxy's order among routes holding one key: aclName (default serviceName), then serviceName. */
export function precedenceOrder(a: Pick<Route, 'serviceName' | 'aclName'>, b: Pick<Route, 'serviceName' | 'aclName'>): number {
  return byString(a.aclName ?? a.serviceName, b.aclName ?? b.serviceName) || byString(a.serviceName, b.serviceName)
}

/** 0: exact host, 1: wildcard, 2: any host. */
export function hostKind(host: string): 0 | 1 | 2 {
  return host === '' ? 2 : host.startsWith('*.') ? 1 : 0
}

/** Matching order of bindings (see RoutePlan.http). */
function matchOrder(a: HttpBinding, b: HttpBinding): number {
  const ka = hostKind(a.host)
  const kb = hostKind(b.host)
  if ((ka === 2) !== (kb === 2)) return ka === 2 ? 1 : -1
  if (ka === 2) return byString(a.path, b.path) || byString(a.serviceName, b.serviceName)
  return b.path.length - a.path.length || ka - kb || b.host.length - a.host.length || byString(a.host, b.host) || byString(a.path, b.path) || byString(a.serviceName, b.serviceName)
}

/** Plans the whole table. The input order does not matter. */
export function planRoutes(routes: readonly Route[]): RoutePlan {
  const ordered = [...routes].sort(precedenceOrder)
  const winners = new Map<string, HttpBinding>()
  const shadowed: ShadowedBinding[] = []
  for (const route of ordered) {
    const own = new Set<string>()
    for (const destination of route.destinations) {
      for (const path of destination.servicePath) {
        for (const host of route.serviceDomain.length > 0 ? route.serviceDomain : ['']) {
          const key = bindingKey(host, path)
          const binding = { host, path, serviceName: route.serviceName, port: destination.port }
          const winner = winners.get(key)
          if (winner === undefined) {
            winners.set(key, binding)
            own.add(key)
          } else if (!own.has(key) || winner.port !== destination.port) {
            shadowed.push({ ...binding, shadowedBy: winner.serviceName })
          }
        }
      }
    }
  }
  shadowed.sort((a, b) => byString(a.serviceName, b.serviceName) || byString(a.host, b.host) || byString(a.path, b.path) || a.port - b.port)
  return { http: [...winners.values()].sort(matchOrder), shadowed }
}

/** What the plan says about one service: the bindings it lost, and the services it shadows. */
export function shadowingOf(plan: RoutePlan, serviceName: string): { shadowed: ShadowedBinding[]; shadows: ShadowedBinding[] } {
  return {
    shadowed: plan.shadowed.filter((s) => s.serviceName === serviceName),
    shadows: plan.shadowed.filter((s) => s.shadowedBy === serviceName && s.serviceName !== serviceName),
  }
}

/** One sentence per shadowed binding, e.g. `app.example.com/demo (port 8080) is served by "alpha"`. */
export function describeShadowed(s: ShadowedBinding): string {
  const where = `${s.host === '' ? '' : s.host}${s.path}`
  return s.shadowedBy === s.serviceName
    ? `${where} (port ${s.port}) of "${s.serviceName}" is served by an earlier destination of the same route`
    : `${where} (port ${s.port}) of "${s.serviceName}" is shadowed: "${s.shadowedBy}" serves it (Docker Flow Proxy order: aclName, else service name)`
}
