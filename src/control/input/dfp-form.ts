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
import { limits, normalizeRoute, rules, type Route, type RouteInput, type TcpDestination } from '../../contracts/route.ts'
import { NothingToRouteError, NotImplementedError } from '../errors.ts'
import { checkList, checkServerName, checkStreamDestinations, checkString, fail, finish, parsePort, parseSrcPort, showValue, splitList } from './fields.ts'
import { HTTPS_FIELDS, httpsFields } from './https-fields.ts'
import { BACKEND_FIELDS, backendFields } from './backend-fields.ts'
import { DESTINATION_FEATURES, destinationFeatures, parseBool, ROUTE_FEATURES, routeFeatures, routeRewriteOf, type Read } from './route-features.ts'

type Kind = 'route' | 'destination' | 'bookkeeping' | 'tuning' | 'default' | 'security' | 'unsupported'

interface Parameter {
  kind: Kind
  /** For 'tuning', 'security' and 'unsupported': why Tether does not do it. */
  why?: string
  /** For 'security' and 'unsupported' booleans: only a true value is refused. */
  boolean?: boolean
  /** For 'default': true when the value asks for what Tether always does (accepted silently); otherwise warned with `why`. */
  honoured?: (value: string) => boolean
}

const p = (kind: Kind, why?: string, boolean?: boolean): Parameter => ({ kind, ...(why === undefined ? {} : { why }), ...(boolean === undefined ? {} : { boolean }) })
const def = (why: string, honoured: (value: string) => boolean): Parameter => ({ kind: 'default', why, honoured })
const isTrue = (value: string): boolean => value.trim().toLowerCase() === 'true' || value.trim() === ''
const TCP = 'Tether forwards each TCP port to one service, round-robin (or by client address when sticky)'
/** Per-destination parameters of TCP and SNI destinations (timeoutServer is also an HTTP feature). */
const STREAM_PARAMETERS = ['reqMode', 'srcPort', 'pathType', 'timeoutClient', 'sendProxyProtocol'] as const

/** Every Docker Flow Proxy (and Tether extension) parameter of the DFP form, by name. */
export const dfpParameters: ReadonlyMap<string, Parameter> = new Map<string, Parameter>([
  // Implemented, once per route.
  ...[...HTTPS_FIELDS, ...BACKEND_FIELDS, ...ROUTE_FEATURES, 'serviceName', 'aclName', 'sessionType', 'sticky', 'stickyCookie', 'endpoints', 'addHeader', 'setHeader', 'wait', 'timeout'].map((n) => [n, p('route')] as const),
  // Implemented, per destination (also as name.N).
  ...['servicePath', 'port', 'serviceDomain', ...DESTINATION_FEATURES, ...STREAM_PARAMETERS].map((n) => [n, p('destination')] as const),
  // Docker Flow Swarm Listener's and DFP's bookkeeping, and other Docker Flow tools' labels: nothing to do.
  ...['notify', 'distribute', 'replicas', 'reschedule', 'nodeInfo', 'shortName', 'scrapePort', 'scrapeNetwork', 'scrapeType', 'userDef', 'discoveryType'].map((n) => [n, p('bookkeeping')] as const),
  // Restrict access or change security: refused until implemented.
  ['verifyClientSsl', p('security', 'client certificates are not verified by Tether', true)],
  ['redirectUnlessHttpsProto', p('security', 'use redirectWhenHttpProto (redirects when X-Forwarded-Proto is http)', true)],
  ['serviceCert', p('security', 'give certificates through PUT /v1/certificates/{name} or PUT /v1/docker-flow-proxy/cert')],
  ['templateFePath', p('security', 'custom HAProxy templates are not supported (they could hold any rule)')],
  ['templateBePath', p('security', 'custom HAProxy templates are not supported (they could hold any rule)')],
  ['backendExtra', p('security', 'custom HAProxy configuration is not supported (it could hold any rule)')],
  // Change where requests go in ways Tether cannot honour: refused rather than routed wrongly.
  ['outboundHostname', p('unsupported', 'Tether sends requests to the tasks of the service (or its endpoints), not to another host')],
  // Tuning: accepted, warned about.
  ['serviceDomainAlgo', p('tuning', "Tether matches the host exactly, '*.example.com' any subdomain, '*example.com' the name and any subdomain")],
  ['serviceDomainMatchAll', p('tuning', "Tether matches the host exactly; use '*example.com' for the name and any subdomain")],
  ['checkResolvers', def('Tether proxies always resolve tasks.<service> through Docker DNS; it cannot be turned off', isTrue)],
  ['balanceGroup', p('tuning', 'Tether balances round-robin, or by cookie when sticky')],
  ['serviceGroup', p('tuning', TCP)],
  // Honoured by default: Tether always does what these ask for; a value asking otherwise is warned about.
  ['connectionMode', def('Tether always keeps connections alive (http-keep-alive); other modes are not offered', (v) => v.trim() === 'http-keep-alive')],
  ['clitcpka', p('tuning', TCP)],
  ['checkTcp', def('Tether always checks the servers of TCP routes with a TCP connect; it cannot be turned off', isTrue)],
  ['xForwardedProto', def("Tether always sets X-Forwarded-Proto to https or http by the listener the request came in on (the client's own header replaced); it cannot be turned off", isTrue)],
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
    const { parameter } = dfpParameterOf(name)
    if (parameter === undefined) {
      warnings.push(`${name}: not a Docker Flow Proxy parameter; ignored`)
      continue
    }
    if (parameter.kind === 'security' || parameter.kind === 'unsupported') {
      if (parameter.boolean === true && !parseBool(name, value)) continue
      if (value === '') continue
      throw new NotImplementedError(
        `${name}: the Docker Flow Proxy parameter ${showValue(`${name}=${value}`)} is not implemented by Tether (${parameter.why ?? 'not implemented'})` +
          (parameter.kind === 'security' ? '; it restricts access or changes security, so the route is refused rather than served without it' : '; the route is refused rather than routed differently') +
          '. Nothing was stored',
      )
    }
    if (parameter.kind === 'default' && parameter.honoured?.(value) === false) warnings.push(`${name}: ${showValue(value)} is not what Tether does (${parameter.why ?? 'not implemented'}); ignored`)
    if (parameter.kind === 'tuning') warnings.push(`${name}: Docker Flow Proxy parameter not implemented by Tether (${parameter.why ?? 'not implemented'}); ignored`)
  }
  return warnings
}

type SniMethod = 'str' | 'beg' | 'end' | 'reg'

/**
 * DFP's pathType for reqMode=sni: `req_ssl_sni` (or `req.ssl_sni`), optionally `-i`, and
 * `-m str|beg|end|reg` (default str: exact names). Anything else is refused.
 */
export function sniMethod(field: string, pathType: string | undefined): SniMethod {
  if (pathType === undefined) return 'str'
  const tokens = pathType.trim().split(/\s+/)
  const rule = "must be 'req_ssl_sni' optionally followed by -i and -m str|beg|end|reg (Docker Flow Proxy's form for reqMode=sni)"
  if (tokens[0] !== 'req_ssl_sni' && tokens[0] !== 'req.ssl_sni') fail(field, `${showValue(pathType)} ${rule}`)
  let method: SniMethod = 'str'
  for (let k = 1; k < tokens.length; k++) {
    const t = tokens[k]
    if (t === '-i') continue // names are matched case-insensitively anyway
    const next = tokens[k + 1]
    if (t === '-m' && (next === 'str' || next === 'beg' || next === 'end' || next === 'reg')) {
      method = next
      k++
      continue
    }
    fail(field, `${showValue(pathType)} ${rule}`)
  }
  return method
}

/**
 * One SNI pattern of DFP's form as a Tether server name: str → the name ('*.x' allowed), beg →
 * 'prefix*', end → '*.suffix' (the suffix must start with '.'), reg → only an anchored literal:
 * '^api\.' or '^(api\.)' (a prefix) and '^db\.example\.com$' (one name). Tether never hands
 * HAProxy a regular expression to run on ClientHellos: a literal is matched as a prefix or an
 * exact name, and every other expression is refused with the rule.
 */
export function sniName(field: string, method: SniMethod, value: string): string {
  if (method === 'str') return checkServerName(field, value)
  if (method === 'beg') return checkServerName(field, `${value}*`)
  if (method === 'end') {
    if (!value.startsWith('.')) fail(field, `${showValue(value)}: with -m end give a suffix starting with '.' (.example.com: any subdomain); a bare suffix would match other domains' names too`)
    return checkServerName(field, `*${value}`)
  }
  const m = /^\^(\()?((?:[A-Za-z0-9-]|\\\.)+)(\))?(\$)?$/.exec(value)
  if (m === null || (m[1] === undefined) !== (m[3] === undefined)) {
    fail(
      field,
      `${showValue(value)}: for reqMode=sni a regular expression (-m reg) must be an anchored literal: '^api\\.' or '^(api\\.)' (names starting with it) or '^db\\.example\\.com$' (that name). Tether turns it into a prefix or exact match and never runs a regular expression on TLS connections (an expression such as (a+)+ could cost CPU on every ClientHello); otherwise use -m beg, -m end or exact names`,
    )
  }
  const literal = (m[2] ?? '').replace(/\\\./g, '.')
  return checkServerName(field, m[4] === undefined ? `${literal}*` : literal)
}

function seconds(field: string, value: string): number {
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) < 1 || Number(value) > 86400) fail(field, `${showValue(value)} ${rules.timeout.text}`)
  return Number(value)
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
    if (base === 'servicePath' || base === 'port' || base === 'serviceDomain' || base === 'srcPort') indexes.add(index)
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
  const tcp: Array<TcpDestination & { field: string }> = []
  const sni: Array<{ serverName: string[]; port: number; sendProxyProtocol?: boolean; field: string }> = []
  /** An own (indexed, or the only destination's) HTTP-only parameter on a TCP/SNI destination: refused, not ignored. */
  const refuseHttpOnly = (i: number | undefined, mode: string): void => {
    if (i === undefined && indexes.size > 0) return // the unindexed values are the other destinations' fallback
    for (const name of DESTINATION_FEATURES) {
      if (name === 'timeoutServer') continue
      if (ownAt(name, i) !== undefined) fail(i === undefined ? name : `${name}.${i}`, `applies to HTTP destinations; this one is reqMode=${mode}. Leave it out`)
    }
  }
  const streamCommon = (i: number | undefined, suffix: string, mode: string): { port: number; sendProxyProtocol?: boolean } => {
    const portValue = ownAt('port', i)
    if (portValue === undefined) fail(`port${suffix}`, `is required with reqMode=${mode} (Docker Flow Proxy's rule); it ${rules.port.text}`)
    refuseHttpOnly(i, mode)
    const spp = at(i)('sendProxyProtocol')
    const out: { port: number; sendProxyProtocol?: boolean } = { port: parsePort(`port${suffix}`, portValue) }
    if (spp !== undefined && parseBool(spp.field, spp.value)) out.sendProxyProtocol = true
    return out
  }
  const tcpDestination = (i: number | undefined, suffix: string): void => {
    if (i === undefined && indexes.size > 0 && ownAt('port', i) === undefined && ownAt('srcPort', i) === undefined) return // only indexed destinations
    const src = ownAt('srcPort', i)
    if (src === undefined) fail(`srcPort${suffix}`, `is required with reqMode=tcp (Docker Flow Proxy's rule: a TCP destination needs port and srcPort); it ${rules.srcPort.text}`)
    const srcPort = parseSrcPort(`srcPort${suffix}`, src)
    const common = streamCommon(i, suffix, 'tcp')
    if (ownAt('servicePath', i) !== undefined) warnings.push(`servicePath${suffix}: ignored for reqMode=tcp (a TCP destination has no path)`)
    if ((i === undefined ? get('serviceDomain') : ownAt('serviceDomain', i)) !== undefined && (i !== undefined || indexes.size === 0)) {
      fail(`serviceDomain${suffix}`, 'cannot narrow a reqMode=tcp destination: a TCP listener sees no host name (pass TLS through by server name with reqMode=sni)')
    }
    const d: TcpDestination & { field: string } = { srcPort, ...common, field: `srcPort${suffix}` }
    for (const name of ['timeoutClient', 'timeoutServer'] as const) {
      const t = at(i)(name)
      if (t !== undefined) d[name] = seconds(t.field, t.value)
    }
    tcp.push(d)
  }
  const sniDestination = (i: number | undefined, suffix: string): void => {
    if (i === undefined && indexes.size > 0 && ownAt('port', i) === undefined && ownAt('servicePath', i) === undefined) return // only indexed destinations
    const src = ownAt('srcPort', i)
    if (src !== undefined && src !== '443') {
      throw new NotImplementedError(
        `srcPort${suffix}: the Docker Flow Proxy parameter ${showValue(`srcPort${suffix}=${src}`)} is not implemented for reqMode=sni: SNI passthrough is served on the proxies' HTTPS port (srcPort 443, TETHER_PROXY_LISTEN_TLS), shared with the routes the proxies terminate; another listen port for it is not implemented. Nothing was stored`,
      )
    }
    const common = streamCommon(i, suffix, 'sni')
    const pt = at(i)('pathType')
    const method = sniMethod(pt?.field ?? 'pathType', pt?.value)
    const names = splitList(ownAt('servicePath', i)).map((v) => sniName(`servicePath${suffix}`, method, v))
    const domains = i === undefined ? (indexes.size === 0 ? get('serviceDomain') : undefined) : ownAt('serviceDomain', i)
    for (const dmn of splitList(domains)) names.push(checkServerName(`serviceDomain${suffix}`, dmn))
    if (names.length === 0) fail(`servicePath${suffix}`, `is required with reqMode=sni: the TLS server names to pass through (or serviceDomain${suffix}); each ${rules.serverName.text}`)
    if (names.length > limits.maxServerNames) fail(`servicePath${suffix}`, `gives ${names.length} server names; at most ${limits.maxServerNames} are allowed`)
    sni.push({ serverName: names, ...common, field: `servicePath${suffix}` })
  }
  const destination = (i: number | undefined): void => {
    const suffix = i === undefined ? '' : `.${i}`
    const modeRead = at(i)('reqMode')
    const mode = modeRead?.value ?? 'http'
    if (mode === 'tcp') return tcpDestination(i, suffix)
    if (mode === 'sni') return sniDestination(i, suffix)
    if (mode !== 'http') fail(modeRead?.field ?? 'reqMode', `${showValue(mode)} must be http, tcp or sni`)
    // DFP's srcPort of an HTTP destination is an ACL on the port the request arrived on: 80 is
    // plain HTTP, 443 is HTTPS (the proxies' two listeners, whatever port they are published on).
    const src = ownAt('srcPort', i)
    if (src !== undefined && src !== '80' && src !== '443') {
      throw new NotImplementedError(
        `srcPort${suffix}: the Docker Flow Proxy parameter ${showValue(`srcPort${suffix}=${src}`)} with reqMode=http (an extra HTTP listener) is not implemented by Tether: HTTP routes answer on the proxies' HTTP listener (srcPort 80) and HTTPS listener (srcPort 443); the route is refused rather than routed differently. Nothing was stored`,
      )
    }
    const listener = src === '80' ? 'http' : src === '443' ? 'https' : undefined
    const pt = at(i)('pathType')
    if (pt !== undefined && pt.value !== 'path_beg') {
      throw new NotImplementedError(
        `${pt.field}: the Docker Flow Proxy parameter ${showValue(`${pt.field}=${pt.value}`)} is not implemented by Tether for HTTP (Tether matches path prefixes on whole segments; path_beg is accepted; for reqMode=sni, req_ssl_sni is); the route is refused rather than routed differently. Nothing was stored`,
      )
    }
    if (pt !== undefined && !warnings.some((w) => w.startsWith(`${pt.field}:`))) {
      warnings.push(`${pt.field}: Docker Flow Proxy parameter accepted; Tether matches path prefixes on whole segments (/demo serves /demo and /demo/x, not /demonstration)`)
    }
    const spp = at(i)('sendProxyProtocol')
    if (spp !== undefined && parseBool(spp.field, spp.value)) fail(spp.field, 'applies to reqMode=tcp and reqMode=sni destinations; HTTP destinations get X-Forwarded-For')
    const tc = at(i)('timeoutClient')
    if (tc !== undefined && !warnings.some((w) => w.startsWith(`${tc.field}:`))) warnings.push(`${tc.field}: Docker Flow Proxy parameter not implemented by Tether for HTTP destinations (the client timeout is the proxy-wide 60 s; TCP destinations take it); ignored`)
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
    if (listener !== undefined) {
      if (d.listener !== undefined && d.listener !== listener) fail(`srcPort${suffix}`, `${src} and listener=${d.listener} contradict each other: give one`)
      d.listener = listener
    }
    destinations.push(d)
  }
  destination(undefined)
  for (const i of [...indexes].sort((a, b) => a - b)) destination(i)
  checkStreamDestinations(tcp, sni)
  if (destinations.length === 0 && tcp.length === 0 && sni.length === 0) throw new NothingToRouteError('nothing to route: give servicePath or serviceDomain (Docker Flow Proxy answers 409 too). Nothing was stored')
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
  if (features.auth !== undefined && (tcp.length > 0 || sni.length > 0)) {
    fail(get('users') !== undefined ? 'users' : 'usersSecret', "basic authentication applies to HTTP destinations only: this route's reqMode=tcp/sni destinations would stay open. Give them a route (service) of their own, or leave users out")
  }
  const input: RouteInput = {
    serviceName,
    ...backendFields(Object.fromEntries(BACKEND_FIELDS.flatMap((f) => (get(f) === undefined ? [] : [[f, get(f)]])))),
    destinations,
    tcp: tcp.map(({ field: _field, ...d }) => d),
    sni: sni.map(({ field: _field, ...d }) => d),
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
