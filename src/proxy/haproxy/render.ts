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
 * Backends: one per (service, port), `svc_<serviceName>_<port>`; either a `server-template`
 * over `tasks.<serviceName>:<port>` resolved through `resolvers docker` (scaling needs no
 * reconfigure) or one `server` per explicit endpoint.
 */
import { createHash } from 'node:crypto'
import type { ConfigSnapshot } from '../../contracts/config-snapshot.ts'
import { cookieNameOf, type Route } from '../../contracts/route.ts'
import { hostKind, planRoutes, type ShadowedBinding } from '../../contracts/route-planner.ts'
import type { ResolvedSettings } from './settings.ts'

/** The settings the configuration depends on (a subset of ResolvedSettings). */
export type RenderSettings = Pick<
  ResolvedSettings,
  'stateDir' | 'listen' | 'adminListen' | 'resolvers' | 'cookieKey' | 'slots' | 'secureCookie' | 'maxconn' | 'nbthread' | 'hardStopAfterMs' | 'maxReloads'
>

export interface RenderedFile {
  /** Absolute path the configuration refers to (under stateDir). */
  path: string
  text: string
  /** owners[i] = services that produced line i+1 (for mapping `haproxy -c` errors back). */
  owners: ReadonlyArray<readonly string[]>
}

export interface RenderedConfig {
  /** haproxy.cfg text. */
  config: string
  /** owners[i] = services that produced line i+1 of `config`. */
  owners: ReadonlyArray<readonly string[]>
  /** Files the configuration refers to (the routes map); write them before using `config`. */
  files: RenderedFile[]
  /** Backends rendered, with their slot count (for health reports). */
  /** `dnsName`: the name a server-template resolves (tasks.<service>); absent with explicit endpoints. */
  backends: Array<{ name: string; serviceName: string; port: number; slots: number; dnsName?: string }>
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
  }
}

/** A bind line argument: ':80' → '*:80' is what HAProxy means anyway; keep as given. */
function bind(listen: string): string {
  return listen.startsWith(':') ? `*${listen}` : listen
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
export function render(snapshot: ConfigSnapshot, settings: RenderSettings): RenderedConfig {
  const paths = statePaths(settings.stateDir)
  const routes = [...snapshot.routes].sort((a, b) => byString(a.serviceName, b.serviceName))

  // The planner decides who serves what; this only prints its plan.
  const plan = planRoutes(routes)
  const backends: RenderedConfig['backends'] = []
  const byBackend = new Map<string, { route: Route; port: number }>()
  for (const route of routes) {
    for (const destination of route.destinations) {
      const backend = backendName(route.serviceName, destination.port)
      if (byBackend.has(backend)) continue
      byBackend.set(backend, { route, port: destination.port })
      backends.push({
        name: backend,
        serviceName: route.serviceName,
        port: destination.port,
        slots: route.endpoints.length > 0 ? route.endpoints.length : settings.slots,
        ...(route.endpoints.length > 0 ? {} : { dnsName: `tasks.${route.serviceName}` }),
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
  if (settings.nbthread !== undefined) out.push(`    nbthread ${settings.nbthread}`)
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
  out.push('    default-server check inter 2s fall 2 rise 1')
  out.push(`    dynamic-cookie-key '${settings.cookieKey}'`)
  blank()
  out.push('resolvers docker')
  settings.resolvers.forEach((ns, i) => out.push(`    nameserver ns${i + 1} ${ns}`))
  out.push('    accepted_payload_size 8192')
  out.push('    resolve_retries 3')
  out.push('    timeout resolve 1s')
  out.push('    timeout retry 1s')
  out.push('    hold valid 1s')
  out.push('    hold obsolete 1s')
  out.push('    hold nx 1s')
  out.push('    hold refused 1s')
  out.push('    hold timeout 1s')
  out.push('    hold other 1s')
  blank()
  out.push('frontend http')
  out.push(`    bind ${bind(settings.listen)}`)
  // This listener is plain HTTP; behind a TLS-terminating balancer (secureCookie) the client used https.
  out.push(`    http-request set-header X-Forwarded-Proto ${settings.secureCookie ? 'https' : 'http'}`)
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
  out.push(`    default_backend ${NOT_FOUND_BACKEND}`)
  blank()
  out.push(`backend ${NOT_FOUND_BACKEND}`)
  out.push(`    http-request return status 404 content-type application/json string ${quote(NOT_FOUND_BODY)}`)

  for (const b of backends) {
    const entry = byBackend.get(b.name)
    if (entry === undefined) continue
    const { route, port } = entry
    const own = [route.serviceName]
    blank()
    out.push(`backend ${b.name}`, own)
    out.push('    balance roundrobin', own)
    if (route.sticky) {
      const secure = settings.secureCookie ? ' secure' : ''
      out.push(`    cookie ${cookieNameOf(route)} insert indirect nocache dynamic httponly${secure} attr "SameSite=Lax"`, own)
    }
    if (route.endpoints.length > 0) {
      // Fixed addresses: a host name is resolved once, when HAProxy loads the configuration.
      route.endpoints.forEach((endpoint, i) => out.push(`    server e${i + 1} ${endpoint}`, own))
    } else {
      // init-addr last,none: the address saved in the server-state file before a reload, else
      // none (maintenance) until DNS answers. Plain 'none' would drop the saved addresses.
      out.push(`    server-template s ${settings.slots} tasks.${route.serviceName}:${port} resolvers docker resolve-prefer ipv4 init-addr last,none`, own)
    }
  }

  return {
    config: `${out.text.join('\n')}\n`,
    owners: out.owners,
    files: hostRules.length === 0 ? [routesMap] : [routesMap, lengthsMap],
    backends: backends.sort((a, b) => byString(a.name, b.name)),
    shadowed: plan.shadowed,
  }
}

/** The configuration text alone (see render() for the files it refers to). */
export function renderConfig(snapshot: ConfigSnapshot, settings: RenderSettings): string {
  return render(snapshot, settings).config
}
