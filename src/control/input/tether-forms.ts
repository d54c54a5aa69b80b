/**
 * Tether's own forms of a route: the query string (GET|PUT /v1/reconfigure) and the JSON body
 * (POST /v1/reconfigure, PUT /v1/routes/{serviceName}) → a normalised, validated `Route`.
 */
import { headerValueProblem, limits, normalizeRoute, rules, type Auth, type Destination, type Header, type Route, type RouteInput, type SniDestination, type TcpDestination } from '../../contracts/route.ts'
import { checkList, checkServerName, checkStreamDestinations, checkString, fail, finish, parsePort, parseSrcPort, showValue, splitList } from './fields.ts'
import { httpsFields } from './https-fields.ts'
import { backendFields } from './backend-fields.ts'
import { pcreProblem } from './pcre-regex.ts'
import { DESTINATION_FEATURES, destinationFeatures, passwordHashOf, routeFeatures, routeRewriteOf, type Read } from './route-features.ts'

/** Tether's query-string form of a route (GET|PUT /v1/reconfigure). Lists are comma-separated. */
export interface RouteQuery {
  serviceName: string
  servicePath?: string | undefined
  port?: string | number | undefined
  serviceDomain?: string | undefined
  sticky?: boolean | undefined
  stickyCookie?: string | undefined
  endpoints?: string | undefined
  httpsOnly?: string | boolean | undefined
  redirectWhenHttpProto?: string | boolean | undefined
  httpsRedirectCode?: string | number | undefined
  denyHttp?: string | boolean | undefined
  hstsMaxAge?: string | number | undefined
  hstsIncludeSubDomains?: string | boolean | undefined
  hstsPreload?: string | boolean | undefined
  acme?: string | boolean | undefined
  /** http (default), tcp (srcPort → port) or sni (serverName → port, TLS passed through). */
  reqMode?: string | undefined
  srcPort?: string | number | undefined
  serverName?: string | undefined
  sendProxyProtocol?: string | boolean | undefined
  /** The HTTP features, by Docker Flow Proxy's names (see route-features.ts). */
  [feature: string]: string | number | boolean | undefined
}

/** A route and the warnings about what it asked for and does not get. */
export interface ParsedRoute {
  route: Route
  warnings: string[]
}

function bool(field: string, value: string | number | boolean | undefined): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value
  if (value === 'true') return true
  if (value === 'false') return false
  return fail(field, `${showValue(String(value))} must be true or false`)
}

/** What a reqMode=tcp|sni query may hold; anything else is an HTTP route's and is refused rather than ignored. */
const STREAM_QUERY_FIELDS = new Set(['serviceName', 'reqMode', 'port', 'srcPort', 'serverName', 'sendProxyProtocol', 'sticky', 'endpoints', 'wait', 'timeout', 'takeover'])

/** reqMode=tcp|sni in the query form: one TCP or SNI destination. */
function streamRouteFromQuery(serviceName: string, mode: 'tcp' | 'sni', query: RouteQuery): Route {
  for (const f of Object.keys(query).sort()) {
    if (query[f] === undefined || STREAM_QUERY_FIELDS.has(f)) continue
    fail(f, `applies to HTTP routes; a reqMode=${mode} route has no ${f === 'servicePath' ? 'path' : f === 'serviceDomain' ? 'host header (for TLS server names use reqMode=sni with serverName)' : 'such behaviour'}. Leave it out`)
  }
  const port = parsePort('port', query.port)
  const sendProxyProtocol = bool('sendProxyProtocol', query.sendProxyProtocol)
  const common = { serviceName, destinations: [], sticky: query.sticky, endpoints: checkList('endpoints', 'endpoint', splitList(query.endpoints), limits.maxEndpoints) }
  if (mode === 'tcp') {
    if (query.serverName !== undefined) fail('serverName', 'belongs to reqMode=sni routes; a TCP route is chosen by its srcPort')
    if (query.srcPort === undefined) fail('srcPort', `is required with reqMode=tcp (the port every proxy listens on for this route); it ${rules.srcPort.text}`)
    const srcPort = parseSrcPort('srcPort', query.srcPort)
    return finish(normalizeRoute({ ...common, tcp: [{ srcPort, port, ...(sendProxyProtocol === true ? { sendProxyProtocol } : {}) }] }))
  }
  if (query.srcPort !== undefined) fail('srcPort', "is for reqMode=tcp; SNI passthrough routes are served on the proxies' HTTPS port (TETHER_PROXY_LISTEN_TLS)")
  if (query.serverName === undefined) fail('serverName', `is required with reqMode=sni (comma-separated); each ${rules.serverName.text}`)
  const names = splitList(query.serverName).map((n) => checkServerName('serverName', n))
  if (names.length === 0) fail('serverName', `is empty; each ${rules.serverName.text}`)
  if (names.length > limits.maxServerNames) fail('serverName', `has ${names.length} entries; at most ${limits.maxServerNames} are allowed`)
  return finish(normalizeRoute({ ...common, sni: [{ serverName: names, port, ...(sendProxyProtocol === true ? { sendProxyProtocol } : {}) }] }))
}

export function routeFromQuery(query: RouteQuery): ParsedRoute {
  const serviceName = checkString('serviceName', 'serviceName', query.serviceName)
  const mode = query.reqMode ?? 'http'
  if (mode === 'tcp' || mode === 'sni') return { route: streamRouteFromQuery(serviceName, mode, query), warnings: [] }
  if (mode !== 'http') fail('reqMode', `${showValue(String(mode))} must be http, tcp or sni`)
  for (const f of ['srcPort', 'serverName', 'sendProxyProtocol'] as const) {
    if (query[f] !== undefined) fail(f, `belongs to reqMode=${f === 'serverName' ? 'sni' : f === 'srcPort' ? 'tcp' : 'tcp or reqMode=sni'} routes; this one is HTTP (reqMode=http)`)
  }
  if (query.servicePath === undefined) fail('servicePath', `is required; it ${rules.servicePath.text}`)
  const paths = checkList('servicePath', 'servicePath', splitList(query.servicePath), limits.maxPaths)
  if (paths.length === 0) fail('servicePath', `is empty; it ${rules.servicePath.text}`)
  const port = parsePort('port', query.port)
  const read: Read = (name) => {
    const v = Object.prototype.hasOwnProperty.call(query, name) ? query[name] : undefined
    return v === undefined || v === '' ? undefined : { value: String(v), field: name }
  }
  const serviceDomain = checkList('serviceDomain', 'serviceDomain', splitList(query.serviceDomain), limits.maxDomains)
  const { features, warnings } = routeFeatures(read, serviceName)
  const destination = { servicePath: paths, port, ...destinationFeatures(read, serviceDomain, routeRewriteOf(read)) }
  const route = finish(
    normalizeRoute({
      serviceName,
      ...backendFields({ ...query }),
      destinations: [destination],
      serviceDomain,
      sticky: query.sticky,
      stickyCookie: query.stickyCookie === undefined ? undefined : checkString('stickyCookie', 'stickyCookie', query.stickyCookie),
      endpoints: checkList('endpoints', 'endpoint', splitList(query.endpoints), limits.maxEndpoints),
      ...features,
      ...httpsFields({ ...query }, splitList(query.serviceDomain)),
    }),
  )
  return { route, warnings: [...warnings, ...authWarnings(route)] }
}

/** A route whose paths all skip its users asks for nothing: say so rather than pretend. */
function authWarnings(route: Route): string[] {
  if (route.auth === undefined && route.destinations.some((d) => d.ignoreAuthorization === true)) return ['ignoreAuthorization: the route has no users, so there is no authorization to ignore']
  return []
}

type DestinationFeatures = Partial<Omit<Destination, 'servicePath' | 'port' | 'serviceDomain'>>
type DestinationBody = Partial<Destination> & { servicePath: string[]; port: number }

export interface AuthBody {
  users?: Array<{ name: string; password?: string | undefined; passwordHash?: string | undefined }> | undefined
  usersSecret?: string | undefined
  usersSecretEncrypted?: boolean | undefined
  usersFromSecret?: string[] | undefined
  realm?: string | undefined
}

export interface RouteBody extends DestinationFeatures {
  serviceName?: string | undefined
  servicePath?: string[] | undefined
  port?: number | undefined
  destinations?: DestinationBody[] | undefined
  tcp?: TcpDestination[] | undefined
  sni?: SniDestination[] | undefined
  serviceDomain?: string[] | undefined
  sticky?: boolean | undefined
  stickyCookie?: string | undefined
  endpoints?: string[] | undefined
  httpsOnly?: boolean | undefined
  redirectWhenHttpProto?: boolean | undefined
  httpsRedirectCode?: number | undefined
  denyHttp?: boolean | undefined
  hstsMaxAge?: number | undefined
  hstsIncludeSubDomains?: boolean | undefined
  hstsPreload?: boolean | undefined
  acme?: boolean | undefined
  addReqHeader?: Header[] | undefined
  setReqHeader?: Header[] | undefined
  delReqHeader?: string[] | undefined
  addResHeader?: Header[] | undefined
  setResHeader?: Header[] | undefined
  delResHeader?: string[] | undefined
  auth?: AuthBody | undefined
  isDefaultBackend?: boolean | undefined
  compressionAlgo?: RouteInput['compressionAlgo']
  compressionType?: string[] | undefined
  ipAllow?: string[] | undefined
  ipDeny?: string[] | undefined
  healthCheckPath?: string | undefined
  healthCheckInterval?: number | undefined
  healthCheckStatus?: number | undefined
  healthCheckSlowStart?: number | undefined
  canary?: number | undefined
  rateLimit?: number | undefined
  rateLimitBurst?: number | undefined
  rateLimitTotal?: number | undefined
  bodyLimit?: number | undefined
}

/** The destination fields of the JSON form: the text forms' names, with DFP's reqPathSearchReplace stored as pathRewrite. */
const DESTINATION_FEATURE_KEYS = DESTINATION_FEATURES.map((n) => (n === 'reqPathSearchReplace' ? 'pathRewrite' : n)) satisfies ReadonlyArray<keyof DestinationFeatures>

/** What the body schema cannot say about a destination: regular expressions compile, a redirect has a host to go to. */
function checkDestination(field: string, d: DestinationBody, routeDomains: readonly string[]): void {
  d.pathRewrite?.forEach((r, i) => {
    const problem = pcreProblem(r.search)
    if (problem !== null) fail(`${field}pathRewrite[${i}].search`, `${showValue(r.search)} ${problem}`)
  })
  if (d.redirectFromDomain !== undefined && !(d.serviceDomain ?? routeDomains).some((h) => !h.startsWith('*.'))) {
    fail(`${field}redirectFromDomain`, "redirects to the destination's first host name: give serviceDomain (not only a wildcard)")
  }
}

/** The JSON form's basic auth: passwords hashed here (never stored plain), hashes as given. */
function authFromBody(serviceName: string, auth: AuthBody): Auth {
  const users = (auth.users ?? []).map((u, i) => {
    if ((u.password === undefined) === (u.passwordHash === undefined)) fail(`auth.users[${i}]`, "give 'password' or 'passwordHash' (one of them)")
    return { name: u.name, passwordHash: u.passwordHash ?? passwordHashOf(`auth.users[${i}].password`, serviceName, u.name, u.password as string, false) }
  })
  if (auth.usersSecret === undefined) {
    if (auth.usersFromSecret !== undefined) fail('auth.usersFromSecret', 'needs usersSecret (the Docker secret the users come from)')
    if (auth.usersSecretEncrypted !== undefined) fail('auth.usersSecretEncrypted', 'needs usersSecret (the Docker secret the users come from)')
    if (users.length === 0) fail('auth.users', "is empty: give users, or usersSecret (leave 'auth' out for no authentication)")
  }
  const out: Auth = { users }
  if (auth.usersSecret !== undefined) out.usersSecret = auth.usersSecret
  if (auth.usersSecretEncrypted === true) out.usersSecretEncrypted = true
  if (auth.usersFromSecret !== undefined) out.usersFromSecret = auth.usersFromSecret
  if (auth.realm !== undefined) out.realm = auth.realm
  return out
}

/**
 * The JSON form (POST /v1/reconfigure, PUT /v1/routes/{serviceName}); the values were already
 * checked by the body schema. A route gives either `servicePath` + `port` (one destination,
 * with its features at the top level) or `destinations`, not both.
 */
export function routeFromBody(body: RouteBody, serviceNameFromPath?: string): ParsedRoute {
  let serviceName = body.serviceName
  if (serviceNameFromPath !== undefined) {
    checkString('serviceName', 'serviceName', serviceNameFromPath)
    if (serviceName !== undefined && serviceName !== serviceNameFromPath) {
      fail('serviceName', `${showValue(serviceName)} differs from the service name in the path (${showValue(serviceNameFromPath)}); leave it out or make them equal`)
    }
    serviceName = serviceNameFromPath
  }
  if (serviceName === undefined) fail('serviceName', `is required; it ${rules.serviceName.text}`)
  checkString('serviceName', 'serviceName', serviceName)
  const short = body.servicePath !== undefined || body.port !== undefined
  if (short && body.destinations !== undefined) fail('destinations', "give either 'servicePath' and 'port', or 'destinations', not both")
  let destinations: DestinationBody[]
  const topLevel = DESTINATION_FEATURE_KEYS.filter((k) => body[k] !== undefined)
  const streams = body.tcp !== undefined || body.sni !== undefined
  if (body.destinations !== undefined) {
    if (topLevel.length > 0) fail(topLevel[0] as string, "belongs in each destination when 'destinations' is given")
    destinations = body.destinations
  } else if (!short && streams) {
    if (topLevel.length > 0) fail(topLevel[0] as string, 'belongs to an HTTP destination (servicePath + port); this route has only tcp/sni destinations')
    destinations = []
  } else {
    if (body.servicePath === undefined || body.servicePath.length === 0) fail('servicePath', `is required (or give 'destinations'); it ${rules.servicePath.text}`)
    const d: DestinationBody = { servicePath: body.servicePath, port: parsePort('port', body.port) }
    for (const k of topLevel) Object.assign(d, { [k]: body[k] })
    destinations = [d]
  }
  destinations.forEach((d, i) => {
    d.servicePath.forEach((p, j) => checkString(`destinations[${i}].servicePath[${j}]`, 'servicePath', p))
    checkDestination(body.destinations === undefined ? '' : `destinations[${i}].`, d, body.serviceDomain ?? [])
  })
  for (const key of ['addReqHeader', 'setReqHeader', 'addResHeader', 'setResHeader'] as const) {
    body[key]?.forEach((h, i) => {
      const problem = headerValueProblem(h.value)
      if (problem !== null) fail(`${key}[${i}].value`, `${showValue(h.value)} ${problem}`)
    })
  }
  const tcp = body.tcp?.map((d, i) => ({ ...d, srcPort: parseSrcPort(`tcp[${i}].srcPort`, d.srcPort) }))
  const sni = body.sni?.map((d, i) => ({ ...d, serverName: d.serverName.map((n, j) => checkServerName(`sni[${i}].serverName[${j}]`, n)) }))
  checkStreamDestinations(
    (tcp ?? []).map((d, i) => ({ field: `tcp[${i}].srcPort`, srcPort: d.srcPort })),
    (sni ?? []).map((d, i) => ({ field: `sni[${i}].serverName`, serverName: d.serverName })),
  )
  if (body.auth !== undefined && streams) {
    fail('auth', "basic authentication applies to HTTP destinations only: this route's tcp/sni destinations would stay open. Give them a route (service) of their own, or leave auth out")
  }
  const input: RouteInput = {
    serviceName,
    ...backendFields({ ...body }),
    destinations,
    tcp,
    sni,
    serviceDomain: body.serviceDomain,
    sticky: body.sticky,
    stickyCookie: body.stickyCookie,
    endpoints: body.endpoints,
    addReqHeader: body.addReqHeader,
    setReqHeader: body.setReqHeader,
    delReqHeader: body.delReqHeader,
    addResHeader: body.addResHeader,
    setResHeader: body.setResHeader,
    delResHeader: body.delResHeader,
    auth: body.auth === undefined ? undefined : authFromBody(serviceName, body.auth),
    isDefaultBackend: body.isDefaultBackend,
    compressionAlgo: body.compressionAlgo,
    compressionType: body.compressionType,
    ipAllow: body.ipAllow,
    ipDeny: body.ipDeny,
    healthCheckPath: body.healthCheckPath,
    healthCheckInterval: body.healthCheckInterval,
    healthCheckStatus: body.healthCheckStatus,
    healthCheckSlowStart: body.healthCheckSlowStart,
    canary: body.canary,
    rateLimit: body.rateLimit,
    rateLimitBurst: body.rateLimitBurst,
    rateLimitTotal: body.rateLimitTotal,
    bodyLimit: body.bodyLimit,
    ...httpsFields({ ...body }, body.serviceDomain ?? []),
  }
  const route = finish(normalizeRoute(input))
  return { route, warnings: authWarnings(route) }
}
