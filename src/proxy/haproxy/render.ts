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
import { cookieNameOf, type Route } from '../../contracts/route.ts'
import { hostKind, planRoutes, type ShadowedBinding } from '../../contracts/route-planner.ts'
import { endpointsOf, serverLine, type Endpoint, type Task } from './servers.ts'
import type { ResolvedSettings } from './settings.ts'
import { acmeChallengeLines, challengeMap, INCOMING_PROTO_LINE, routeHttpsLines, forwardedProtoLines, tlsBindLine, tlsFiles, tlsGlobalLines } from './tls.ts'

/** The settings the configuration depends on (a subset of ResolvedSettings). */
export type RenderSettings = Pick<
  ResolvedSettings,
  'stateDir' | 'listen' | 'adminListen' | 'cookieKey' | 'secureCookie' | 'maxconn' | 'nbthread' | 'hardStopAfterMs' | 'maxReloads'
> &
  Partial<Pick<ResolvedSettings, 'descriptorLimit' | 'tlsListen' | 'statsAuth'>>

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
}

export interface RenderedFile {
  /** Absolute path the configuration refers to (under stateDir). */
  path: string
  text: string
  /** owners[i] = services that produced line i+1 (for mapping `haproxy -c` errors back). */
  owners: ReadonlyArray<readonly string[]>
  /** File mode; default 0644. Certificate files (they hold keys) are 0600. */
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
}

export const NOT_FOUND_BACKEND = 'tether.notfound'
const NOT_FOUND_BODY = JSON.stringify({ statusCode: 404, code: 'NO_ROUTE', error: 'Not Found', message: 'No route matches this host and path' })

export function backendName(serviceName: string, port: number): string {
  return `svc_${serviceName}_${port}`
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
  owners: string[][]
  push(line: string, owners?: readonly string[]): void
}

function lines(): Lines {
  const text: string[] = []
  const owners: string[][] = []
  return {
    text,
    owners,
    push(line, by = []) {
      text.push(line)
      owners.push([...by])
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
  const byBackend = new Map<string, { route: Route }>()
  for (const route of routes) {
    for (const destination of route.destinations) {
      const backend = backendName(route.serviceName, destination.port)
      if (byBackend.has(backend)) continue
      byBackend.set(backend, { route })
      const dns = route.endpoints.length === 0
      backends.push({
        name: backend,
        serviceName: route.serviceName,
        port: destination.port,
        dns,
        sticky: route.sticky,
        servers: endpointsOf(route, destination.port, dns ? serverInput.tasks?.(route.serviceName) : undefined),
        unchecked: [],
      })
    }
  }

  // Host-less bindings → the map (sorted by key: deterministic, and easy to read).
  const mapEntries = plan.http
    .filter((b) => hostKind(b.host) === 2)
    .map((b) => ({ key: b.path === '/' ? '/' : `${b.path}/`, backend: backendName(b.serviceName, b.port), length: b.path.length, owner: b.serviceName }))
    .sort((a, b) => byString(a.key, b.key))
  const mapFile = (kind: string, value: (e: (typeof mapEntries)[number]) => string): RenderedFile => {
    const text = mapEntries.map((e) => `${e.key} ${value(e)}\n`).join('')
    const hash = createHash('sha256').update(text).digest('hex').slice(0, 16)
    return { path: `${paths.mapDir}/${kind}-${hash}.map`, text, owners: mapEntries.map((e) => [e.owner]) }
  }
  const routesMap = mapFile('routes', (e) => e.backend)
  /** Prefix length per key, consulted only by rules with a domain (present only when there are some). */
  const lengthsMap = mapFile('lengths', (e) => String(e.length))

  // Host bindings → use_backend lines in the plan's order; consecutive bindings of one
  // (service, port, path, host kind) share a line.
  const hostRules: Array<{ serviceName: string; backend: string; path: string; kind: 0 | 1; hosts: string[] }> = []
  for (const b of plan.http) {
    const kind = hostKind(b.host)
    if (kind === 2) continue
    const host = kind === 1 ? b.host.slice(1) : b.host
    const backend = backendName(b.serviceName, b.port)
    const last = hostRules[hostRules.length - 1]
    if (last !== undefined && last.backend === backend && last.path === b.path && last.kind === kind) last.hosts.push(host)
    else hostRules.push({ serviceName: b.serviceName, backend, path: b.path, kind, hosts: [host] })
  }

  // TLS listener (settings.tlsListen) with its certificate files; ACME answers whenever there are some.
  const tls = settings.tlsListen === undefined ? undefined : { listen: settings.tlsListen, ...tlsFiles(paths.mapDir, serverInput.certificates ?? []) }
  const acmeMap = snapshot.challenges !== undefined && snapshot.challenges.length > 0 ? challengeMap(paths.mapDir, snapshot.challenges) : undefined

  const out = lines()
  const blank = (): void => out.push('')
  out.push(`# Generated by Tether from config version ${snapshot.version}. Do not edit: the proxy agent rewrites it.`)
  out.push('global')
  out.push('    master-worker')
  out.push(`    stats socket ${paths.adminSocket} mode 600 level admin expose-fd listeners`)
  out.push('    stats timeout 30s')
  out.push(`    server-state-file ${paths.serverState}`)
  out.push(`    hard-stop-after ${settings.hardStopAfterMs}ms`)
  out.push(`    mworker-max-reloads ${settings.maxReloads}`)
  out.push(`    maxconn ${settings.maxconn}`)
  if (settings.descriptorLimit !== undefined) out.push(`    fd-hard-limit ${settings.descriptorLimit}`)
  if (settings.nbthread !== undefined) out.push(`    nbthread ${settings.nbthread}`)
  if (settings.tlsListen !== undefined) for (const line of tlsGlobalLines()) out.push(line)
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
  out.push('    timeout http-request 10s')
  out.push('    timeout http-keep-alive 10s')
  out.push('    timeout queue 10s')
  out.push('    timeout check 2s')
  out.push('    # WebSocket and other upgraded connections')
  out.push('    timeout tunnel 1h')
  out.push('    timeout client-fin 10s')
  out.push(`    dynamic-cookie-key '${settings.cookieKey}'`)
  blank()
  out.push('frontend http')
  out.push(`    bind ${bind(settings.listen)}`)
  if (routes.some((r) => r.redirectWhenHttpProto === true)) out.push(INCOMING_PROTO_LINE)
  if (tls !== undefined) {
    out.push(tlsBindLine(tls.listen, paths.defaultCertificate, tls.crtList.path))
    // Plain HTTP is https only behind a TLS-terminating balancer (secureCookie).
    for (const line of forwardedProtoLines(settings.secureCookie)) out.push(line)
  } else {
    // This listener is plain HTTP; behind a TLS-terminating balancer (secureCookie) the client used https.
    out.push(`    http-request set-header X-Forwarded-Proto ${settings.secureCookie ? 'https' : 'http'}`)
  }
  if (acmeMap !== undefined) for (const line of acmeChallengeLines(acmeMap.path)) out.push(line)
  const mapOwners = [...new Set(mapEntries.map((e) => e.owner))]
  if (hostRules.length === 0) {
    // The common case, one map lookup per request: '<path>/' against '<prefix>/' keys.
    out.push(`    use_backend %[path,concat(/),map_beg(${routesMap.path},${NOT_FOUND_BACKEND})]`, mapOwners)
  } else {
    out.push('    http-request set-var(txn.host) req.hdr(host),field(1,:),lower')
    out.push("    # '<path>/' against '<prefix>/' keys: whole-segment prefix match")
    out.push('    http-request set-var(txn.path) path,concat(/)')
    for (const r of hostRules) {
      const hostAcl = r.kind === 0 ? `{ var(txn.host) -m str ${r.hosts.join(' ')} }` : `{ var(txn.host) -m end ${r.hosts.join(' ')} }`
      const pathAcl = r.path === '/' ? '' : ` { var(txn.path) -m beg ${r.path}/ }`
      // ...and no domain-less route has a longer prefix for this path.
      out.push(`    use_backend ${r.backend} if ${hostAcl}${pathAcl} { var(txn.path),map_beg(${lengthsMap.path},0) -m int le ${r.path.length} }`, [r.serviceName])
    }
    out.push(`    use_backend %[var(txn.path),map_beg(${routesMap.path},${NOT_FOUND_BACKEND})]`, mapOwners)
  }
  out.push(`    default_backend ${NOT_FOUND_BACKEND}`)
  blank()
  out.push('frontend admin')
  out.push(`    bind ${bind(settings.adminListen)}`)
  out.push('    monitor-uri /healthz')
  out.push('    http-request use-service prometheus-exporter if { path /metrics }')
  out.push('    # Answering at all means a configuration is applied: HAProxy starts with the first one.')
  out.push('    http-request return status 200 content-type text/plain string "ready" if { path /readyz }')
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
  out.push(`backend ${NOT_FOUND_BACKEND}`)
  out.push(`    http-request return status 404 content-type application/json string ${quote(NOT_FOUND_BODY)}`)

  let checks = serverInput.checkBudget ?? Number.POSITIVE_INFINITY
  const serverLines = new Set<number>()
  for (const b of backends) {
    const entry = byBackend.get(b.name)
    if (entry === undefined) continue
    const { route } = entry
    const own = [route.serviceName]
    blank()
    out.push(`backend ${b.name}`, own)
    out.push('    balance roundrobin', own)
    for (const line of routeHttpsLines(route)) out.push(line, own)
    if (route.sticky) {
      const secure = settings.secureCookie ? ' secure' : ''
      out.push(`    cookie ${cookieNameOf(route)} insert indirect nocache dynamic httponly${secure} attr "SameSite=Lax"`, own)
      // Over HTTPS the affinity cookie is Secure (after-response: HAProxy inserts it after the http-response rules).
      if (tls !== undefined && !settings.secureCookie) out.push(`    http-after-response replace-header Set-Cookie '^(${regexEscape(cookieNameOf(route))}=.*)$' '\\1; Secure' if { ssl_fc }`, own)
    }
    // Fixed endpoints with a host name are resolved once, when HAProxy loads the configuration;
    // tasks and IP endpoints are addresses already.
    for (const server of b.servers) {
      const check = checks > 0
      if (check) checks--
      else b.unchecked.push(server.name)
      serverLines.add(out.text.length)
      out.push(`    ${serverLine(server, check)}`, own)
    }
  }

  return {
    config: `${out.text.join('\n')}\n`,
    skeleton: out.text.filter((_, i) => i > 0 && !serverLines.has(i)).join('\n'),
    owners: out.owners,
    files: [...(hostRules.length === 0 ? [routesMap] : [routesMap, lengthsMap]), ...(tls?.files ?? []), ...(acmeMap === undefined ? [] : [acmeMap])],
    backends: backends.sort((a, b) => byString(a.name, b.name)),
    shadowed: plan.shadowed,
  }
}

/** The configuration text alone (see render() for the files it refers to). */
export function renderConfig(snapshot: ConfigSnapshot, settings: RenderSettings): string {
  return render(snapshot, settings).config
}
