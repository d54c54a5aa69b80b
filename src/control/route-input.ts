/**
 * Pure translation of what a client sends (query string, JSON body, Docker Flow Proxy's
 * parameters) into a normalised, validated `Route`. Every rule comes from `rules` in
 * contracts/route.ts, so a query-string value and a JSON value are judged by the same
 * sentence; every error names the field the client used (`servicePath`, `servicePath.1`,
 * `destinations[0].servicePath[1]`) and the rule, and is thrown before anything is stored.
 */
import { Compile } from 'typebox/compile'
import { limits, normalizeRoute, rules, RouteSchema, type Route } from '../contracts/route.ts'
import { ValidationFailedError } from './errors.ts'

type RuleName = keyof typeof rules

const patterns = {
  serviceName: new RegExp(rules.serviceName.pattern),
  servicePath: new RegExp(rules.servicePath.pattern),
  serviceDomain: new RegExp(rules.serviceDomain.pattern),
  stickyCookie: new RegExp(rules.stickyCookie.pattern),
  endpoint: new RegExp(rules.endpoint.pattern),
  aclName: new RegExp(rules.aclName.pattern),
}

const maxLengths: Partial<Record<RuleName, number>> = {
  serviceName: 63,
  servicePath: rules.servicePath.maxLength,
  serviceDomain: rules.serviceDomain.maxLength,
  stickyCookie: 64,
  endpoint: rules.endpoint.maxLength,
  aclName: 63,
}

/** Which rule judges a field, by the field's name (last named segment of its path). */
const ruleOfField: Record<string, RuleName> = {
  serviceName: 'serviceName',
  servicePath: 'servicePath',
  serviceDomain: 'serviceDomain',
  stickyCookie: 'stickyCookie',
  endpoints: 'endpoint',
  endpoint: 'endpoint',
  port: 'port',
  aclName: 'aclName',
}

/** Rules of the query parameters that are not part of a route. */
const otherRules: Record<string, string> = {
  wait: "must be a number of seconds from 0 to 60 ('30' and '30s' are the same), or 'converged' on endpoints that change routes",
  timeout: "must be a number of seconds from 0 to 300 ('30' and '30s' are the same)",
  id: "must be a proxy id: letters, digits, '_', '.', '-', starting with a letter or digit, at most 128 characters",
}

/** A value as an error message may show it: JSON-quoted (so control characters are visible), bounded. */
export function showValue(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

function fail(field: string, message: string): never {
  throw new ValidationFailedError(`${field}: ${message}`)
}

function checkString(field: string, rule: Exclude<RuleName, 'port'>, value: string): string {
  const max = maxLengths[rule]
  if (max !== undefined && value.length > max) fail(field, `is ${value.length} characters long; ${rules[rule].text}, at most ${max} characters`)
  if (!patterns[rule].test(value)) fail(field, `${showValue(value)} ${rules[rule].text}`)
  return value
}

function checkList(field: string, rule: Exclude<RuleName, 'port'>, values: readonly string[], maxItems: number): string[] {
  if (values.length > maxItems) fail(field, `has ${values.length} entries; at most ${maxItems} are allowed`)
  return values.map((v) => checkString(field, rule, v))
}

/**
 * Splits a comma-separated query value; empty entries (",," or a trailing ",") are dropped.
 * Entries are not trimmed: '/a\n' must be refused, not quietly turned into '/a'.
 */
export function splitList(value: string | undefined): string[] {
  if (value === undefined) return []
  return value.split(',').filter((s) => s.length > 0)
}

/** Parses a port given as text (DFP parameters are all strings). */
export function parsePort(field: string, value: string | number | undefined): number {
  if (value === undefined) fail(field, `is required; ${rules.port.text}`)
  const n = typeof value === 'number' ? value : /^[0-9]{1,5}$/.test(value) ? Number(value) : NaN
  if (!Number.isInteger(n) || n < 1 || n > 65535) fail(field, `${showValue(value)} ${rules.port.text}`)
  return n
}

const checkRoute = Compile(RouteSchema)

/** Last line of defence: the built route must satisfy the contract every proxy relies on. */
function finish(route: Route): Route {
  if (!checkRoute.Check(route)) {
    const first = [...checkRoute.Errors(route)][0]
    throw new ValidationFailedError(first === undefined ? 'route: invalid' : describeSchemaError(first, route))
  }
  return route
}

/** Tether's query-string form of a route (GET|PUT /v1/reconfigure). Lists are comma-separated. */
export interface RouteQuery {
  serviceName: string
  servicePath?: string | undefined
  port?: number | undefined
  serviceDomain?: string | undefined
  sticky?: boolean | undefined
  stickyCookie?: string | undefined
  endpoints?: string | undefined
}

export function routeFromQuery(query: RouteQuery): Route {
  const serviceName = checkString('serviceName', 'serviceName', query.serviceName)
  if (query.servicePath === undefined) fail('servicePath', `is required; it ${rules.servicePath.text}`)
  const paths = checkList('servicePath', 'servicePath', splitList(query.servicePath), limits.maxPaths)
  if (paths.length === 0) fail('servicePath', `is empty; it ${rules.servicePath.text}`)
  const port = parsePort('port', query.port)
  return finish(
    normalizeRoute({
      serviceName,
      destinations: [{ servicePath: paths, port }],
      serviceDomain: checkList('serviceDomain', 'serviceDomain', splitList(query.serviceDomain), limits.maxDomains),
      sticky: query.sticky,
      stickyCookie: query.stickyCookie === undefined ? undefined : checkString('stickyCookie', 'stickyCookie', query.stickyCookie),
      endpoints: checkList('endpoints', 'endpoint', splitList(query.endpoints), limits.maxEndpoints),
    }),
  )
}

/**
 * The JSON form (POST /v1/reconfigure, PUT /v1/routes/{serviceName}); the values were already
 * checked by the body schema. A route gives either `servicePath` + `port` (one destination)
 * or `destinations`, not both.
 */
export interface RouteBody {
  serviceName?: string | undefined
  servicePath?: string[] | undefined
  port?: number | undefined
  destinations?: Array<{ servicePath: string[]; port: number }> | undefined
  serviceDomain?: string[] | undefined
  sticky?: boolean | undefined
  stickyCookie?: string | undefined
  endpoints?: string[] | undefined
}

export function routeFromBody(body: RouteBody, serviceNameFromPath?: string): Route {
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
  let destinations: Array<{ servicePath: string[]; port: number }>
  if (body.destinations !== undefined) {
    destinations = body.destinations
  } else {
    if (body.servicePath === undefined || body.servicePath.length === 0) fail('servicePath', `is required (or give 'destinations'); it ${rules.servicePath.text}`)
    destinations = [{ servicePath: body.servicePath, port: parsePort('port', body.port) }]
  }
  destinations.forEach((d, i) => d.servicePath.forEach((p, j) => checkString(`destinations[${i}].servicePath[${j}]`, 'servicePath', p)))
  return finish(
    normalizeRoute({
      serviceName,
      destinations,
      serviceDomain: body.serviceDomain,
      sticky: body.sticky,
      stickyCookie: body.stickyCookie,
      endpoints: body.endpoints,
    }),
  )
}

/**
 * Docker Flow Proxy parameters Tether understands; every other parameter is reported in
 * `warnings`. `distribute` and `replicas` are accepted without a warning: every Tether proxy
 * replica always receives every change, which is what they asked DFP for.
 */
const dfpHandled = new Set(['serviceName', 'servicePath', 'port', 'serviceDomain', 'sessionType', 'distribute', 'replicas', 'sticky', 'stickyCookie', 'endpoints', 'aclName', 'wait', 'timeout'])

/** DFP parameters we know of but do not implement, with why (shown in the warning). */
const dfpKnownUnimplemented: Record<string, string> = {
  reqMode: 'Tether routes HTTP only',
  srcPort: 'Tether proxies listen on one port',
  httpsPort: 'TLS is not implemented yet',
  httpsOnly: 'TLS is not implemented yet',
  redirectFromDomain: 'redirects are not implemented',
  reqPathSearch: 'path rewriting is not implemented',
  reqPathReplace: 'path rewriting is not implemented',
  reqPathSearchReplace: 'path rewriting is not implemented',
  users: 'basic authentication is not implemented',
  usersSecret: 'basic authentication is not implemented',
  usersPassEncrypted: 'basic authentication is not implemented',
  pathType: 'Tether matches path prefixes on whole segments',
  timeoutServer: 'per-route timeouts are not implemented',
  timeoutTunnel: 'per-route timeouts are not implemented',
  sslVerifyNone: 'TLS to backends is not implemented',
  serviceDomainAlgo: 'host matching is exact or *.wildcard',
  addReqHeader: 'header rewriting is not implemented',
  addResHeader: 'header rewriting is not implemented',
  setReqHeader: 'header rewriting is not implemented',
  setResHeader: 'header rewriting is not implemented',
  delReqHeader: 'header rewriting is not implemented',
  delResHeader: 'header rewriting is not implemented',
  templateFePath: 'custom HAProxy templates are not supported',
  templateBePath: 'custom HAProxy templates are not supported',
  backendExtra: 'custom HAProxy configuration is not supported',
  checkResolvers: 'Tether proxies always resolve tasks.<service> through Docker DNS',
  balanceGroup: 'Tether balances round-robin, or by cookie when sticky',
  outboundHostname: 'not implemented',
  isDefaultBackend: 'requests with no route get a 404',
  ignoreAuthorization: 'basic authentication is not implemented',
  compressionAlgo: 'compression is not implemented',
  compressionType: 'compression is not implemented',
  connectionMode: 'not implemented',
  httpsRedirectCode: 'TLS is not implemented yet',
  xForwardedProto: 'Tether always sets X-Forwarded-Proto',
}

export interface DfpResult {
  route: Route
  warnings: string[]
}

type DfpQuery = Record<string, string | undefined>

/** Warnings for the parameters of a DFP request that Tether ignores, in a stable order. */
export function dfpWarnings(query: DfpQuery, handled: (name: string) => boolean): string[] {
  const warnings: string[] = []
  for (const name of Object.keys(query).sort()) {
    if (handled(name)) continue
    const base = name.replace(/\.[0-9]+$/, '')
    const why = dfpKnownUnimplemented[base]
    warnings.push(
      why !== undefined
        ? `${name}: Docker Flow Proxy parameter not implemented by Tether (${why}); ignored`
        : `${name}: not a parameter Tether knows; ignored`,
    )
  }
  return warnings
}

/**
 * `/v1/docker-flow-proxy/reconfigure`: DFP's names. `servicePath`/`port` are the first
 * destination; the indexed forms `servicePath.N`/`port.N` (N ≥ 1) add one destination each,
 * in index order. `sessionType=sticky-server` means sticky.
 */
export function routeFromDfpQuery(query: DfpQuery): DfpResult {
  if (query.serviceName === undefined) fail('serviceName', `is required; it ${rules.serviceName.text}`)
  const serviceName = checkString('serviceName', 'serviceName', query.serviceName)
  const indexed = new Set<number>()
  for (const key of Object.keys(query)) {
    const m = /^(?:servicePath|port)\.([0-9]{1,3})$/.exec(key)
    if (m !== null) indexed.add(Number(m[1]))
  }
  const destinations: Array<{ servicePath: string[]; port: number }> = []
  const destination = (pathKey: string, portKey: string): void => {
    const paths = checkList(pathKey, 'servicePath', splitList(query[pathKey]), limits.maxPaths)
    if (paths.length === 0) fail(pathKey, `is required; it ${rules.servicePath.text}`)
    destinations.push({ servicePath: paths, port: parsePort(portKey, query[portKey]) })
  }
  if (query.servicePath !== undefined || query.port !== undefined || indexed.size === 0) destination('servicePath', 'port')
  for (const i of [...indexed].sort((a, b) => a - b)) destination(`servicePath.${i}`, `port.${i}`)
  if (destinations.length > limits.maxDestinations) fail('servicePath', `gives ${destinations.length} destinations; at most ${limits.maxDestinations} are allowed`)

  let sticky: boolean | undefined
  if (query.sessionType !== undefined) {
    if (query.sessionType !== 'sticky-server') fail('sessionType', `${showValue(query.sessionType)} must be 'sticky-server' (the only session type Docker Flow Proxy defines)`)
    sticky = true
  }
  if (query.sticky !== undefined) {
    if (query.sticky !== 'true' && query.sticky !== 'false') fail('sticky', `${showValue(query.sticky)} must be true or false`)
    sticky = sticky === true || query.sticky === 'true'
  }
  const route = finish(
    normalizeRoute({
      serviceName,
      destinations,
      serviceDomain: checkList('serviceDomain', 'serviceDomain', splitList(query.serviceDomain), limits.maxDomains),
      sticky,
      stickyCookie: query.stickyCookie === undefined ? undefined : checkString('stickyCookie', 'stickyCookie', query.stickyCookie),
      endpoints: checkList('endpoints', 'endpoint', splitList(query.endpoints), limits.maxEndpoints),
      aclName: query.aclName === undefined ? undefined : checkString('aclName', 'aclName', query.aclName),
    }),
  )
  const warnings = dfpWarnings(query, (name) => dfpHandled.has(name) || /^(?:servicePath|port)\.[0-9]{1,3}$/.test(name))
  return { route, warnings }
}

/** `/v1/docker-flow-proxy/remove`: the service name, and warnings for everything else. */
export function serviceNameFromDfpRemove(query: DfpQuery): { serviceName: string; warnings: string[] } {
  if (query.serviceName === undefined) fail('serviceName', `is required; it ${rules.serviceName.text}`)
  const serviceName = checkString('serviceName', 'serviceName', query.serviceName)
  return { serviceName, warnings: dfpWarnings(query, (name) => name === 'serviceName' || name === 'distribute' || name === 'wait' || name === 'timeout') }
}

/** The error shape shared by ajv (Fastify's validator) and typebox/compile. */
export interface SchemaError {
  keyword: string
  instancePath: string
  params: Record<string, unknown>
  message?: string | undefined
}

/** '/destinations/0/servicePath/1' → 'destinations[0].servicePath[1]' */
export function fieldOf(instancePath: string): string {
  return instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, seg) => (/^[0-9]+$/.test(seg) ? `${acc}[${seg}]` : acc === '' ? seg : `${acc}.${seg}`), '')
}

function valueAt(root: unknown, instancePath: string): unknown {
  let node: unknown = root
  for (const seg of instancePath.split('/').slice(1)) {
    if (node === null || typeof node !== 'object') return undefined
    node = (node as Record<string, unknown>)[seg.replace(/~1/g, '/').replace(/~0/g, '~')]
  }
  return node
}

/**
 * One schema-validation error as a sentence naming the field and the rule, e.g.
 * `servicePath[0]: "/a b" must start with '/' and hold only RFC 3986 path characters ...`
 * instead of ajv's raw `must match pattern "^(?:/|..."`. `root` is the validated value.
 */
export function describeSchemaError(error: SchemaError, root: unknown): string {
  const field = fieldOf(error.instancePath)
  const named = field.replace(/\[[0-9]+\]/g, '').split('.').pop() ?? ''
  const rule = ruleOfField[named]
  const value = valueAt(root, error.instancePath)
  const p = error.params
  const at = (msg: string): string => (field === '' ? msg : `${field}: ${msg}`)
  switch (error.keyword) {
    case 'required': {
      const missing = String(p.missingProperty ?? p.requiredProperties ?? '')
      const r = ruleOfField[missing]
      return `${field === '' ? '' : `${field}.`}${missing}: is required${r === undefined ? '' : `; it ${rules[r].text}`}`
    }
    case 'pattern':
    case 'format':
      if (rule !== undefined) return at(`${showValue(value)} ${rules[rule].text}`)
      if (otherRules[named] !== undefined) return at(`${showValue(value)} ${otherRules[named]}`)
      return at(`${showValue(value)} ${String(error.message ?? 'is malformed').replace(/ ".*"$/, '')}`)
    case 'maxLength':
    case 'minLength':
      if (rule !== undefined) return at(`is ${typeof value === 'string' ? value.length : '?'} characters long; ${rules[rule].text}${error.keyword === 'maxLength' ? `, at most ${String(p.limit)} characters` : ''}`)
      return at(`must be ${error.keyword === 'maxLength' ? 'at most' : 'at least'} ${String(p.limit)} characters long`)
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      if (rule === 'port') return at(`${showValue(value)} ${rules.port.text}`)
      return at(`${showValue(value)} ${error.message ?? 'is out of range'}`)
    case 'type':
      if (rule === 'port') return at(`${showValue(value)} ${rules.port.text}`)
      return at(`${showValue(value)} must be ${String(p.type)}`)
    case 'maxItems':
      return at(`has too many entries; at most ${String(p.limit)} are allowed`)
    case 'minItems':
      return at(`needs at least ${String(p.limit)} ${Number(p.limit) === 1 ? 'entry' : 'entries'}`)
    case 'additionalProperties':
      return `${field === '' ? '' : `${field}.`}${String(p.additionalProperty)}: is not a known field`
    case 'enum':
    case 'const':
    case 'anyOf':
      if (otherRules[named] !== undefined) return at(`${showValue(value)} ${otherRules[named]}`)
      return at(`${showValue(value)} ${error.message ?? 'is not an allowed value'}`)
    default:
      return at(error.message ?? 'is invalid')
  }
}
