/**
 * Writes through Tether's own forms: exclusive claims, and the explicit takeover that moves
 * paths from the services holding them to this one in ONE version (the blue-green switch).
 *
 *   PUT /v1/reconfigure?serviceName=app-green&servicePath=/app&port=80&takeover=true
 *
 * stores app-green's route and removes /app from app-blue's route (app-blue's route is removed
 * when nothing is left of it), atomically, with a change-log note on both entries. Switching
 * back is the same call for app-blue.
 */
import type { ChangeMeta } from '../../contracts/change.ts'
import { cookieNameOf, hostsOf, type Route } from '../../contracts/route.ts'
import { bindingKey, bindingKeys, DEFAULT_BACKEND_KEY, matchKey, matchOf, parseBindingKey, redirectKey, releaseKind, releaseKey, routeBindings, sniKey, tcpKey } from '../../contracts/route-planner.ts'
import { routeConflict, RouteConflictError, StoreUnavailableError, ValidationFailedError } from '../errors.ts'
import { ExpectationFailedError, type PutResult, type RouteStore, type RouteWrite } from '../store/route-store.ts'

/** What a takeover took from one service. */
export interface TakenOver {
  serviceName: string
  /** Paths moved to the new route (for every host the holder served them on). */
  servicePath: string[]
  /** True when nothing was left of the holder's route, so it was removed. */
  removed: boolean
  /** Host redirects moved to the new route (redirectFromDomain). */
  redirectFromDomain?: string[]
  /** The default backend moved to the new route. */
  isDefaultBackend?: true
  /** takeover=true&drain=S: the holder's route stays until then (UTC), for the clients pinned to its tasks. */
  drainUntil?: string
}

/** Options of a write through Tether's own forms. */
export interface ExclusiveOptions {
  takeover?: boolean | undefined
  /** With takeover: seconds the holders' pinned clients keep their tasks (a drain). */
  drainSeconds?: number | undefined
  /** The clock (tests). */
  now?: () => number
}

/** Attempts of a takeover racing other writes to the same services before it gives up. */
const TAKEOVER_ATTEMPTS = 5

/**
 * Pure: `holder` without the bindings `route` claims. A path the holder serves for several
 * hosts moves only when the route claims it for all of them (a route's hosts apply to all its
 * paths, so it cannot keep half); otherwise the takeover is refused with ROUTE_CONFLICT.
 * Returns null when nothing is left of the holder.
 */
export function withoutClaims(holder: Route, route: Route): { after: Route | null; moved: string[]; redirects: string[]; defaultBackend: boolean } {
  const claimed = new Set(bindingKeys(route))
  const moved = new Set<string>()
  const redirects = new Set<string>()
  const destinations = holder.destinations
    .map((d) => ({
      ...d,
      servicePath: d.servicePath.filter((path) => {
        const hosts = hostsOf(holder, d)
        const match = matchKey(matchOf(d))
        const taken = hosts.filter((h) => claimed.has(bindingKey(h, path, match)))
        if (taken.length === 0) return true
        if (taken.length < hosts.length) {
          throw new RouteConflictError(
            `takeover: "${holder.serviceName}" serves ${JSON.stringify(path)} for hosts ${hosts.join(', ')}, and this route claims it for ${taken.join(', ')} only; ` +
              `a takeover moves a path for all of the holder's hosts: give serviceDomain all of them, or change "${holder.serviceName}" first. Nothing was stored`,
          )
        }
        moved.add(path)
        return false
      }),
    }))
    .filter((d) => d.servicePath.length > 0)
    .map((d) => {
      const kept = d.redirectFromDomain?.filter((from) => !claimed.has(redirectKey(from)))
      for (const from of d.redirectFromDomain ?? []) if (claimed.has(redirectKey(from))) redirects.add(from)
      const { redirectFromDomain: _r, ...rest } = d
      return kept === undefined || kept.length === 0 ? rest : { ...rest, redirectFromDomain: kept }
    })
  const defaultBackend = holder.isDefaultBackend === true && claimed.has(DEFAULT_BACKEND_KEY)
  // TCP ports and SNI names move whole (one service each), listed as 'tcp:<port>' and 'sni:<name>'.
  const tcp = (holder.tcp ?? []).filter((d) => {
    if (!claimed.has(tcpKey(d.srcPort))) return true
    moved.add(`tcp:${d.srcPort}`)
    return false
  })
  const sni = (holder.sni ?? [])
    .map((d) => ({
      ...d,
      serverName: d.serverName.filter((n) => {
        if (!claimed.has(sniKey(n))) return true
        moved.add(`sni:${n}`)
        return false
      }),
    }))
    .filter((d) => d.serverName.length > 0)
  let after: Route | null = null
  if (destinations.length > 0 || tcp.length > 0 || sni.length > 0) {
    after = { ...holder, destinations }
    if (defaultBackend) delete after.isDefaultBackend
    if (tcp.length > 0) after.tcp = tcp
    else delete after.tcp
    if (sni.length > 0) after.sni = sni
    else delete after.sni
  }
  return { after, moved: [...moved].sort(), redirects: [...redirects].sort(), defaultBackend }
}

/** What a takeover moved from one holder, for the change log's note. */
function describeTaken(t: TakenOver): string {
  const parts = [...t.servicePath]
  if (t.redirectFromDomain !== undefined) parts.push(`the redirect from ${t.redirectFromDomain.join(',')}`)
  if (t.isDefaultBackend === true) parts.push('the default backend')
  return parts.join(',')
}

/**
 * The main routes a release route's bindings share, checked: every (host, path) of `route` is
 * held by exactly one other, ordinary route (not a canary or a drain). Throws a 400 naming the
 * field otherwise. Returns the holders (one for a canary).
 */
function mainRoutesOf(route: Route, table: readonly Route[]): Route[] {
  const holders = new Map<string, Route>()
  for (const b of routeBindings(route)) {
    const key = bindingKey(b.host, b.path, matchKey(b.match))
    const holder = table.find((r) => r.serviceName !== route.serviceName && releaseKind(r) === undefined && bindingKeys(r).includes(key))
    if (holder === undefined) {
      throw new ValidationFailedError(
        `canary: ${JSON.stringify(`${b.host}${b.path}`)} is served by no other service; a canary takes a share of the new sessions of paths (and hosts) another service holds. Register the main service first, or leave canary out to serve the path alone. Nothing was stored`,
      )
    }
    holders.set(holder.serviceName, holder)
  }
  return [...holders.values()]
}

/** A drain in progress on one of `route`'s bindings: a second release must wait for it (409). */
function refuseDuringDrain(route: Route, table: readonly Route[]): void {
  const keys = new Set(routeBindings(route).map((b) => releaseKey('drain', bindingKey(b.host, b.path, matchKey(b.match)))))
  for (const r of table) {
    if (r.serviceName === route.serviceName || r.drain === undefined) continue
    const key = bindingKeys(r).find((k) => keys.has(k))
    if (key !== undefined) throw routeConflict({ serviceName: route.serviceName, ...parseBindingKey(key), kind: 'drain', holder: r.serviceName })
  }
}

/**
 * A canary route as stored: served from its main route's backend, it takes that route's
 * stickiness and cookie name (so its sessions keep their cookie when it is promoted), unless it
 * names a cookie of its own.
 */
function asCanaryOf(route: Route, main: Route): Route {
  const out: Route = { ...route, sticky: main.sticky }
  if (main.sticky && route.stickyCookie === undefined) out.stickyCookie = cookieNameOf(main)
  if (!main.sticky) delete out.stickyCookie
  return out
}

/**
 * Stores a canary: `route.canary` percent of the new sessions of paths one other service holds.
 * Refused (400) when nobody else holds one of its paths or two services do; 409 ROUTE_CONFLICT
 * when another canary holds one (one canary per path) or a drain is in progress there. The main
 * route is guarded (compare-and-set): removed meanwhile, the write is tried again and refused.
 */
async function putCanary(store: RouteStore, route: Route, meta: ChangeMeta): Promise<PutResult> {
  for (let attempt = 1; attempt <= TAKEOVER_ATTEMPTS; attempt++) {
    const table = (await store.snapshot()).routes
    const mains = mainRoutesOf(route, table)
    if (mains.length > 1) {
      throw new ValidationFailedError(
        `canary: the paths of this route are held by ${mains.map((m) => `"${m.serviceName}"`).join(' and ')}; a canary shares the paths of one service. Give it the paths of one of them. Nothing was stored`,
      )
    }
    const main = mains[0]!
    refuseDuringDrain(route, table)
    const stored = asCanaryOf(route, main)
    try {
      const result = await store.write(
        [
          { serviceName: stored.serviceName, after: stored, claim: 'exclusive' },
          { serviceName: main.serviceName, after: main, expect: main },
        ],
        { ...meta, note: `canary of "${main.serviceName}": ${stored.canary}% of new sessions` },
      )
      const changed = result.changes.some((c) => c.serviceName === stored.serviceName)
      return { route: changed ? stored : (result.befores[0] ?? stored), version: result.version, changed }
    } catch (err) {
      if (!(err instanceof ExpectationFailedError)) throw err
    }
  }
  throw new StoreUnavailableError(`the canary "${route.serviceName}" kept racing with other writes (${TAKEOVER_ATTEMPTS} attempts)`)
}

/**
 * Stores `route` claiming its bindings exclusively (409 ROUTE_CONFLICT when another service
 * holds one), or with `takeover`, moving them from their holders in the same version.
 */
export async function putExclusive(
  store: RouteStore,
  requested: Route,
  meta: ChangeMeta,
  options: ExclusiveOptions | boolean,
): Promise<PutResult & { takenOver?: TakenOver[] }> {
  const { takeover = false, drainSeconds, now = Date.now } = typeof options === 'boolean' ? { takeover: options } : options
  if (drainSeconds !== undefined && !takeover) {
    throw new ValidationFailedError('drain: a drain is part of a takeover: give takeover=true with it (drain=<seconds> keeps the clients pinned to the old service\'s tasks there that long). Nothing was stored')
  }
  if (requested.canary !== undefined) {
    if (takeover) throw new ValidationFailedError('canary: a canary shares the paths of the service holding them; takeover=true moves them. Promote a canary with takeover=true and without canary. Nothing was stored')
    return putCanary(store, requested, meta)
  }
  if (!takeover) return store.put(requested, meta, { claim: 'exclusive' })
  for (let attempt = 1; attempt <= TAKEOVER_ATTEMPTS; attempt++) {
    const claimed = new Set(bindingKeys(requested))
    const table = (await store.snapshot()).routes
    const holders = table.filter((r) => r.serviceName !== requested.serviceName && bindingKeys(r).some((k) => claimed.has(k)))
    let route = requested
    let drainUntil: string | undefined
    if (drainSeconds !== undefined) {
      refuseDuringDrain(requested, table)
      drainUntil = new Date(now() + drainSeconds * 1000).toISOString()
      // The clients pinned to the old tasks carry the old route's cookie: the new route is sticky
      // and reads it (unless it names a cookie of its own), or they would move at once.
      const sticky = holders.find((h) => h.sticky)
      if (sticky !== undefined) route = { ...requested, sticky: true, stickyCookie: requested.stickyCookie ?? cookieNameOf(sticky) }
    }
    const takenOver: TakenOver[] = []
    const writes: RouteWrite[] = [{ serviceName: route.serviceName, after: route, claim: 'exclusive' }]
    for (const holder of holders) {
      const { after, moved, redirects, defaultBackend } = withoutClaims(holder, route)
      if (drainUntil !== undefined && after !== null) {
        throw new RouteConflictError(
          `drain: "${holder.serviceName}" serves more than this route takes (it keeps ${JSON.stringify(bindingKeys(after).map((k) => parseBindingKey(k).path).filter((p) => p !== ''))}); a drain keeps a whole route for its pinned clients. Take over all of its paths, or take over without drain. Nothing was stored`,
        )
      }
      const draining: Route | null = drainUntil === undefined ? after : (({ canary: _c, ...rest }) => ({ ...rest, drain: { until: drainUntil, to: route.serviceName } }))(holder)
      writes.push({ serviceName: holder.serviceName, after: draining, expect: holder })
      takenOver.push({
        serviceName: holder.serviceName,
        servicePath: moved,
        removed: after === null && drainUntil === undefined,
        ...(redirects.length === 0 ? {} : { redirectFromDomain: redirects }),
        ...(defaultBackend ? { isDefaultBackend: true as const } : {}),
        ...(drainUntil === undefined ? {} : { drainUntil }),
      })
    }
    const note =
      takenOver.length === 0
        ? undefined
        : `takeover by "${route.serviceName}": ${takenOver.map((t) => `${describeTaken(t)} from "${t.serviceName}"${t.drainUntil !== undefined ? ` (its pinned clients drain until ${t.drainUntil}, then its route is removed)` : t.removed ? ' (route removed)' : ''}`).join('; ')}`
    try {
      const result = await store.write(writes, note === undefined ? meta : { ...meta, note })
      const changed = result.changes.some((c) => c.serviceName === route.serviceName)
      const answer = { route: changed ? route : (result.befores[0] ?? route), version: result.version, changed }
      return takenOver.length === 0 ? answer : { ...answer, takenOver }
    } catch (err) {
      // Another write changed a holder, or a new holder appeared, since the table was read: again.
      const raced = err instanceof ExpectationFailedError || (err instanceof RouteConflictError && (err as { conflict?: unknown }).conflict !== undefined && attempt < TAKEOVER_ATTEMPTS)
      if (!raced) throw err
    }
  }
  throw new StoreUnavailableError(`the takeover for "${requested.serviceName}" kept racing with other writes (${TAKEOVER_ATTEMPTS} attempts)`)
}

