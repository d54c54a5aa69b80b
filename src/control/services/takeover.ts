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
import { hostsOf, type Route } from '../../contracts/route.ts'
import { bindingKey, bindingKeys, DEFAULT_BACKEND_KEY, matchKey, matchOf, redirectKey, sniKey, tcpKey } from '../../contracts/route-planner.ts'
import { RouteConflictError, StoreUnavailableError } from '../errors.ts'
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
 * Stores `route` claiming its bindings exclusively (409 ROUTE_CONFLICT when another service
 * holds one), or with `takeover`, moving them from their holders in the same version.
 */
export async function putExclusive(
  store: RouteStore,
  route: Route,
  meta: ChangeMeta,
  takeover: boolean,
): Promise<PutResult & { takenOver?: TakenOver[] }> {
  if (!takeover) return store.put(route, meta, { claim: 'exclusive' })
  for (let attempt = 1; attempt <= TAKEOVER_ATTEMPTS; attempt++) {
    const claimed = new Set(bindingKeys(route))
    const holders = (await store.snapshot()).routes.filter((r) => r.serviceName !== route.serviceName && bindingKeys(r).some((k) => claimed.has(k)))
    const takenOver: TakenOver[] = []
    const writes: RouteWrite[] = [{ serviceName: route.serviceName, after: route, claim: 'exclusive' }]
    for (const holder of holders) {
      const { after, moved, redirects, defaultBackend } = withoutClaims(holder, route)
      writes.push({ serviceName: holder.serviceName, after, expect: holder })
      takenOver.push({
        serviceName: holder.serviceName,
        servicePath: moved,
        removed: after === null,
        ...(redirects.length === 0 ? {} : { redirectFromDomain: redirects }),
        ...(defaultBackend ? { isDefaultBackend: true as const } : {}),
      })
    }
    const note =
      takenOver.length === 0
        ? undefined
        : `takeover by "${route.serviceName}": ${takenOver.map((t) => `${describeTaken(t)} from "${t.serviceName}"${t.removed ? ' (route removed)' : ''}`).join('; ')}`
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
  throw new StoreUnavailableError(`the takeover for "${route.serviceName}" kept racing with other writes (${TAKEOVER_ATTEMPTS} attempts)`)
}

