/**
 * snapshot + settings → HAProxy configuration. Pure and deterministic: the same input gives
 * byte-identical output (golden-file tests), and nothing here touches the disk.
 *
 * Routing, in the frontend, prints the plan of contracts/route-planner.ts (which decides every
 * binding, the precedence and what is shadowed; nothing is decided here):
 * - Routes without a domain live in one map file, keyed by `<prefix>/` (`/` for the catch-all)
 *   and looked up with `map_beg` on `<path>/`. Appending '/' to both sides is what makes the
 *   match whole-segment: `/demo/` is a prefix of `/demo/`, `/demo//`, `/demo/x/`, never of
 *   `/demonstration/`. HAProxy keeps `beg` patterns in a prefix tree and returns the LONGEST
 *   match, so 10,000 routes cost one tree lookup, not 10,000 rule evaluations.
 *   The map value is the backend; a request that matches no key gets `tether.notfound`.
 * - Routes with domains become `use_backend` rules (host match + the same prefix test),
 *   in the planner's order (longest prefix first, exact host before wildcard). Each rule also requires that
 *   the domain-less routes have no LONGER prefix for the path (a second map, of prefix
 *   lengths), so the longest prefix wins across all routes; at equal length the route with a
 *   domain wins (it is the more specific one).
 * - Nothing matched → `tether.notfound`, a 404 with a small JSON body.
 *
 * Backends: one per (service, port), `svc_<serviceName>_<port>`, with one plain `server` line per
 * real endpoint: the tasks of the service the proxy found through DNS (see task-discovery.ts),
 * or the route's fixed endpoints. Between reloads the engine adds and removes servers over the
 * runtime API; every reload renders the current ones, so nothing is lost. No fixed slots: file
 * descriptors follow real servers.
 */
import { createHash } from 'node:crypto'
import type { ConfigSnapshot } from '../../contracts/config-snapshot.ts'
import type { CertificateMaterial } from '../../contracts/certificate.ts'
import { cookieNameOf, sampleExpressions, type Destination, type Header, type Route } from '../../contracts/route.ts'
import { hostKind, isPlain, planRoutes, releaseKind, sniKind, type BackendShare, type HttpBinding, type ShadowedBinding } from '../../contracts/route-planner.ts'
import { weighServers } from './release-shares.ts'
import { checkOptionsOf, CHECK_OPTIONS, endpointsOf, serverLine, type Endpoint, type Task } from './servers.ts'
import type { ResolvedSettings } from './settings.ts'
import * as accessLog from './access-log.ts'
import { backendServerOptions, caBundleFile, type CaBundle } from './backend-tls.ts'
import { acmeChallengeLines, challengeMap, INCOMING_PROTO_LINE, routeHttpsLines, forwardedProtoLines, tlsBindLine, tlsFiles, tlsGlobalLines } from './tls.ts'

/** The settings the configuration depends on (a subset of ResolvedSettings). */
export type RenderSettings = Pick<
  ResolvedSettings,
  'stateDir' | 'listen' | 'adminListen' | 'cookieKey' | 'secureCookie' | 'maxconn' | 'nbthread' | 'hardStopAfterMs' | 'maxReloads'
> &
  Partial<Pick<ResolvedSettings, 'descriptorLimit' | 'tlsListen' | 'statsAuth' | 'spareBackends' | 'spareFromRoutes' | 'clientMaxConnections' | 'clientMaxRequestRate' | 'maxBodySize' | 'trustedProxies' | 'proxyProtocol' | 'accessLog'>>

/** What the servers of each backend are, besides the snapshot. */
export interface ServerInput {
  /** Tasks of each service routed through DNS (`tasks.<serviceName>`); a missing service has no server yet. */
  tasks?: (serviceName: string) => readonly Task[] | undefined
  /**
   * How many servers get a health check, in the order rendered (default: all). Each check holds
   * a file descriptor of its own; see descriptors.ts for when the budget runs out.
   */
  checkBudget?: number
  /** TLS certificates (chain + key) served on the HTTPS listener, selected by SNI (settings.tlsListen). */
  certificates?: readonly CertificateMaterial[]
  /** Certificates from the proxy's own files (Docker secrets), served beside them. */
  fileCertificates?: ReadonlyArray<{ name: string; pem: string }>
  /** TCP listen ports this proxy found it cannot bind (port → why): left out and reported. */
  unbindable?: ReadonlyMap<number, string>
  /**
   * Routes served from a spare backend (serviceName → spare name), as the engine placed them
   * between reloads. A placement that no longer fits (the route gained a feature, the spare is
   * gone) is ignored: the route gets its own backend, and the skeleton says a reload is due.
   */
  placement?: ReadonlyMap<string, string>
  /** The CA bundles of the routes' backendCaSecret, as the proxy read them (backend-tls.ts); a missing one: the route answers 503. */
  caBundles?: ReadonlyMap<string, CaBundle>
}

export interface RenderedBackend {
  name: string
  serviceName: string
  port: number
  /** True when the servers are the tasks of tasks.<serviceName> (no fixed endpoints). */
  dns: boolean
  /** Dynamic affinity cookie on (sticky route). */
  sticky: boolean
  servers: Endpoint[]
  /** Names of the servers rendered without a health check (descriptor budget exhausted). */
  unchecked: string[]
  /** Server options besides the check (e.g. 'send-proxy-v2'), on every server line and `add server`. */
  serverOptions?: string
  /**
   * Releases: the canary and draining services whose tasks are servers of this backend too (with
   * weights, see release-shares.ts). Their task changes are applied by a render, not a patch.
   */
  shares?: Array<Pick<BackendShare, 'kind' | 'serviceName' | 'port' | 'percent'>>
  /** The health-check options of its servers when not CHECK_OPTIONS (the route's interval, slow start). */
  checkOptions?: string
  /**
   * The route has an HTTP health check: a server added over the runtime API starts down and gets
   * traffic once its first check passes (HAProxy would otherwise count it up until a check fails).
   */
  startDown?: boolean
}

export interface RenderedFile {
  /** Absolute path the configuration refers to (under stateDir). */
  path: string
  text: string
  /** owners[i] = services that produced line i+1 (for mapping `haproxy -c` errors back). */
  owners: ReadonlyArray<readonly string[]>
  /** File mode the renderer asks for; the engine writes every file of the state directory 0600 anyway (haproxy-engine.ts writePrivate). */
  mode?: number
}

export interface RenderedConfig {
  /** haproxy.cfg text. */
  config: string
  /** owners[i] = services that produced line i+1 of `config`. */
  owners: ReadonlyArray<readonly string[]>
  /** Files the configuration refers to (the routes map); write them before using `config`. */
  files: RenderedFile[]
  /** Backends rendered, sorted by name, with their servers. */
  backends: RenderedBackend[]
  /**
   * The configuration without its version comment and without server lines: two configurations
   * with the same skeleton differ only in servers, which the runtime API can change without a reload.
   */
  skeleton: string
  /** Bindings that lost to another route holding the same host and path (from the planner). */
  shadowed: ShadowedBinding[]
  /** TCP listen ports bound by this configuration. */
  tcpPorts: number[]
  /** TCP and SNI routes this proxy serves without a listener, and why (reported in its status). */
  problems: Array<{ serviceName: string; problem: string }>
  /** The placements rendered (serviceName → spare backend): those of ServerInput.placement that fit. */
  placement: Map<string, string>
  /** The spare backends rendered, by kind, in order (none below settings.spareFromRoutes routes). */
  spares: { sticky: string[]; plain: string[] }
}

export const NOT_FOUND_BACKEND = 'tether.notfound'
/** The admin listener's /metrics/tether: the agent's route metrics on paths.metricsSocket. */
export const METRICS_BACKEND = 'tether.metrics'
const NOT_FOUND_BODY = JSON.stringify({ statusCode: 404, code: 'NO_ROUTE', error: 'Not Found', message: 'No route matches this host and path' })
/** Seconds a client is asked to wait (Retry-After) when no task of the route can take its request. */
export const NO_TASK_RETRY_AFTER = 5
/**
 * HAProxy's own 503 (no server up, connection failed after the retries, queue timeout), for every
 * route: what happened and when to try again, instead of HAProxy's bare "No server is available".
 */
export const NO_TASK_BODY = JSON.stringify({
  statusCode: 503,
  code: 'NO_TASK_AVAILABLE',
  error: 'Service Unavailable',
  message: `No task of this service can take the request now: none is running, none passes its health check, or none accepted the connection. Retry in ${NO_TASK_RETRY_AFTER} seconds.`,
})

export function backendName(serviceName: string, port: number): string {
  return `svc_${serviceName}_${port}`
}

/** What a destination's backend does to requests besides choosing a server (equal texts share a backend). */
function backendRulesKey(route: Route, d: Destination): string {
  return JSON.stringify([d.pathRewrite, d.stripPrefix === true ? d.servicePath : null, d.allowedMethods, d.deniedMethods, route.auth !== undefined && d.ignoreAuthorization !== true, d.timeoutServer, d.timeoutTunnel])
}

/**
 * The backend a destination of a route uses: one per (service, port), `svc_<serviceName>_<port>`,
 * except that a destination whose per-destination rules (rewrites, methods, auth, timeouts)
 * differ from those of the first destination on that port gets its own, `..._<port>-d<index>`
 * (no plain backend name ends in '-d<digits>': it always ends in '_<port>').
 */
export function destinationBackend(route: Route, index: number): string {
  const d = route.destinations[index]
  if (d === undefined) throw new Error(`destinationBackend: ${route.serviceName} has no destination ${index}`)
  // The common case, and the one every binding of a 10,000-route table asks about: nothing to compare.
  if (route.destinations.length === 1) return backendName(route.serviceName, d.port)
  const key = backendRulesKey(route, d)
  const first = route.destinations.findIndex((o) => o.port === d.port)
  const same = route.destinations.findIndex((o) => o.port === d.port && backendRulesKey(route, o) === key)
  return same === first ? backendName(route.serviceName, d.port) : `${backendName(route.serviceName, d.port)}-d${same}`
}

/** The userlist of a route with basic authentication. */
export function userlistName(serviceName: string): string {
  return `tether_users_${serviceName}`
}

/** A header value as an HAProxy log-format string: the allowed sample expressions kept, every other '%' literal. */
export function headerValue(value: string): string {
  let out = ''
  let i = 0
  while (i < value.length) {
    const expr = value[i] === '%' ? sampleExpressions.find((e) => value.startsWith(e, i)) : undefined
    if (expr !== undefined) {
      out += expr
      i += expr.length
    } else {
      out += value[i] === '%' ? '%%' : value[i]
      i++
    }
  }
  return quote(out)
}

/** A quoted argument of a sample converter (inside a single-quoted configuration word). */
function converterArg(text: string): string {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`
}

/** A path as a PCRE literal. */
function regexLiteral(path: string): string {
  return path.replace(/[^A-Za-z0-9/_-]/g, (c) => `\\${c}`)
}

/** A refusal reason, as the access log's `refused` field and the refusal counters' `reason` label. */
export type RefusalReason = 'ip' | 'rate' | 'auth' | 'size'

/**
 * A policy's refusal: its reason in txn.tether_refused (written in the access log line), then the
 * deny on the same condition (a cheap one, read twice: an address list or a stick counter).
 */
function refuse(reason: RefusalReason, condition: string, deny: string): string[] {
  return [`http-request set-var(txn.tether_refused) str(${reason}) if ${condition}`, `http-request deny ${deny} if ${condition}`]
}

/** The per-request lines of one destination's backend, in the order HAProxy runs them. */
function destinationRules(route: Route, d: Destination, defaultBodyLimit = 0): string[] {
  const out: string[] = [...healthCheckLines(route, d)]
  // Values from a closed list and type/subtype tokens (route.ts rules.mimeType): nothing to quote.
  if (route.compressionAlgo !== undefined) out.push(`compression algo ${route.compressionAlgo.join(' ')}`)
  if (route.compressionType !== undefined) out.push(`compression type ${route.compressionType.join(' ')}`)
  if (d.timeoutServer !== undefined) out.push(`timeout server ${d.timeoutServer}s`)
  if (d.timeoutTunnel !== undefined) out.push(`timeout tunnel ${d.timeoutTunnel}s`)
  // Access by client address first: nothing else of the route runs for a refused address.
  // Each refusal first names its reason (txn.tether_refused, in the access log and the refusal counters).
  if (route.ipAllow !== undefined) out.push(...refuse('ip', `!{ src ${route.ipAllow.join(' ')} }`, 'deny_status 403'))
  if (route.ipDeny !== undefined) out.push(...refuse('ip', `{ src ${route.ipDeny.join(' ')} }`, 'deny_status 403'))
  // Rate limits after access by address: a refused address spends no one's budget.
  out.push(...rateLimitRules(route))
  // The body limit (the route's, or TETHER_MAX_BODY_SIZE): refused before anything is read or sent on.
  const bodyLimit = route.bodyLimit ?? defaultBodyLimit
  if (bodyLimit > 0) out.push(...bodyLimitLines(bodyLimit))
  // Docker Flow Proxy answers a refused method with 403 (http-request deny); so does Tether.
  if (d.allowedMethods !== undefined) out.push(`http-request deny unless { method ${d.allowedMethods.join(' ')} }`)
  if (d.deniedMethods !== undefined) out.push(`http-request deny if { method ${d.deniedMethods.join(' ')} }`)
  if (route.auth !== undefined && d.ignoreAuthorization !== true) {
    // The password is checked once (a hash per request is costly): the reason, then the challenge on it.
    out.push(`http-request set-var(txn.tether_refused) str(auth) unless { http_auth(${userlistName(route.serviceName)}) }`)
    out.push(`http-request auth realm ${quote(route.auth.realm ?? `${route.serviceName}Realm`)} if { var(txn.tether_refused) -m str auth }`)
    // The credentials are the proxy's business, not the service's (as in Docker Flow Proxy).
    out.push('http-request del-header Authorization')
  }
  const headers = (verb: string, list: Header[] | undefined): void => {
    for (const h of list ?? []) out.push(`${verb} ${h.name} ${headerValue(h.value)}`)
  }
  for (const name of route.delReqHeader ?? []) out.push(`http-request del-header ${name}`)
  headers('http-request set-header', route.setReqHeader)
  headers('http-request add-header', route.addReqHeader)
  if (d.stripPrefix === true) {
    const prefixes = d.servicePath.filter((p) => p !== '/').sort((a, b) => b.length - a.length || (a < b ? -1 : 1))
    if (prefixes.length > 0) out.push(`http-request set-path '%[path,regsub(${converterArg(`^(?:${prefixes.map(regexLiteral).join('|')})(/|$)`)},"/")]'`)
  }
  for (const r of d.pathRewrite ?? []) out.push(`http-request set-path '%[path,regsub(${converterArg(r.search)},${converterArg(r.replace)})]'`)
  for (const name of route.delResHeader ?? []) out.push(`http-response del-header ${name}`)
  headers('http-response set-header', route.setResHeader)
  headers('http-response add-header', route.addResHeader)
  return out
}

/** The ACL conditions of a binding's discriminators and exclusions (after host and path). */
function matchConditions(b: HttpBinding): string {
  let out = ''
  // '--' ends the ACL options: a value may start with '-' (HAProxy would read it as an option).
  if (b.match?.userAgent !== undefined) out += ` { req.hdr(user-agent) -m sub -i -- ${b.match.userAgent.map(quote).join(' ')} }`
  for (const h of b.match?.serviceHeader ?? []) out += ` { req.hdr(${h.name}) -m str -- ${quote(h.value)} }`
  if (b.match?.listener !== undefined) out += b.match.listener === 'https' ? ' { ssl_fc }' : ' !{ ssl_fc }'
  if (b.exclude !== undefined) out += ` !{ var(txn.path) -m beg ${b.exclude.map((e) => (e === '/' ? '/' : `${e}/`)).join(' ')} }`
  return out
}

/** Files the engine keeps in stateDir. */
export function statePaths(stateDir: string) {
  const dir = stateDir.endsWith('/') ? stateDir.slice(0, -1) : stateDir
  return {
    config: `${dir}/haproxy.cfg`,
    candidate: `${dir}/haproxy.cfg.candidate`,
    adminSocket: `${dir}/admin.sock`,
    masterSocket: `${dir}/master.sock`,
    pidFile: `${dir}/haproxy.pid`,
    serverState: `${dir}/server-state`,
    mapDir: `${dir}/maps`,
    /** Self-signed, generated once: HTTPS answers with it for names no certificate covers. */
    defaultCertificate: `${dir}/default-cert.pem`,
    /** The terminating HTTPS frontend's socket when SNI passthrough routes share the HTTPS port. */
    tlsSocket: `${dir}/tls-terminate.sock`,
    /** The agent's per-route metrics (route-metrics.ts), served on the admin listener's /metrics/tether. */
    metricsSocket: `${dir}/metrics.sock`,
    /** The certificates in force (chains and keys, 0600), so a restart serves them at once. */
    certificates: `${dir}/certificates.json`,
  }
}

/** A bind line argument: ':80' → '*:80' is what HAProxy means anyway; keep as given. */
function bind(listen: string): string {
  return listen.startsWith(':') ? `*${listen}` : listen
}

/** A literal for a regex in a single-quoted HAProxy argument (cookie names hold no quote). */
function regexEscape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, (c) => `\\${c}`)
}

/** HAProxy double-quoted string: only '"', '\' and '$' need escaping. */
function quote(text: string): string {
  return `"${text.replace(/[\\"$]/g, (c) => `\\${c}`)}"`
}

interface Lines {
  text: string[]
  /** Shared, never mutated: one array per section, not one per line (10,000 routes are ~100,000 lines). */
  owners: Array<readonly string[]>
  push(line: string, owners?: readonly string[]): void
}

function lines(): Lines {
  const text: string[] = []
  const owners: Array<readonly string[]> = []
  const none: readonly string[] = []
  return {
    text,
    owners,
    push(line, by = none) {
      text.push(line)
      owners.push(by)
    },
  }
}

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/** Renders the whole configuration. Routes are taken sorted by serviceName, whatever the input order. */
export function render(snapshot: ConfigSnapshot, settings: RenderSettings, serverInput: ServerInput = {}): RenderedConfig {
  const paths = statePaths(settings.stateDir)
  const routes = [...snapshot.routes].sort((a, b) => byString(a.serviceName, b.serviceName))

  // The planner decides who serves what; this only prints its plan.
  const plan = planRoutes(routes)
  const backends: RenderedConfig['backends'] = []
  const byBackend = new Map<string, { route: Route; destination: Destination }>()
  const routeOf = new Map(routes.map((r) => [r.serviceName, r]))
  const backendOf = (serviceName: string, destination: number): string => {
    const r = routeOf.get(serviceName)
    return r === undefined ? NOT_FOUND_BACKEND : (placement.get(serviceName) ?? destinationBackend(r, destination))
  }
  // Spare backends (a large table only), and the routes the engine placed in them.
  const spareCount = routes.length >= (settings.spareFromRoutes ?? Number.POSITIVE_INFINITY) ? (settings.spareBackends ?? 0) : 0
  const spares = { sticky: spareNames('sticky', spareCount), plain: spareNames('plain', spareCount) }
  const placement = new Map<string, string>()
  if (spareCount > 0 && serverInput.placement !== undefined && serverInput.placement.size > 0) {
    const taken = new Set<string>()
    const framed = framedServices(plan)
    for (const [serviceName, spare] of serverInput.placement) {
      const route = routeOf.get(serviceName)
      const kind = route === undefined || framed.has(serviceName) ? undefined : spareKind(route)
      if (kind === undefined || !spares[kind].includes(spare) || taken.has(spare)) continue
      taken.add(spare)
      placement.set(serviceName, spare)
    }
  }
  // TLS towards the tasks verified with a CA bundle: the bundle's file, or why the route answers 503 here.
  const caFiles = new Map<string, RenderedFile>()
  const caMissing = new Map<string, string>()
  for (const route of routes) {
    const secret = route.backendCaSecret
    if (secret === undefined) continue
    const bundle = serverInput.caBundles?.get(secret) ?? { problem: 'was not read by this proxy' }
    if ('pem' in bundle) caFiles.set(secret, { ...caBundleFile(paths.mapDir, secret, bundle.pem), owners: [] })
    else caMissing.set(route.serviceName, `the Docker secret ${secret} (backendCaSecret) ${bundle.problem}: this proxy answers 503 for the route rather than reach its tasks unverified`)
  }
  /** The HTTP backend of one destination of `route`, named `name`, with its servers. */
  const httpBackend = (route: Route, destination: Destination, name: string): RenderedBackend => {
    const dns = route.endpoints.length === 0
    const backend: RenderedBackend = { name, serviceName: route.serviceName, port: destination.port, dns, sticky: route.sticky, servers: endpointsOf(route, destination.port, dns ? serverInput.tasks?.(route.serviceName) : undefined), unchecked: [] }
    const checkOptions = checkOptionsOf(route)
    if (checkOptions !== CHECK_OPTIONS) backend.checkOptions = checkOptions
    if (route.healthCheckPath !== undefined) backend.startDown = true
    const options = backendServerOptions(route, route.backendCaSecret === undefined ? undefined : caFiles.get(route.backendCaSecret)?.path)
    if (options !== undefined) backend.serverOptions = options
    return backend
  }
  // Releases: the canary and draining services' tasks join the backend of the binding they share.
  const sharesOf = new Map<string, BackendShare[]>()
  for (const share of plan.shares) {
    const name = backendOf(share.holder, share.holderDestination)
    const list = sharesOf.get(name) ?? []
    if (!list.some((o) => o.serviceName === share.serviceName && o.port === share.port)) list.push(share)
    sharesOf.set(name, list)
  }
  /** The destinations of canary and draining routes that serve bindings themselves (nobody else holds them). */
  const selfServed = new Set([...plan.http.map((b) => `${b.serviceName}/${b.destination}`), ...(plan.defaultBackend === undefined ? [] : [`${plan.defaultBackend.serviceName}/${plan.defaultBackend.destination}`])])
  const withShares = (backend: RenderedBackend): RenderedBackend => {
    const shares = sharesOf.get(backend.name)
    if (shares === undefined) return backend
    const groups = shares.map((share) => {
      const r = routeOf.get(share.serviceName)!
      const dns = r.endpoints.length === 0
      return { percent: share.percent, servers: endpointsOf(r, share.port, dns ? serverInput.tasks?.(r.serviceName) : undefined) }
    })
    backend.servers = weighServers(backend.servers, groups)
    backend.shares = shares.map((x) => ({ kind: x.kind, serviceName: x.serviceName, port: x.port, percent: x.percent }))
    return backend
  }
  /** Placed routes' backends, by spare name (rendered in the spare section, not with the others). */
  const placed = new Map<string, RenderedBackend>()
  for (const route of routes) {
    const spare = placement.get(route.serviceName)
    if (spare !== undefined) {
      const backend = httpBackend(route, route.destinations[0]!, spare)
      backends.push(backend)
      placed.set(spare, backend)
      continue
    }
    const release = releaseKind(route) !== undefined
    for (const [index, destination] of route.destinations.entries()) {
      // A canary's or draining route's tasks are served from the holder's backend (withShares).
      if (release && !selfServed.has(`${route.serviceName}/${index}`)) continue
      const backend = destinationBackend(route, index)
      if (byBackend.has(backend)) continue
      byBackend.set(backend, { route, destination })
      backends.push(withShares(httpBackend(route, destination, backend)))
    }
  }

  // TCP listen ports and SNI passthrough names (the planner's winners) → mode tcp frontends and backends.
  const problems: RenderedConfig['problems'] = [...caMissing].map(([serviceName, problem]) => ({ serviceName, problem }))
  const ownPorts = new Map<number, string>()
  const portOf = (listen: string | undefined): number | undefined => (listen === undefined ? undefined : Number(listen.slice(listen.lastIndexOf(':') + 1)))
  for (const [listen, what] of [
    [settings.listen, 'HTTP listener (TETHER_PROXY_LISTEN)'],
    [settings.tlsListen, 'HTTPS listener (TETHER_PROXY_LISTEN_TLS)'],
    [settings.adminListen, 'admin listener (TETHER_ADMIN_LISTEN)'],
  ] as const) {
    const port = portOf(listen)
    if (port !== undefined) ownPorts.set(port, what)
  }
  const streamBackends: Array<{ backend: RenderedBackend; route: Route; timeoutServer?: number }> = []
  const streamBackend = (route: Route, name: string, port: number, sendProxyProtocol: boolean | undefined, timeoutServer?: number): string => {
    const dns = route.endpoints.length === 0
    const backend: RenderedBackend = {
      name,
      serviceName: route.serviceName,
      port,
      dns,
      sticky: false, // no cookie: TCP affinity is a stick table on the client address
      servers: endpointsOf(route, port, dns ? serverInput.tasks?.(route.serviceName) : undefined),
      unchecked: [],
    }
    if (sendProxyProtocol === true) backend.serverOptions = 'send-proxy-v2'
    streamBackends.push({ backend, route, ...(timeoutServer === undefined ? {} : { timeoutServer }) })
    return name
  }
  const tcpFrontends: Array<{ srcPort: number; serviceName: string; backend: string; timeoutClient?: number }> = []
  for (const b of plan.tcp) {
    const route = routeOf.get(b.serviceName)
    const d = route?.tcp?.[b.destination]
    if (route === undefined || d === undefined) continue
    const own = ownPorts.get(b.srcPort)
    const unbindable = serverInput.unbindable?.get(b.srcPort)
    if (own !== undefined || unbindable !== undefined) {
      problems.push({ serviceName: b.serviceName, problem: `TCP port ${b.srcPort} is not served by this proxy: ${own !== undefined ? `it is this proxy's ${own}` : `it cannot be bound (${unbindable})`}; the proxy serves everything else` })
      continue
    }
    const backend = streamBackend(route, `tcp_${route.serviceName}_${b.srcPort}`, d.port, d.sendProxyProtocol, d.timeoutServer)
    tcpFrontends.push({ srcPort: b.srcPort, serviceName: b.serviceName, backend, ...(d.timeoutClient === undefined ? {} : { timeoutClient: d.timeoutClient }) })
  }
  const sniRules: Array<{ serviceName: string; backend: string; names: string[]; kind: 0 | 1 | 2 }> = []
  if (plan.sni.length > 0 && settings.tlsListen === undefined) {
    for (const name of [...new Set(plan.sni.map((b) => b.serviceName))]) problems.push({ serviceName: name, problem: 'its SNI passthrough names are not served by this proxy: it has no HTTPS listener (TETHER_PROXY_LISTEN_TLS=off)' })
  } else {
    const sniBackendOf = new Map<string, string>()
    for (const b of plan.sni) {
      const route = routeOf.get(b.serviceName)
      const d = route?.sni?.[b.destination]
      if (route === undefined || d === undefined) continue
      const id = `${b.serviceName}/${b.destination}`
      let backend = sniBackendOf.get(id)
      if (backend === undefined) {
        const first = (route.sni ?? []).findIndex((o) => o.port === d.port)
        backend = streamBackend(route, `sni_${route.serviceName}_${d.port}${first === b.destination ? '' : `-d${b.destination}`}`, d.port, d.sendProxyProtocol)
        sniBackendOf.set(id, backend)
      }
      const kind = sniKind(b.serverName)
      const text = kind === 0 ? b.serverName : kind === 1 ? b.serverName.slice(1) : b.serverName.slice(0, -1)
      const last = sniRules[sniRules.length - 1]
      if (last !== undefined && last.backend === backend && last.kind === kind) last.names.push(text)
      else sniRules.push({ serviceName: b.serviceName, backend, names: [text], kind })
    }
  }
  const passthrough = sniRules.length > 0 && settings.tlsListen !== undefined
  for (const { backend } of streamBackends) backends.push(backend)
  // The access log's routes map: backend (and path) → service and path rule.
  const logMap = settings.accessLog === undefined || settings.accessLog.format === 'off' ? undefined : logRoutesOf(plan, backends, backendOf, paths.mapDir)

  // Plain bindings (any host, no discriminator) → the map (sorted by key: deterministic, and easy to read).
  const mapEntries = plan.http
    .filter(isPlain)
    .map((b) => ({ key: b.path === '/' ? '/' : `${b.path}/`, backend: backendOf(b.serviceName, b.destination), length: b.path.length, owner: b.serviceName }))
    .sort((a, b) => byString(a.key, b.key))
  const mapFile = (kind: string, value: (e: (typeof mapEntries)[number]) => string): RenderedFile => {
    const text = mapEntries.map((e) => `${e.key} ${value(e)}\n`).join('')
    const hash = createHash('sha256').update(text).digest('hex').slice(0, 16)
    return { path: `${paths.mapDir}/${kind}-${hash}.map`, text, owners: mapEntries.map((e) => [e.owner]) }
  }
  const routesMap = mapFile('routes', (e) => e.backend)
  // The affinity cookie's name of each sticky spare in use (read by the spare's rules); present
  // whenever spares are, so a placement is an `add map`, not a new file.
  const cookieEntries = [...placement].filter(([, spare]) => spares.sticky.includes(spare)).map(([serviceName, spare]) => ({ key: spare, value: cookieNameOf(routeOf.get(serviceName)!), owner: serviceName }))
  cookieEntries.sort((a, b) => byString(a.key, b.key))
  const cookiesText = cookieEntries.map((e) => `${e.key} ${e.value}\n`).join('')
  const cookiesMap: RenderedFile | undefined =
    spareCount === 0 ? undefined : { path: `${paths.mapDir}/cookies-${createHash('sha256').update(cookiesText).digest('hex').slice(0, 16)}.map`, text: cookiesText, owners: cookieEntries.map((e) => [e.owner]) }
  /** Prefix length per key, consulted only by rules with a domain (present only when there are some). */
  const lengthsMap = mapFile('lengths', (e) => String(e.length))

  // The other bindings (a host, a discriminator or an exclusion) → use_backend lines in the
  // plan's order; consecutive bindings of one (backend, path, host kind, conditions) share a line.
  const hostRules: Array<{ serviceName: string; backend: string; path: string; kind: 0 | 1 | 2; hosts: string[]; conditions: string }> = []
  /** Exact-host bindings of routes in spares: `<host><prefix>/` keys of the sparehosts and sparelengths maps. */
  const spareHostEntries: Array<{ key: string; backend: string; length: number; owner: string }> = []
  for (const b of plan.http) {
    if (isPlain(b)) continue
    const spare = placement.get(b.serviceName)
    if (spare !== undefined) {
      spareHostEntries.push({ key: `${b.host}${b.path === '/' ? '/' : `${b.path}/`}`, backend: spare, length: b.path.length, owner: b.serviceName })
      continue
    }
    const kind = hostKind(b.host)
    const host = kind === 1 ? b.host.slice(1) : b.host
    const backend = backendOf(b.serviceName, b.destination)
    const conditions = matchConditions(b)
    const last = hostRules[hostRules.length - 1]
    if (last !== undefined && last.backend === backend && last.path === b.path && last.kind === kind && last.conditions === conditions && kind !== 2) last.hosts.push(host)
    else hostRules.push({ serviceName: b.serviceName, backend, path: b.path, kind, hosts: [host], conditions })
  }
  const defaultBackend = plan.defaultBackend === undefined ? NOT_FOUND_BACKEND : backendOf(plan.defaultBackend.serviceName, plan.defaultBackend.destination)
  spareHostEntries.sort((a, b) => byString(a.key, b.key))
  const spareFile = (kind: string, value: (e: (typeof spareHostEntries)[number]) => string): RenderedFile => {
    const text = spareHostEntries.map((e) => `${e.key} ${value(e)}\n`).join('')
    return { path: `${paths.mapDir}/${kind}-${createHash('sha256').update(text).digest('hex').slice(0, 16)}.map`, text, owners: spareHostEntries.map((e) => [e.owner]) }
  }
  // Present whenever spares are (a placement is an `add map`, not a new file).
  const spareMaps = spareCount === 0 ? undefined : { hosts: spareFile('sparehosts', (e) => e.backend), lengths: spareFile('sparelengths', (e) => String(e.length)) }

  // TLS listener (settings.tlsListen) with its certificate files; ACME answers whenever there are some.
  const tls = settings.tlsListen === undefined ? undefined : { listen: settings.tlsListen, ...tlsFiles(paths.mapDir, serverInput.certificates ?? [], serverInput.fileCertificates) }
  const acmeMap = snapshot.challenges !== undefined && snapshot.challenges.length > 0 ? challengeMap(paths.mapDir, snapshot.challenges) : undefined

  const out = lines()
  const blank = (): void => out.push('')
  out.push(`# Generated by Tether from config version ${snapshot.version}. Do not edit: the proxy agent rewrites it.`)
  out.push('global')
  out.push('    master-worker')
  out.push(`    stats socket ${paths.adminSocket} mode 600 level admin expose-fd listeners`)
  out.push('    stats timeout 30s')
  out.push(`    server-state-file ${paths.serverState}`)
  // How long an old worker keeps its connections after a reload (TETHER_DRAIN_TIMEOUT); 0: as long as they live.
  if (settings.hardStopAfterMs > 0) out.push(`    hard-stop-after ${settings.hardStopAfterMs}ms`)
  out.push(`    mworker-max-reloads ${settings.maxReloads}`)
  out.push(`    maxconn ${settings.maxconn}`)
  if (settings.descriptorLimit !== undefined) out.push(`    fd-hard-limit ${settings.descriptorLimit}`)
  if (settings.nbthread !== undefined) out.push(`    nbthread ${settings.nbthread}`)
  if (settings.tlsListen !== undefined) for (const line of tlsGlobalLines()) out.push(line)
  for (const line of accessLog.globalLogLines(settings.accessLog)) out.push(line)
  blank()
  out.push('defaults')
  out.push('    mode http')
  out.push('    option forwardfor')
  out.push('    option redispatch 1')
  out.push('    # On reload the old worker answers the next request of an idle keep-alive connection (with')
  out.push('    # Connection: close) instead of closing it under the client, which would fail that request.')
  out.push('    option idle-close-on-response')
  out.push('    retries 3')
  out.push('    load-server-state-from-file global')
  out.push('    # A removed Swarm task blackholes SYNs: give up fast, retry on another server (measured on Swarm: 0 failures in a scale-down).')
  out.push('    timeout connect 500ms')
  out.push('    timeout client 60s')
  out.push('    timeout server 60s')
  out.push('    # A new connection must send its request headers within 5 s: a client trickling them holds a slot no longer.')
  out.push('    timeout http-request 5s')
  out.push('    timeout http-keep-alive 10s')
  out.push('    timeout queue 10s')
  out.push('    timeout check 2s')
  out.push('    # WebSocket and other upgraded connections')
  out.push('    timeout tunnel 1h')
  out.push('    timeout client-fin 10s')
  out.push('    # A client gone from an upgraded connection frees its slot once the application is silent 10 s, not after the hour.')
  out.push('    timeout server-fin 10s')
  out.push(`    dynamic-cookie-key '${settings.cookieKey}'`)
  out.push(`    http-error status 503 content-type application/json hdr Retry-After ${NO_TASK_RETRY_AFTER} string ${quote(NO_TASK_BODY)}`)
  blank()
  out.push('frontend http')
  out.push(`    bind ${bind(settings.listen)}`)
  for (const line of trustedProxyLines(settings)) out.push(line)
  for (const line of clientLimitLines(settings)) out.push(line)
  if (routes.some((r) => r.redirectWhenHttpProto === true)) out.push(INCOMING_PROTO_LINE)
  if (tls !== undefined) {
    // With SNI passthrough routes the HTTPS port belongs to the tls_passthrough frontend, which hands
    // every other connection to this one over a local socket (PROXY protocol: client addresses kept).
    out.push(passthrough ? tlsBindLine(`unix@${paths.tlsSocket}`, paths.defaultCertificate, tls.crtList.path).replace(' ssl ', ' accept-proxy ssl ') : tlsBindLine(tls.listen, paths.defaultCertificate, tls.crtList.path))
    // Plain HTTP is https only behind a TLS-terminating balancer (secureCookie).
    for (const line of forwardedProtoLines(settings.secureCookie)) out.push(line)
  } else {
    // This listener is plain HTTP; behind a TLS-terminating balancer (secureCookie) the client used https.
    out.push(`    http-request set-header X-Forwarded-Proto ${settings.secureCookie ? 'https' : 'http'}`)
  }
  for (const line of accessLog.frontendLogLines(settings.accessLog, 'http', logMap?.path)) out.push(line)
  for (const line of accessLog.frontendLines(settings.accessLog)) out.push(line)
  if (acmeMap !== undefined) for (const line of acmeChallengeLines(acmeMap.path)) out.push(line)
  const mapOwners = [...new Set(mapEntries.map((e) => e.owner))]
  const defaultOwners = plan.defaultBackend === undefined ? [] : [plan.defaultBackend.serviceName]
  if (hostRules.length === 0 && plan.redirects.length === 0 && spareMaps === undefined) {
    // The common case, one map lookup per request: '<path>/' against '<prefix>/' keys.
    out.push(`    use_backend %[path,concat(/),map_beg(${routesMap.path},${defaultBackend})]`, [...mapOwners, ...defaultOwners])
  } else {
    // Host: case-insensitive, without the port and without the trailing root '.' (example.com.).
    out.push(`    http-request set-var(txn.host) 'req.hdr(host),field(1,:),lower,regsub("\\.$","")'`)
    out.push("    # '<path>/' against '<prefix>/' keys: whole-segment prefix match")
    out.push('    http-request set-var(txn.path) path,concat(/)')
    if (spareMaps !== undefined) {
      out.push('    # Routes with an exact host in spare backends: `<host><prefix>/` keys; the length of the longest match (0: none).')
      out.push('    # A slash in the Host header would move the host/path boundary (Host x.example.com/shop with path')
      out.push('    # /admin would match the /shop of x.example.com): it becomes an underscore, which no host name has.')
      out.push('    http-request set-var(txn.hostpath) \'var(txn.host),regsub("/","_",g),concat(,txn.path)\'')
      out.push(`    http-request set-var(txn.spare_len) var(txn.hostpath),map_beg(${spareMaps.lengths.path},0)`)
    }
    for (const r of plan.redirects) {
      out.push(`    http-request redirect code 301 location '%[req.hdr(x-forwarded-proto)]://${r.to}%[capture.req.uri]' if { var(txn.host) -m str ${r.from} }`, [r.serviceName])
    }
    for (const r of hostRules) {
      const hostAcl = r.kind === 0 ? `{ var(txn.host) -m str ${r.hosts.join(' ')} } ` : r.kind === 1 ? `{ var(txn.host) -m end ${r.hosts.join(' ')} } ` : ''
      const pathAcl = r.path === '/' ? '' : `{ var(txn.path) -m beg ${r.path}/ } `
      // ...and no route in a spare has a longer prefix for this host (at the same length an exact
      // host comes before a wildcard or no host, and after an exact host with a discriminator:
      // the planner's order).
      const spareAcl = spareMaps === undefined ? '' : ` { var(txn.spare_len) -m int ${r.kind === 0 ? 'le' : 'lt'} ${r.path.length} }`
      // ...and no plain route has a longer prefix for this path.
      out.push(`    use_backend ${r.backend} if ${hostAcl}${pathAcl}{ var(txn.path),map_beg(${lengthsMap.path},0) -m int le ${r.path.length} }${spareAcl}${r.conditions}`, [r.serviceName])
    }
    if (spareMaps !== undefined) {
      // A route in a spare, unless a plain route has a longer prefix.
      out.push(
        `    use_backend %[var(txn.hostpath),map_beg(${spareMaps.hosts.path})] if { var(txn.spare_len) -m int gt 0 } { var(txn.hostpath),map_beg(${spareMaps.hosts.path}) -m found } { var(txn.path),map_beg(${lengthsMap.path},0),sub(txn.spare_len) -m int le 0 }`,
        [...new Set(spareHostEntries.map((e) => e.owner))],
      )
    }
    out.push(`    use_backend %[var(txn.path),map_beg(${routesMap.path},${defaultBackend})]`, [...mapOwners, ...defaultOwners])
  }
  out.push(`    default_backend ${defaultBackend}`, defaultOwners)
  blank()
  out.push('frontend admin')
  out.push(`    bind ${bind(settings.adminListen)}`)
  out.push('    monitor-uri /healthz')
  out.push('    http-request use-service prometheus-exporter if { path /metrics }')
  out.push('    # Answering at all means a configuration is applied: HAProxy starts with the first one.')
  out.push('    http-request return status 200 content-type text/plain string "ready" if { path /readyz }')
  out.push("    # Tether's per-route metrics (service names, counters carried over reloads), from the agent.")
  out.push(`    use_backend ${METRICS_BACKEND} if { path /metrics/tether }`)
  out.push('    stats enable')
  out.push('    stats uri /stats')
  out.push('    stats refresh 10s')
  if (settings.statsAuth !== undefined) {
    // Only the stats page asks for it: monitor-uri and the http-request rules above answer first.
    out.push('    stats realm Tether')
    out.push(`    stats auth ${settings.statsAuth}`)
  }
  out.push(`    default_backend ${NOT_FOUND_BACKEND}`)
  blank()
  out.push(`backend ${METRICS_BACKEND}`)
  out.push(`    server agent unix@${paths.metricsSocket}`)
  blank()
  out.push(`backend ${NOT_FOUND_BACKEND}`)
  out.push(`    http-request return status 404 content-type application/json string ${quote(NOT_FOUND_BODY)}`)

  for (const route of routes) {
    if (route.auth === undefined) continue
    blank()
    const own = [route.serviceName]
    // Hashes only (crypt(3)); single-quoted, so '$' is never read as an environment variable.
    // No user (a usersSecret the proxy lacks) means nobody gets in.
    out.push(`userlist ${userlistName(route.serviceName)}`, own)
    for (const u of route.auth.users) out.push(`    user ${u.name} password '${u.passwordHash}'`, own)
  }

  let checks = serverInput.checkBudget ?? Number.POSITIVE_INFINITY
  const serverLines = new Set<number>()
  const serverLinesOf = (b: RenderedBackend, own: readonly string[]): void => {
    for (const server of b.servers) {
      const check = checks > 0
      if (check) checks--
      else b.unchecked.push(server.name)
      serverLines.add(out.text.length)
      out.push(`    ${serverLine(server, check, b.serverOptions, b.checkOptions)}`, own)
    }
  }
  for (const b of backends) {
    const entry = byBackend.get(b.name)
    if (entry === undefined || placed.has(b.name)) continue
    const { route, destination } = entry
    const own = [route.serviceName]
    blank()
    out.push(`backend ${b.name}`, own)
    out.push('    balance roundrobin', own)
    // The servers' connection options (TLS, HTTP/2) stated once for the backend: a change of them is a change of the skeleton (a reload).
    if (b.serverOptions !== undefined) out.push(`    default-server ${b.serverOptions}`, own)
    if (caMissing.has(route.serviceName)) out.push(`    http-request return status 503 content-type text/plain string ${quote('This proxy cannot verify the service: its CA bundle is missing here')}`, own)
    for (const line of routeHttpsLines(route)) out.push(line, own)
    for (const line of destinationRules(route, destination, settings.maxBodySize)) out.push(`    ${line}`, own)
    if (route.sticky) {
      const secure = settings.secureCookie ? ' secure' : ''
      out.push(`    cookie ${cookieNameOf(route)} insert indirect nocache dynamic httponly${secure} attr "SameSite=Lax"`, own)
      // Over HTTPS the affinity cookie is Secure (after-response: HAProxy inserts it after the http-response rules).
      if (tls !== undefined && !settings.secureCookie) out.push(`    http-after-response replace-header Set-Cookie '^(${regexEscape(cookieNameOf(route))}=.*)$' '\\1; Secure' if { ssl_fc }`, own)
    }
    // Fixed endpoints with a host name are resolved once, when HAProxy loads the configuration;
    // tasks and IP endpoints are addresses already.
    serverLinesOf(b, own)
  }
  const rateTables = routes.flatMap((route) => rateLimitTables(route).map((t) => ({ ...t, own: [route.serviceName] })))
  if (rateTables.length > 0) {
    blank()
    out.push(RATE_TABLES_COMMENT)
    for (const t of rateTables) {
      blank()
      out.push(`backend ${t.name}`, t.own)
      out.push(`    stick-table ${t.table}`, t.own)
    }
  }

  if (cookiesMap !== undefined) {
    blank()
    out.push('# Spare backends: a new route with one plain destination is served from a free one over the')
    out.push('# runtime API (add server, add map) instead of a reload; the next reload gives it its own backend.')
    out.push('# A sticky spare renames the route\'s cookie (its name is in the cookies map) to SPARE_COOKIE and back:')
    out.push('# dynamic cookie values depend on the key and the server address only, so they hold across the move.')
    for (const name of [...spares.sticky, ...spares.plain]) {
      const b = placed.get(name)
      const own = b === undefined ? [] : [b.serviceName]
      blank()
      out.push(`backend ${name}`, own)
      out.push('    balance roundrobin', own)
      // A route in a spare has no bodyLimit of its own (spareKind): the default is its limit.
      if ((settings.maxBodySize ?? 0) > 0) for (const line of bodyLimitLines(settings.maxBodySize!)) out.push(`    ${line}`, own)
      if (spares.sticky.includes(name)) for (const line of spareCookieLines(cookiesMap.path, settings.secureCookie, tls !== undefined)) out.push(line, own)
      if (b !== undefined) serverLinesOf(b, own)
    }
  }

  if (tcpFrontends.length > 0 || passthrough) {
    blank()
    out.push('# TCP routes and TLS passthrough: connections forwarded unchanged.')
    out.push('defaults')
    out.push('    mode tcp')
    out.push('    option redispatch 1')
    out.push('    retries 3')
    out.push('    load-server-state-from-file global')
    out.push('    timeout connect 500ms')
    out.push('    # Database and broker connections idle for long: an hour, and TCP keep-alives both ways.')
    out.push('    timeout client 1h')
    out.push('    timeout server 1h')
    out.push('    timeout check 2s')
    out.push('    timeout client-fin 10s')
    out.push('    option clitcpka')
    out.push('    option srvtcpka')
    const host = bindHost(settings.listen)
    for (const f of tcpFrontends) {
      const own = [f.serviceName]
      blank()
      out.push(`frontend tcp_${f.srcPort}`, own)
      out.push(`    bind ${host}:${f.srcPort}`, own)
      for (const line of accessLog.frontendLogLines(settings.accessLog, 'tcp', logMap?.path)) out.push(line, own)
      if (f.timeoutClient !== undefined) out.push(`    timeout client ${f.timeoutClient}s`, own)
      out.push(`    default_backend ${f.backend}`, own)
    }
    if (passthrough && tls !== undefined) {
      const owners = [...new Set(sniRules.map((r) => r.serviceName))]
      blank()
      out.push('frontend tls_passthrough', owners)
      out.push(`    bind ${bind(tls.listen)}`, owners)
      out.push('    # Wait (at most 5 s) for the ClientHello, then route by the server name it carries.', owners)
      out.push('    tcp-request inspect-delay 5s', owners)
      // The PROXY header of a trusted balancer (its client is then handed on in send-proxy-v2 below).
      if (settings.proxyProtocol === true) for (const line of trustedProxyLines(settings)) out.push(line, owners)
      for (const line of accessLog.frontendLogLines(settings.accessLog, 'tcp', logMap?.path)) out.push(line, owners)
      for (const line of accessLog.passthroughLines(settings.accessLog)) out.push(line, owners)
      out.push('    tcp-request content accept if { req.ssl_hello_type 1 }', owners)
      for (const r of sniRules) {
        const match = r.kind === 0 ? '' : r.kind === 1 ? '-m end ' : '-m beg '
        out.push(`    use_backend ${r.backend} if { req.ssl_sni -i ${match}${r.names.join(' ')} }`, [r.serviceName])
      }
      out.push(`    default_backend ${TLS_TERMINATE_BACKEND}`, owners)
      blank()
      out.push(`backend ${TLS_TERMINATE_BACKEND}`, owners)
      for (const line of accessLog.terminateHopLines(settings.accessLog)) out.push(line, owners)
      out.push(`    server terminate unix@${paths.tlsSocket} send-proxy-v2`, owners)
    }
    for (const { backend: b, route, timeoutServer } of streamBackends) {
      const own = [route.serviceName]
      blank()
      out.push(`backend ${b.name}`, own)
      out.push('    balance roundrobin', own)
      if (route.sticky) {
        // TCP has no cookie: a client address stays on its task for 30 minutes of inactivity.
        out.push('    stick-table type ip size 1m expire 30m', own)
        out.push('    stick on src', own)
      }
      if (timeoutServer !== undefined) out.push(`    timeout server ${timeoutServer}s`, own)
      serverLinesOf(b, own)
    }
  }

  return {
    config: `${out.text.join('\n')}\n`,
    skeleton: out.text.filter((_, i) => i > 0 && !serverLines.has(i)).join('\n'),
    owners: out.owners,
    // The cookies map first: the engine adds a placed route's cookie name before its paths.
    // The spares' maps first, each before the one that makes it used: the engine adds a placed
    // route's cookie name and its hosts' backend before the lengths and paths that route to it.
    files: [
      ...(cookiesMap === undefined || spareMaps === undefined ? [] : [cookiesMap, spareMaps.hosts, spareMaps.lengths]),
      ...(hostRules.length === 0 && plan.redirects.length === 0 && spareMaps === undefined ? [routesMap] : [routesMap, lengthsMap]),
      ...(tls?.files ?? []),
      ...caFiles.values(),
      ...(acmeMap === undefined ? [] : [acmeMap]),
      ...(logMap === undefined ? [] : [logMap]),
    ],
    backends: backends.sort((a, b) => byString(a.name, b.name)),
    shadowed: plan.shadowed,
    tcpPorts: tcpFrontends.map((f) => f.srcPort),
    problems,
    placement,
    spares,
  }
}

/**
 * Per-client limits on the routing frontend (TETHER_CLIENT_MAX_CONNECTIONS, _MAX_REQUEST_RATE):
 * one address cannot hold every connection slot or the proxy's time. Tracked once the session
 * exists (`tcp-request session`: after the PROXY header of the HTTPS socket behind SNI
 * passthrough, so the real client is counted), in one table per worker.
 */
function clientLimitLines(settings: RenderSettings): string[] {
  const connections = settings.clientMaxConnections ?? 0
  const rate = settings.clientMaxRequestRate ?? 0
  if (connections === 0 && rate === 0) return []
  const store = [...(connections > 0 ? ['conn_cur'] : []), ...(rate > 0 ? ['http_req_rate(10s)'] : [])].join(',')
  const byHeader = (settings.trustedProxies?.length ?? 0) > 0 && settings.proxyProtocol !== true
  const out = [
    '    # Per-client limits: connections open at once and requests per 10 s from one address.',
    `    stick-table type ipv6 size 200k expire 60s store ${store}`,
  ]
  if (byHeader) {
    // A trusted balancer's connections carry many clients: its requests are counted per client (X-Forwarded-For), not its connections.
    out.push(`    tcp-request session track-sc0 src unless ${TRUSTED_PEER}`)
    if (rate > 0) out.push(`    http-request track-sc0 src if ${TRUSTED_PEER}`)
  } else out.push('    tcp-request session track-sc0 src')
  if (connections > 0) out.push(`    tcp-request session reject if { sc0_conn_cur gt ${connections} }`)
  // Retry-After: the window is 10 s, so by then the client's rate has fallen below the limit.
  if (rate > 0) out.push(...refuse('rate', `{ sc0_http_req_rate gt ${rate} }`, 'deny_status 429 hdr Retry-After 10').map((l) => `    ${l}`))
  return out
}

/**
 * A route's rate limits (rateLimit, rateLimitBurst, rateLimitTotal) in its backends. Each table
 * counts the requests it LET THROUGH (gpc0, incremented after both checks pass), not those it
 * refused: a client hammering past its limit still gets rateLimit a second, as from a token
 * bucket, and a flood does not lock everybody out of the total. The per-client window is
 * burst / rate seconds (burst requests at once, rate per second on average), in HAProxy's
 * sliding-window approximation. One table per route, shared by its destinations' backends.
 */
export const RATE_TABLES_COMMENT = "# Rate limits: the requests each route let through, per client address (tether.rate) and in total (tether.ratetotal); this replica's own counts."

function rateLimitTables(route: Route): Array<{ name: string; table: string }> {
  const out: Array<{ name: string; table: string }> = []
  if (route.rateLimit !== undefined) {
    const windowMs = rateWindowMs(route)
    out.push({ name: `tether.rate.${route.serviceName}`, table: `type ipv6 size 100k expire ${Math.max(2 * windowMs, 10_000)}ms store gpc0_rate(${windowMs}ms)` })
  }
  if (route.rateLimitTotal !== undefined) out.push({ name: `tether.ratetotal.${route.serviceName}`, table: 'type integer size 1 expire 60s store gpc0_rate(1s)' })
  return out
}

function rateWindowMs(route: Route): number {
  return Math.round((1000 * (route.rateLimitBurst ?? route.rateLimit ?? 1)) / (route.rateLimit ?? 1))
}

function rateLimitRules(route: Route): string[] {
  const out: string[] = []
  if (route.rateLimit !== undefined) {
    const burst = route.rateLimitBurst ?? route.rateLimit
    out.push(`http-request track-sc1 src table tether.rate.${route.serviceName}`)
    // Retry-After: a whole window, after which the client's count has fallen under the limit.
    out.push(...refuse('rate', `{ sc1_gpc0_rate ge ${burst} }`, `deny_status 429 hdr Retry-After ${Math.ceil(rateWindowMs(route) / 1000)}`))
  }
  if (route.rateLimitTotal !== undefined) {
    out.push(`http-request track-sc2 int(1) table tether.ratetotal.${route.serviceName}`)
    out.push(...refuse('rate', `{ sc2_gpc0_rate ge ${route.rateLimitTotal} }`, 'deny_status 429 hdr Retry-After 1'))
  }
  if (route.rateLimit !== undefined) out.push('http-request sc-inc-gpc0(1)')
  if (route.rateLimitTotal !== undefined) out.push('http-request sc-inc-gpc0(2)')
  return out
}

/** The body of the proxy's 413 (JSON, as its 404 and 503). */
export const BODY_TOO_LARGE_BODY = JSON.stringify({ statusCode: 413, code: 'BODY_TOO_LARGE', error: 'Content Too Large', message: 'The request body (its Content-Length) is larger than this route accepts' })

/**
 * A route's request body limit (bodyLimit, or TETHER_MAX_BODY_SIZE): a Content-Length over it is
 * refused before a server is chosen, so the service sees nothing. HAProxy checks that the body
 * sent matches Content-Length (HTTP/1.1 and HTTP/2), so the header cannot understate it; a body
 * without Content-Length (chunked) is not judged here.
 */
function bodyLimitLines(limit: number): string[] {
  return refuse('size', `{ req.hdr_val(content-length) gt ${limit} }`, `deny_status 413 content-type application/json string ${quote(BODY_TOO_LARGE_BODY)}`)
}

/** True for a session whose peer is in TETHER_TRUSTED_PROXIES (the variable holds the peer's address; set by trustedProxyLines). */
const TRUSTED_PEER = '{ var(sess.tether_peer) -m found }'

/**
 * The client address from a trusted balancer (TETHER_TRUSTED_PROXIES): the rightmost address of
 * X-Forwarded-For (the one the balancer added; whatever its client wrote is to its left), or, with
 * TETHER_PROXY_PROTOCOL, the PROXY header that only a trusted peer may (and must) send. From any
 * other peer nothing is read. The peer is judged once per connection (`sess` variable), before
 * set-src: set-src changes `src` for the connection's later requests too, so `src` cannot be asked again.
 */
function trustedProxyLines(settings: RenderSettings): string[] {
  const trusted = settings.trustedProxies ?? []
  if (trusted.length === 0) return []
  if (settings.proxyProtocol === true) {
    return ['    # A trusted balancer (TETHER_TRUSTED_PROXIES) sends a PROXY protocol header with its client\'s address.', `    tcp-request connection expect-proxy layer4 if { src ${trusted.join(' ')} }`]
  }
  return [
    '    # A trusted balancer (TETHER_TRUSTED_PROXIES): the client is the rightmost X-Forwarded-For address.',
    `    tcp-request session set-var(sess.tether_peer) src if { src ${trusted.join(' ')} }`,
    `    http-request set-src req.hdr_ip(x-forwarded-for,-1) if ${TRUSTED_PEER} { req.hdr_ip(x-forwarded-for,-1) -m found }`,
    // A request without one is the balancer's own (not the previous request's client on this connection).
    `    http-request set-src var(sess.tether_peer) if ${TRUSTED_PEER} !{ req.hdr_ip(x-forwarded-for,-1) -m found }`,
  ]
}

/** The access log's map of every backend rendered (own, placed in a spare, TCP, SNI) with the path rules routed to it. */
function logRoutesOf(plan: ReturnType<typeof planRoutes>, backends: readonly RenderedBackend[], backendOf: (serviceName: string, destination: number) => string, mapDir: string): RenderedFile {
  const pathsOf = new Map<string, string[]>()
  for (const b of plan.http) {
    const name = backendOf(b.serviceName, b.destination)
    const list = pathsOf.get(name)
    if (list === undefined) pathsOf.set(name, [b.path])
    else if (!list.includes(b.path)) list.push(b.path)
  }
  return accessLog.logRoutesMap(mapDir, backends.map((b) => ({ name: b.name, serviceName: b.serviceName, paths: pathsOf.get(b.name) ?? [] })))
}

/** The name a sticky spare backend's cookie has inside HAProxy (renamed to the route's own both ways). */
export const SPARE_COOKIE = 'TETHER_SPARE'

function spareNames(kind: 'sticky' | 'plain', count: number): string[] {
  return Array.from({ length: count }, (_, i) => `tether.spare.${kind}.${i + 1}`)
}

/**
 * Which kind of spare backend can serve `route` as its own backend would, or undefined: one HTTP
 * destination, no TCP or SNI, and nothing in its backend but balancing and the default affinity
 * cookie (no rules, authentication, HTTPS policy or custom cookie name); paths with no host or
 * exact hosts only (the routes map, or the sparehosts map: both changed over the runtime API;
 * render checks the planner's bindings again, see framedServices).
 */
/**
 * The route's HTTP health check (healthCheckPath) of one destination's tasks, and its interval and
 * slow start as the backend's default-server (so that a change of them is a change of the
 * configuration's skeleton: servers keep their state through the reload). The path and status
 * are checked by the contract's rules (no space, quote or '#'). Host: the destination's first
 * exact host name, when it has one (over HTTP/1.1); otherwise an HTTP/1.0 request without Host.
 */
export function healthCheckLines(route: Route, d: Destination): string[] {
  const out: string[] = []
  const options = checkOptionsOf(route)
  if (options !== CHECK_OPTIONS) out.push(`default-server ${options.replace(/^check /, '')}`)
  if (route.healthCheckPath === undefined) return out
  const host = (d.serviceDomain ?? route.serviceDomain).find((h) => !h.startsWith('*'))
  out.push('option httpchk')
  out.push(`http-check send meth GET uri ${route.healthCheckPath}${host === undefined ? '' : ` ver HTTP/1.1 hdr Host ${host}`}`)
  out.push(route.healthCheckStatus === undefined ? 'http-check expect status 200-399' : `http-check expect status ${route.healthCheckStatus}`)
  return out
}

export function spareKind(route: Route): 'sticky' | 'plain' | undefined {
  const d = route.destinations[0]
  if (d === undefined || route.destinations.length !== 1 || (route.tcp?.length ?? 0) > 0 || (route.sni?.length ?? 0) > 0) return undefined
  if (route.auth !== undefined || route.stickyCookie !== undefined || route.isDefaultBackend === true || route.backendScheme !== undefined) return undefined
  // Exact hosts only (a wildcard needs a rule of its own); no discriminator, exclusion or redirect.
  if ([...route.serviceDomain, ...(d.serviceDomain ?? [])].some((h) => h.startsWith('*.'))) return undefined
  if (d.userAgent !== undefined || d.serviceHeader !== undefined || d.listener !== undefined || d.servicePathExclude !== undefined || d.redirectFromDomain !== undefined) return undefined
  if (routeHttpsLines(route).length > 0 || destinationRules(route, d).length > 0) return undefined
  return route.sticky ? 'sticky' : 'plain'
}

/**
 * Services the frontend names in rules of their own (a wildcard host, a discriminator, an
 * exclusion, a redirect or the default backend): not for a spare. Exact hosts are fine: a
 * spare's live in the sparehosts map.
 */
function framedServices(plan: ReturnType<typeof planRoutes>): Set<string> {
  const out = new Set<string>()
  for (const b of plan.http) if (!isPlain(b) && (hostKind(b.host) !== 0 || b.match !== undefined || b.exclude !== undefined)) out.add(b.serviceName)
  for (const r of plan.redirects) out.add(r.serviceName)
  if (plan.defaultBackend !== undefined) out.add(plan.defaultBackend.serviceName)
  // A backend shared with a canary or a draining service holds weighted servers of both.
  for (const s of plan.shares) out.add(s.holder).add(s.serviceName)
  return out
}

/**
 * A sticky spare's affinity lines. The route's cookie name comes from the cookies map (keyed by
 * the backend's name). On the way in, the request's cookie of that name (the first, exactly that
 * name) is renamed SPARE_COOKIE, which the `cookie` line reads (and, being `indirect`, takes off
 * the request as a route's own backend takes off its cookie); with more than one Cookie header
 * nothing is renamed (the request is balanced). On the way out, the cookie is given the route's
 * name back, Secure over HTTPS as on a route's own backend.
 */
function spareCookieLines(cookiesMap: string, secureCookie: boolean, https: boolean): string[] {
  // A named group: HAProxy compiles ACL patterns without numbered captures (a back-reference needs a name).
  // The first cookie of that name (`??`: the shortest run of cookies before it), after ';' or ','
  // and with spaces before '=' as HAProxy's own cookie parser takes them.
  const before = '(?:.*?[;,]\\s*)??'
  const named = `^(?<name>[^=]*)=;(${before})\\k<name>\\s*=(.*)$`
  const rename = `'%[var(txn.tether_ck),regsub(${converterArg(named)},${converterArg(`\\2${SPARE_COOKIE}=\\3`)})]'`
  const out = [
    `    http-request set-var(txn.tether_cookie) be_name,map(${cookiesMap})`,
    '    http-request set-var(txn.tether_hdr) req.fhdr(cookie) if { req.fhdr_cnt(cookie) eq 1 }',
    '    http-request set-var(txn.tether_ck) var(txn.tether_cookie),concat(=;,txn.tether_hdr) if { var(txn.tether_hdr) -m found }',
    `    http-request set-header Cookie ${rename} if { var(txn.tether_ck) -m reg '^(?<name>[^=]*)=;${before}\\k<name>\\s*=' }`,
    `    cookie ${SPARE_COOKIE} insert indirect nocache dynamic httponly${secureCookie ? ' secure' : ''} attr "SameSite=Lax"`,
  ]
  const back = `http-after-response replace-header Set-Cookie '^${SPARE_COOKIE}=(.*)$' '%[var(txn.tether_cookie)]=\\1`
  if (https && !secureCookie) {
    out.push(`    ${back}; Secure' if { ssl_fc }`)
    out.push(`    ${back}' unless { ssl_fc }`)
  } else out.push(`    ${back}'`)
  return out
}

/** The backend that hands TLS connections no passthrough route claims to the terminating frontend. */
export const TLS_TERMINATE_BACKEND = 'tether.tls-terminate'

/** The host part of a listen address for a TCP route's bind ('*' for all addresses). */
export function bindHost(listen: string): string {
  const host = listen.slice(0, listen.lastIndexOf(':'))
  return host === '' || host === '*' ? '*' : host
}

/** The configuration text alone (see render() for the files it refers to). */
export function renderConfig(snapshot: ConfigSnapshot, settings: RenderSettings): string {
  return render(snapshot, settings).config
}
