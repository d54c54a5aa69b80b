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
 *
 * Docker Flow Proxy's per-destination discriminators are part of a binding:
 * - `serviceDomain` of a destination (its `serviceDomain.N`) replaces the route's hosts for it;
 * - `listener` (DFP's srcPort 80 or 443 of an HTTP destination) narrows a binding to the
 *   requests that arrived over plain HTTP or over HTTPS, the same way;
 * - `userAgent` and `serviceHeader` narrow a binding to the requests that carry them. They are
 *   part of the binding key (`http|host|path|match`), so two destinations on one (host, path)
 *   with different discriminators both serve: at equal prefix and host, a binding with
 *   discriminators is tried before the one without (DFP's "last destination without userAgent
 *   is the catch-all").
 * - `servicePathExclude` takes requests out of a binding (they fall through to the next one);
 *   it does not change the key.
 * TCP and SNI passthrough (route.tcp, route.sni) have bindings of their own, in the same key space:
 * - `tcp|<srcPort>`: one service per listen port;
 * - `sni|<serverName>`: one service per TLS server name on the HTTPS port. Names match exact
 *   first, then '*.suffix' (longer suffix first), then 'prefix*' (longer prefix first).
 * Held twice (DFP form, labels), DFP order decides and the loser is in `shadowedExtras`.
 * Besides (host, path) bindings the plan holds the host redirects (`redirectFromDomain`: one
 * service per source host, DFP order) and the default backend (`isDefaultBackend`: the first
 * such route in DFP order serves requests nothing else matches).
 */
import { hostsOf, type Destination, type Route } from './route.ts'

/** Request properties a binding requires besides host and path (Docker Flow Proxy's discriminators). */
export interface BindingMatch {
  /** User-Agent contains one of these, case-insensitively. */
  userAgent?: string[]
  /** Every one of these headers has exactly this value. */
  serviceHeader?: Array<{ name: string; value: string }>
  /** Arrived on this listener (DFP's srcPort 80 / 443 of an HTTP destination). */
  listener?: 'http' | 'https'
}

/** One (host, path) a service serves. `host` is '' for "any host", else a host name or `*.suffix`. */
export interface HttpBinding {
  host: string
  path: string
  serviceName: string
  port: number
  /** Index of the destination in its route (its backend and per-destination rules). */
  destination: number
  /** Discriminators, when the destination has some. */
  match?: BindingMatch
  /** Prefixes taken out of this binding (the destination's servicePathExclude). */
  exclude?: string[]
}

/** A host whose requests are redirected to a service's host (redirectFromDomain). */
export interface HostRedirect {
  from: string
  to: string
  serviceName: string
}

/** A binding that lost to another route holding the same (host, path). */
export interface ShadowedBinding extends HttpBinding {
  /** The service that serves this (host, path) instead (may be the same service: an earlier destination). */
  shadowedBy: string
}

/** A TCP listen port and the service it forwards to. */
export interface TcpBinding {
  srcPort: number
  serviceName: string
  port: number
  /** Index in route.tcp. */
  destination: number
}

/** A TLS server name passed through (not terminated) to a service. */
export interface SniBinding {
  /** Exact name, '*.suffix' or 'prefix*'. */
  serverName: string
  serviceName: string
  port: number
  /** Index in route.sni. */
  destination: number
}

export interface RoutePlan {
  /** TCP listen ports, by port. */
  tcp: TcpBinding[]
  /** SNI passthrough names in matching order: exact, then '*.suffix', then 'prefix*' (longer first). */
  sni: SniBinding[]
  /**
   * The bindings that serve, in matching order: every host binding first (longest path, then
   * exact host, then longer wildcard suffix, then path and service name), then the host-less
   * ones sorted by path. A renderer that tries them in this order, first match wins, with
   * host-less bindings consulted only when no host binding has an equal or longer prefix,
   * serves exactly the precedence above.
   */
  http: HttpBinding[]
  shadowed: ShadowedBinding[]
  /** Host redirects, sorted by source host; one per source host. */
  redirects: HostRedirect[]
  /** The destination that serves what no binding matches (isDefaultBackend), if any. */
  defaultBackend?: { serviceName: string; port: number; destination: number }
  /** Routes that asked to be the default backend or to redirect a host, and lost to another (DFP order). */
  shadowedExtras: Array<{ serviceName: string; what: string; shadowedBy: string }>
  /**
   * Releases: the tasks of a canary or draining route served from the backend of the binding that
   * holds the same (host, path), one entry per binding (see BackendShare). Empty without releases.
   */
  shares: BackendShare[]
}

/**
 * A canary (`canary` percent of new sessions) or a draining route (weight 0: pinned clients only)
 * whose tasks join the backend of `holder`'s destination `holderDestination` for one binding.
 */
export interface BackendShare {
  kind: 'canary' | 'drain'
  /** The canary or draining service. */
  serviceName: string
  /** Its destination (port) for this binding. */
  destination: number
  port: number
  host: string
  path: string
  /** The service whose binding serves the requests, and its destination. */
  holder: string
  holderDestination: number
  /** kind 'canary': the percent of new sessions; 'drain': 0. */
  percent: number
}

/** A canary or a draining route: its paths are served from another service's backend. */
export function releaseKind(route: Pick<Route, 'canary' | 'drain'>): 'canary' | 'drain' | undefined {
  return route.drain !== undefined ? 'drain' : route.canary !== undefined ? 'canary' : undefined
}

/** The canonical text of a match, for keys: '' when there is none. */
export function matchKey(match: BindingMatch | undefined): string {
  if (match === undefined) return ''
  const parts: string[] = []
  if (match.userAgent !== undefined) parts.push(`ua=${match.userAgent.map(encodeURIComponent).join(',')}`)
  if (match.serviceHeader !== undefined) parts.push(`hdr=${match.serviceHeader.map((h) => `${encodeURIComponent(h.name.toLowerCase())}:${encodeURIComponent(h.value)}`).join(',')}`)
  if (match.listener !== undefined) parts.push(`listener=${match.listener}`)
  return parts.join(';')
}

/** The discriminators of a destination, or undefined. */
export function matchOf(destination: Destination): BindingMatch | undefined {
  if (destination.userAgent === undefined && destination.serviceHeader === undefined && destination.listener === undefined) return undefined
  const match: BindingMatch = {}
  if (destination.userAgent !== undefined) match.userAgent = destination.userAgent
  if (destination.serviceHeader !== undefined) match.serviceHeader = destination.serviceHeader
  if (destination.listener !== undefined) match.listener = destination.listener
  return match
}

/** A binding served by a map lookup: any host, no discriminator, no exclusion. */
export function isPlain(b: HttpBinding): boolean {
  return b.host === '' && b.match === undefined && b.exclude === undefined
}

/**
 * The key a binding is held under: two routes holding the same key contend for it. Paths and
 * hosts never hold '|'; the match text is URI-encoded.
 */
export function bindingKey(host: string, path: string, match = ''): string {
  return match === '' ? `http|${host}|${path}` : `http|${host}|${path}|${match}`
}

/** The key of the default backend (isDefaultBackend): one service holds it. */
export const DEFAULT_BACKEND_KEY = 'default|'

/** The key of a host redirect (redirectFromDomain): one service per source host. */
export function redirectKey(from: string): string {
  return `redirect|${from}`
}

/**
 * The key a canary or draining route holds for one of its (host, path) bindings: another space
 * than `http|`, so it never contends with the route serving them, and two canaries on one
 * (host, path) do (one canary per path).
 */
export function releaseKey(kind: 'canary' | 'drain', httpKey: string): string {
  return `${kind}|${httpKey.slice('http|'.length)}`
}

/** The key of a TCP listen port. */
export function tcpKey(srcPort: number): string {
  return `tcp|${srcPort}`
}

/** The key of an SNI passthrough name. */
export function sniKey(serverName: string): string {
  return `sni|${serverName}`
}

/** What a key holds: a (host, path[, match]) binding, a redirected host, the default backend, a TCP listen port or an SNI name. */
export interface ParsedKey {
  kind: 'http' | 'redirect' | 'default' | 'tcp' | 'sni' | 'canary' | 'drain'
  host: string
  path: string
  match: string
  /** kind 'tcp': the listen port. */
  srcPort?: number
  /** kind 'sni': the server name. */
  serverName?: string
}

/** Parses a key made by bindingKey, redirectKey or DEFAULT_BACKEND_KEY. */
export function parseBindingKey(key: string): ParsedKey {
  const [kind = 'http', host = '', path = '', match = ''] = key.split('|')
  if (kind === 'redirect') return { kind, host, path: '', match: '' }
  if (kind === 'default') return { kind, host: '', path: '', match: '' }
  if (kind === 'tcp') return { kind, host: '', path: '', match: '', srcPort: Number(host) }
  if (kind === 'sni') return { kind, host: '', path: '', match: '', serverName: host }
  if (kind === 'canary' || kind === 'drain') return { kind, host, path, match }
  return { kind: 'http', host, path, match }
}

/** The host a destination's redirects go to: its first host that is not a wildcard. */
function redirectTarget(route: Route, destination: Destination): string | undefined {
  return hostsOf(route, destination).find((h) => h !== '' && !h.startsWith('*.'))
}

/** 0: exact name, 1: '*.suffix', 2: 'prefix*'. */
export function sniKind(name: string): 0 | 1 | 2 {
  return name.startsWith('*.') ? 1 : name.endsWith('*') ? 2 : 0
}

function sniOrder(a: SniBinding, b: SniBinding): number {
  return sniKind(a.serverName) - sniKind(b.serverName) || b.serverName.length - a.serverName.length || byString(a.serverName, b.serverName)
}

/** The TCP bindings of a route, in its order. */
export function tcpBindings(route: Route): TcpBinding[] {
  return (route.tcp ?? []).map((d, destination) => ({ srcPort: d.srcPort, serviceName: route.serviceName, port: d.port, destination }))
}

/** The SNI bindings of a route, in its order. */
export function sniBindings(route: Route): SniBinding[] {
  return (route.sni ?? []).flatMap((d, destination) => d.serverName.map((serverName) => ({ serverName, serviceName: route.serviceName, port: d.port, destination })))
}

/** Every binding of one destination, in its order (hosts within each path). */
function destinationBindings(route: Route, destination: Destination, index: number): HttpBinding[] {
  const match = matchOf(destination)
  const out: HttpBinding[] = []
  for (const path of destination.servicePath) {
    for (const host of hostsOf(route, destination)) {
      const b: HttpBinding = { host, path, serviceName: route.serviceName, port: destination.port, destination: index }
      if (match !== undefined) b.match = match
      if (destination.servicePathExclude !== undefined) b.exclude = destination.servicePathExclude
      out.push(b)
    }
  }
  return out
}

const keyOf = (b: HttpBinding): string => bindingKey(b.host, b.path, matchKey(b.match))

/** Every binding a route asks for, in the route's order (first destination first), without repeats. */
export function routeBindings(route: Route): HttpBinding[] {
  const seen = new Set<string>()
  const out: HttpBinding[] = []
  route.destinations.forEach((destination, index) => {
    for (const b of destinationBindings(route, destination, index)) {
      const key = keyOf(b)
      if (seen.has(key)) continue
      seen.add(key)
      out.push(b)
    }
  })
  return out
}

/**
 * The keys a route holds, sorted (what the store's conflict index records): its (host, path)
 * bindings, the hosts it redirects, and the default backend when it asks for it.
 */
export function bindingKeys(route: Route): string[] {
  const release = releaseKind(route)
  if (release !== undefined) return [...new Set(routeBindings(route).map((b) => releaseKey(release, keyOf(b))))].sort()
  const keys = new Set(routeBindings(route).map(keyOf))
  for (const d of route.destinations) if (redirectTarget(route, d) !== undefined) for (const from of d.redirectFromDomain ?? []) keys.add(redirectKey(from))
  if (route.isDefaultBackend === true) keys.add(DEFAULT_BACKEND_KEY)
  for (const b of tcpBindings(route)) keys.add(tcpKey(b.srcPort))
  for (const b of sniBindings(route)) keys.add(sniKey(b.serverName))
  return [...keys].sort()
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

/**
 * Matching order of bindings (see RoutePlan.http): the bindings that need a rule (a host, a
 * discriminator or an exclusion) first, longest path, then exact host, wildcard, any host,
 * then with discriminators before without; then the plain ones by path.
 */
function matchOrder(a: HttpBinding, b: HttpBinding): number {
  const pa = isPlain(a)
  const pb = isPlain(b)
  if (pa !== pb) return pa ? 1 : -1
  if (pa) return byString(a.path, b.path) || byString(a.serviceName, b.serviceName)
  const ka = hostKind(a.host)
  const kb = hostKind(b.host)
  const ma = a.match === undefined ? 1 : 0
  const mb = b.match === undefined ? 1 : 0
  return (
    b.path.length - a.path.length ||
    ka - kb ||
    ma - mb ||
    b.host.length - a.host.length ||
    byString(a.host, b.host) ||
    byString(a.path, b.path) ||
    byString(matchKey(a.match), matchKey(b.match)) ||
    byString(a.serviceName, b.serviceName) ||
    a.destination - b.destination
  )
}

/** Plans the whole table. The input order does not matter. */
export function planRoutes(routes: readonly Route[]): RoutePlan {
  const ordered = [...routes].sort(precedenceOrder)
  const winners = new Map<string, HttpBinding>()
  const shadowed: ShadowedBinding[] = []
  const redirects = new Map<string, HostRedirect>()
  const shadowedExtras: RoutePlan['shadowedExtras'] = []
  let defaultBackend: RoutePlan['defaultBackend']
  const tcp = new Map<number, TcpBinding>()
  const sni = new Map<string, SniBinding>()
  const releases = ordered.filter((r) => releaseKind(r) !== undefined)
  for (const route of ordered) {
    if (releaseKind(route) !== undefined) continue
    for (const b of tcpBindings(route)) {
      const holder = tcp.get(b.srcPort)
      if (holder === undefined) tcp.set(b.srcPort, b)
      else if (holder.serviceName !== b.serviceName) shadowedExtras.push({ serviceName: b.serviceName, what: `TCP port ${b.srcPort}`, shadowedBy: holder.serviceName })
    }
    for (const b of sniBindings(route)) {
      const holder = sni.get(b.serverName)
      if (holder === undefined) sni.set(b.serverName, b)
      else if (holder.serviceName !== b.serviceName) shadowedExtras.push({ serviceName: b.serviceName, what: `TLS server name ${b.serverName} (SNI passthrough)`, shadowedBy: holder.serviceName })
    }
    const own = new Set<string>()
    route.destinations.forEach((destination, index) => {
      for (const binding of destinationBindings(route, destination, index)) {
        const key = keyOf(binding)
        const winner = winners.get(key)
        if (winner === undefined) {
          winners.set(key, binding)
          own.add(key)
        } else if (!own.has(key) || winner.port !== destination.port) {
          shadowed.push({ ...binding, shadowedBy: winner.serviceName })
        }
      }
      const to = redirectTarget(route, destination)
      for (const from of destination.redirectFromDomain ?? []) {
        if (to === undefined) continue
        const holder = redirects.get(from)
        if (holder === undefined) redirects.set(from, { from, to, serviceName: route.serviceName })
        else if (holder.serviceName !== route.serviceName) shadowedExtras.push({ serviceName: route.serviceName, what: `the redirect from ${from}`, shadowedBy: holder.serviceName })
      }
    })
    if (route.isDefaultBackend === true) {
      const first = route.destinations[0]
      if (defaultBackend === undefined && first !== undefined) defaultBackend = { serviceName: route.serviceName, port: first.port, destination: 0 }
      else if (defaultBackend !== undefined) shadowedExtras.push({ serviceName: route.serviceName, what: 'the default backend (isDefaultBackend)', shadowedBy: defaultBackend.serviceName })
    }
  }
  const shares = planReleases(releases, winners, shadowed, shadowedExtras)
  shadowed.sort((a, b) => byString(a.serviceName, b.serviceName) || byString(a.host, b.host) || byString(a.path, b.path) || a.port - b.port)
  const plan: RoutePlan = {
    tcp: [...tcp.values()].sort((a, b) => a.srcPort - b.srcPort),
    sni: [...sni.values()].sort(sniOrder),
    http: [...winners.values()].sort(matchOrder),
    shadowed,
    redirects: [...redirects.values()].sort((a, b) => byString(a.from, b.from)),
    shadowedExtras,
    shares,
  }
  if (defaultBackend !== undefined) plan.defaultBackend = defaultBackend
  return plan
}

/**
 * The canary and draining routes (in DFP order): each binding held by another route becomes a
 * share of that route's backend; a binding nobody holds is served by the release route itself (a
 * canary whose main route was removed keeps serving; so does a drain whose new service went
 * away), as a normal binding. A second canary or drain on one binding loses to the first.
 */
function planReleases(releases: readonly Route[], winners: Map<string, HttpBinding>, shadowed: ShadowedBinding[], shadowedExtras: RoutePlan['shadowedExtras']): BackendShare[] {
  const shares: BackendShare[] = []
  const taken = new Map<string, string>()
  for (const route of releases) {
    const kind = releaseKind(route)!
    route.destinations.forEach((destination, index) => {
      for (const binding of destinationBindings(route, destination, index)) {
        const key = keyOf(binding)
        const first = taken.get(key)
        if (first !== undefined) {
          if (first !== route.serviceName) shadowedExtras.push({ serviceName: route.serviceName, what: `the ${kind} on ${binding.host}${binding.path}`, shadowedBy: first })
          continue
        }
        taken.set(key, route.serviceName)
        const holder = winners.get(key)
        if (holder === undefined) winners.set(key, binding)
        else if (holder.serviceName === route.serviceName) shadowed.push({ ...binding, shadowedBy: route.serviceName })
        else {
          shares.push({ kind, serviceName: route.serviceName, destination: index, port: destination.port, host: binding.host, path: binding.path, holder: holder.serviceName, holderDestination: holder.destination, percent: kind === 'canary' ? (route.canary ?? 0) : 0 })
        }
      }
    })
  }
  return shares
}

export type ShadowedExtra = RoutePlan['shadowedExtras'][number]

/** What the plan says about one service: the bindings (and redirects, default backend) it lost, and what it shadows of others. */
export function shadowingOf(
  plan: RoutePlan,
  serviceName: string,
): { shadowed: ShadowedBinding[]; shadows: ShadowedBinding[]; shadowedExtras: ShadowedExtra[]; shadowsExtras: ShadowedExtra[] } {
  return {
    shadowed: plan.shadowed.filter((s) => s.serviceName === serviceName),
    shadows: plan.shadowed.filter((s) => s.shadowedBy === serviceName && s.serviceName !== serviceName),
    shadowedExtras: plan.shadowedExtras.filter((s) => s.serviceName === serviceName),
    shadowsExtras: plan.shadowedExtras.filter((s) => s.shadowedBy === serviceName),
  }
}

/** One sentence per lost redirect or default backend. */
export function describeShadowedExtra(s: ShadowedExtra): string {
  return `${s.what} asked by "${s.serviceName}" is shadowed: "${s.shadowedBy}" holds it (Docker Flow Proxy order: aclName, else service name)`
}

/** One sentence per shadowed binding, e.g. `app.example.com/demo (port 8080) is served by "alpha"`. */
export function describeShadowed(s: ShadowedBinding): string {
  const m = matchKey(s.match)
  const where = `${s.host === '' ? '' : s.host}${s.path}${m === '' ? '' : ` [${decodeURIComponent(m)}]`}`
  return s.shadowedBy === s.serviceName
    ? `${where} (port ${s.port}) of "${s.serviceName}" is served by an earlier destination of the same route`
    : `${where} (port ${s.port}) of "${s.serviceName}" is shadowed: "${s.shadowedBy}" serves it (Docker Flow Proxy order: aclName, else service name)`
}
