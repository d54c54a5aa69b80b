/**
 * Docker Flow Proxy's form of a route (/v1/docker-flow-proxy/reconfigure and com.df.* labels,
 * which Docker Flow Swarm Listener sends as the same parameters): DFP's parameter names, the
 * table of what Tether implements, accepts as bookkeeping, ignores with a warning or refuses,
 * and the parser.
 *
 * Destinations: `servicePath`/`port` (with the other per-destination parameters) are the first
 * destination; each index N of the indexed forms (`servicePath.N`, `port.N`, `serviceDomain.N`,
 * ...) adds one, in index order. A per-destination parameter without `.N` applies to every
 * destination that does not give its own `.N` value (DFP's fallback). A destination with a
 * domain and no path serves '/' (DFP's default).
 *
 * The safety rule: a parameter that restricts access or changes security and that Tether does
 * not implement is refused (400 NOT_IMPLEMENTED), never accepted with a warning. Parameters
 * that only tune are accepted with a warning; DFSL's and DFP's bookkeeping without one.
 * Parameter names are looked up as plain strings (`constructor`, `__proto__` and `toString`
 * are just unknown names).
 */
import { limits, normalizeRoute, rules, type Route, type RouteInput } from '../../contracts/route.ts'
import { NothingToRouteError, NotImplementedError } from '../errors.ts'
import { checkList, checkString, fail, finish, parsePort, showValue, splitList } from './fields.ts'
import { HTTPS_FIELDS, httpsFields } from './https-fields.ts'
import { DESTINATION_FEATURES, destinationFeatures, parseBool, ROUTE_FEATURES, routeFeatures, routeRewriteOf, type Read } from './route-features.ts'

type Kind = 'route' | 'destination' | 'bookkeeping' | 'tuning' | 'security' | 'unsupported'

interface Parameter {
  kind: Kind
  /** For 'tuning', 'security' and 'unsupported': why Tether does not do it. */
  why?: string
  /** For 'security' and 'unsupported' booleans: only a true value is refused. */
  boolean?: boolean
}

const p = (kind: Kind, why?: string, boolean?: boolean): Parameter => ({ kind, ...(why === undefined ? {} : { why }), ...(boolean === undefined ? {} : { boolean }) })
const TCP = 'Tether routes HTTP on one port; TCP and SNI routing are not implemented yet'

/** Every Docker Flow Proxy (and Tether extension) parameter of the DFP form, by name. */
export const dfpParameters: ReadonlyMap<string, Parameter> = new Map<string, Parameter>([
  // Implemented, once per route.
  ...[...HTTPS_FIELDS, ...ROUTE_FEATURES, 'serviceName', 'aclName', 'sessionType', 'sticky', 'stickyCookie', 'endpoints', 'addHeader', 'setHeader', 'wait', 'timeout'].map((n) => [n, p('route')] as const),
  // Implemented, per destination (also as name.N).
  ...['servicePath', 'port', 'serviceDomain', ...DESTINATION_FEATURES].map((n) => [n, p('destination')] as const),
  // Docker Flow Swarm Listener's and DFP's bookkeeping, and other Docker Flow tools' labels: nothing to do.
  ...['notify', 'distribute', 'replicas', 'reschedule', 'nodeInfo', 'shortName', 'scrapePort', 'scrapeNetwork', 'scrapeType', 'userDef', 'discoveryType'].map((n) => [n, p('bookkeeping')] as const),
  // Restrict access or change security: refused until implemented.
  ['verifyClientSsl', p('security', 'client certificates are not verified by Tether', true)],
  ['redirectUnlessHttpsProto', p('security', 'use redirectWhenHttpProto (redirects when X-Forwarded-Proto is http)', true)],
  ['sslVerifyNone', p('security', 'TLS from the proxy to backends is not implemented; the request would silently stay plain HTTP', true)],
  ['serviceCert', p('security', 'give certificates through PUT /v1/certificates/{name} or PUT /v1/docker-flow-proxy/cert')],
  ['templateFePath', p('security', 'custom HAProxy templates are not supported (they could hold any rule)')],
  ['templateBePath', p('security', 'custom HAProxy templates are not supported (they could hold any rule)')],
  ['backendExtra', p('security', 'custom HAProxy configuration is not supported (it could hold any rule)')],
  // Change where requests go in ways Tether cannot honour: refused rather than routed wrongly.
  ['srcPort', p('unsupported', TCP)],
  ['reqMode', p('unsupported', TCP)],
  ['outboundHostname', p('unsupported', 'Tether sends requests to the tasks of the service (or its endpoints), not to another host')],
  ['pathType', p('unsupported', "Tether matches path prefixes on whole segments (path_beg is accepted)")],
  // Tuning: accepted, warned about.
  ['serviceDomainAlgo', p('tuning', "Tether matches the host exactly, '*.example.com' any subdomain, '*example.com' the name and any subdomain")],
  ['serviceDomainMatchAll', p('tuning', "Tether matches the host exactly; use '*example.com' for the name and any subdomain")],
  ['checkResolvers', p('tuning', 'Tether proxies always resolve tasks.<service> through Docker DNS')],
  ['balanceGroup', p('tuning', 'Tether balances round-robin, or by cookie when sticky')],
  ['serviceGroup', p('tuning', TCP)],
  ['connectionMode', p('tuning', 'Tether keeps connections alive')],
  ['compressionAlgo', p('tuning', 'compression is not implemented')],
  ['compressionType', p('tuning', 'compression is not implemented')],
  ['timeoutClient', p('tuning', 'the client timeout is the proxy-wide 60 s')],
  ['clitcpka', p('tuning', TCP)],
  ['checkTcp', p('tuning', TCP)],
  ['xForwardedProto', p('tuning', 'Tether always sets X-Forwarded-Proto')],
  ['httpsPort', p('tuning', 'every Tether proxy listens for HTTPS on TETHER_PROXY_LISTEN_TLS; the backend port is the route port')],
  ['srcHttpsPort', p('tuning', 'every Tether proxy listens for HTTPS on TETHER_PROXY_LISTEN_TLS')],
  ['proxyInstanceName', p('tuning', 'every Tether proxy serves every route')],
])

/** Monitoring labels of Docker Flow Monitor (alertName, alertIf.1, ...): bookkeeping. */
const isMonitoring = (base: string): boolean => /^alert[A-Z]/.test(base)

/** The entry for a parameter name (`name` or `name.N`), or undefined for a name DFP does not have. */
export function dfpParameterOf(name: string): { base: string; index: number | undefined; parameter: Parameter | undefined } {
  const m = /^(.+)\.([0-9]{1,3})$/.exec(name)
  const base = m?.[1] ?? name
  const index = m?.[2] === undefined ? undefined : Number(m[2])
  const parameter = dfpParameters.get(base) ?? (isMonitoring(base) ? p('bookkeeping') : undefined)
  return { base, index, parameter }
}

type DfpQuery = Record<string, string | undefined>

const own = (query: DfpQuery, key: string): string | undefined => (Object.prototype.hasOwnProperty.call(query, key) ? query[key] : undefined)

/**
 * What to do with each parameter that is not implemented: a NOT_IMPLEMENTED error for the
 * first one that restricts access (or cannot be honoured), and warnings for the rest.
 */
export function dfpUnimplemented(query: DfpQuery): string[] {
  const warnings: string[] = []
  for (const name of Object.keys(query).sort()) {
    const value = own(query, name) ?? ''
    const { base, parameter } = dfpParameterOf(name)
    if (parameter === undefined) {
      warnings.push(`${name}: not a Docker Flow Proxy parameter; ignored`)
      continue
    }
    if (parameter.kind === 'security' || parameter.kind === 'unsupported') {
      if (parameter.boolean === true && !parseBool(name, value)) continue
      if (base === 'reqMode' && value === 'http') continue
      if (base === 'pathType' && value === 'path_beg') {
        warnings.push(`${name}: Docker Flow Proxy parameter accepted; Tether matches path prefixes on whole segments (/demo serves /demo and /demo/x, not /demonstration)`)
        continue
      }
      if (value === '') continue
      throw new NotImplementedError(
        `${name}: the Docker Flow Proxy parameter ${showValue(`${name}=${value}`)} is not implemented by Tether (${parameter.why ?? 'not implemented'})` +
          (parameter.kind === 'security' ? '; it restricts access or changes security, so the route is refused rather than served without it' : '; the route is refused rather than routed differently') +
          '. Nothing was stored',
      )
    }
    if (parameter.kind === 'tuning') warnings.push(`${name}: Docker Flow Proxy parameter not implemented by Tether (${parameter.why ?? 'not implemented'}); ignored`)
  }
  return warnings
}

/**
 * `/v1/docker-flow-proxy/reconfigure` and com.df.* labels → a route, and the warnings for what
 * is ignored. Throws ValidationFailedError (400), NotImplementedError (400) or
 * NothingToRouteError (409, nothing to route).
 */
export function routeFromDfpQuery(query: DfpQuery): { route: Route; warnings: string[] } {
  const get = (key: string): string | undefined => own(query, key)
  const serviceNameValue = get('serviceName')
  if (serviceNameValue === undefined) fail('serviceName', `is required; it ${rules.serviceName.text}`)
  const serviceName = checkString('serviceName', 'serviceName', serviceNameValue)
  const warnings = dfpUnimplemented(query)

  // Destination indexes: the unindexed one first, then every N given for servicePath.N, port.N
  // or serviceDomain.N (DFP's rule for a destination to exist).
  const indexes = new Set<number>()
  const strays = new Set<number>()
  for (const key of Object.keys(query)) {
    const { base, index, parameter } = dfpParameterOf(key)
    if (index === undefined || parameter?.kind !== 'destination') continue
    if (base === 'servicePath' || base === 'port' || base === 'serviceDomain') indexes.add(index)
    else strays.add(index)
  }
  for (const i of strays) if (!indexes.has(i)) warnings.push(`.${i}: per-destination parameters without servicePath.${i}, port.${i} or serviceDomain.${i} belong to no destination; ignored`)
  /** A per-destination parameter for index i: its own `.N` value, else the unindexed one (DFP's fallback). */
  const at =
    (i: number | undefined): Read =>
    (name) => {
      if (i !== undefined) {
        const v = get(`${name}.${i}`)
        if (v !== undefined && v !== '') return { value: v, field: `${name}.${i}` }
      }
      const v = get(name)
      return v === undefined || v === '' ? undefined : { value: v, field: name }
    }
  const routeRead: Read = (name) => {
    const v = get(name)
    return v === undefined || v === '' ? undefined : { value: v, field: name }
  }
  const ownAt = (name: string, i: number | undefined): string | undefined => {
    const v = get(i === undefined ? name : `${name}.${i}`)
    return v === '' ? undefined : v
  }

  const routeRewrite = routeRewriteOf(routeRead)

  const destinations: RouteInput['destinations'][number][] = []
  const destination = (i: number | undefined): void => {
    const suffix = i === undefined ? '' : `.${i}`
    // Paths and ports are the destination's own (no fallback): the unindexed ones are the first destination.
    let paths = checkList(`servicePath${suffix}`, 'servicePath', splitList(ownAt('servicePath', i)), limits.maxPaths)
    const ownDomains = i === undefined ? undefined : ownAt('serviceDomain', i)
    const anyDomain = ownDomains ?? ownAt('serviceDomain', undefined)
    if (paths.length === 0) {
      if (i === undefined) {
        if (indexes.size > 0) return // only indexed destinations
        if (anyDomain === undefined) {
          throw new NothingToRouteError(
            'nothing to route: give servicePath or serviceDomain (Docker Flow Proxy answers 409 too, which Docker Flow Swarm Listener counts as done: a service with only monitoring labels is not routed). Nothing was stored',
          )
        }
      } else if (anyDomain === undefined) {
        fail(`servicePath${suffix}`, `is required (or serviceDomain${suffix}); it ${rules.servicePath.text}`)
      }
      paths = ['/'] // DFP: a domain without a path serves every path
    }
    const d: RouteInput['destinations'][number] = { servicePath: paths, port: parsePort(`port${suffix}`, ownAt('port', i)) }
    if (ownDomains !== undefined) d.serviceDomain = checkList(`serviceDomain${suffix}`, 'serviceDomain', splitList(ownDomains), limits.maxDomains)
    const hosts = d.serviceDomain ?? splitList(get('serviceDomain'))
    Object.assign(d, destinationFeatures(at(i), hosts, routeRewrite))
    destinations.push(d)
  }
  destination(undefined)
  for (const i of [...indexes].sort((a, b) => a - b)) destination(i)
  if (destinations.length === 0) throw new NothingToRouteError('nothing to route: give servicePath or serviceDomain (Docker Flow Proxy answers 409 too). Nothing was stored')
  if (destinations.length > limits.maxDestinations) fail('servicePath', `gives ${destinations.length} destinations; at most ${limits.maxDestinations} are allowed`)

  let sticky: boolean | undefined
  const sessionType = get('sessionType')
  if (sessionType !== undefined && sessionType !== '') {
    if (sessionType !== 'sticky-server') fail('sessionType', `${showValue(sessionType)} must be 'sticky-server' (the only session type Docker Flow Proxy defines)`)
    sticky = true
  }
  const stickyValue = get('sticky')
  if (stickyValue !== undefined) sticky = sticky === true || parseBool('sticky', stickyValue)
  const stickyCookie = get('stickyCookie')
  const aclName = get('aclName')
  // addHeader and setHeader: DFP's older names of addReqHeader and setReqHeader.
  const aliases: Record<string, string> = { addReqHeader: 'addHeader', setReqHeader: 'setHeader' }
  const featureRead: Read = (name) => routeRead(name) ?? (aliases[name] === undefined ? undefined : routeRead(aliases[name]))
  const { features, warnings: featureWarnings } = routeFeatures(featureRead, serviceName)
  warnings.push(...featureWarnings)
  const input: RouteInput = {
    serviceName,
    destinations,
    serviceDomain: checkList('serviceDomain', 'serviceDomain', splitList(get('serviceDomain')), limits.maxDomains),
    sticky,
    stickyCookie: stickyCookie === undefined ? undefined : checkString('stickyCookie', 'stickyCookie', stickyCookie),
    endpoints: checkList('endpoints', 'endpoint', splitList(get('endpoints')), limits.maxEndpoints),
    aclName: aclName === undefined ? undefined : checkString('aclName', 'aclName', aclName),
    ...features,
    ...httpsFields(Object.fromEntries(HTTPS_FIELDS.flatMap((f) => (get(f) === undefined ? [] : [[f, get(f)]]))), splitList(get('serviceDomain'))),
  }
  if (destinations.some((d) => d.ignoreAuthorization === true) && input.auth === undefined) {
    // Harmless (nothing to ignore), but say so rather than pretend.
    warnings.push('ignoreAuthorization: the route has no users, so there is no authorization to ignore')
  }
  return { route: finish(normalizeRoute(input)), warnings }
}

/** `/v1/docker-flow-proxy/remove`: the service name; DFP's other parameters mean nothing here, unknown ones are warned about. */
export function serviceNameFromDfpRemove(query: DfpQuery): { serviceName: string; warnings: string[] } {
  const value = own(query, 'serviceName')
  if (value === undefined) fail('serviceName', `is required; it ${rules.serviceName.text}`)
  const serviceName = checkString('serviceName', 'serviceName', value)
  const warnings = Object.keys(query)
    .sort()
    .filter((name) => dfpParameterOf(name).parameter === undefined)
    .map((name) => `${name}: not a Docker Flow Proxy parameter; ignored`)
  return { serviceName, warnings }
}
