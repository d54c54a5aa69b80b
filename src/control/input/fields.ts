/**
 * The field checks every input form shares (Tether's query and JSON forms, the Docker Flow
 * Proxy form, com.df.* labels): each rule comes from `rules` in contracts/route.ts, so a value
 * is judged by the same sentence wherever it arrives, and every error names the field the
 * client used (`servicePath`, `servicePath.1`, `destinations[0].servicePath[1]`). Thrown
 * before anything is stored.
 */
import { isIPv6 } from 'node:net'
import { Compile } from 'typebox/compile'
import { reservedPorts, rules, RouteSchema, type Route } from '../../contracts/route.ts'
import { backendProblem } from '../../contracts/route-backend.ts'
import { ValidationFailedError } from '../errors.ts'
import { cidrProblem } from '../../shared/cidr.ts'
import { describeSchemaError, showValue, type RuleName } from './schema-errors.ts'

export { showValue }

export type PatternRule = { [K in RuleName]: (typeof rules)[K] extends { pattern: string } ? K : never }[RuleName]

export const patterns = Object.fromEntries(
  Object.entries(rules).flatMap(([name, rule]) => ('pattern' in rule ? [[name, new RegExp(rule.pattern)]] : [])),
) as Record<PatternRule, RegExp>

export const maxLengths: Partial<Record<RuleName, number>> = {
  serviceName: 63,
  servicePath: rules.servicePath.maxLength,
  serviceDomain: rules.serviceDomain.maxLength,
  stickyCookie: 64,
  endpoint: rules.endpoint.maxLength,
  aclName: 63,
  headerName: 64,
  userName: 64,
  secretName: 63,
}


export function fail(field: string, message: string): never {
  throw new ValidationFailedError(`${field}: ${message}`)
}

export function checkString(field: string, rule: PatternRule, value: string): string {
  const max = maxLengths[rule]
  if (max !== undefined && value.length > max) {
    const text = rules[rule].text
    fail(field, `is ${value.length} characters long; ${text}${text.includes(`at most ${max} characters`) ? '' : `, at most ${max} characters`}`)
  }
  if (!patterns[rule].test(value) || (rule === 'endpoint' && !bracketedIPv6Valid(value))) fail(field, `${showValue(value)} ${rules[rule].text}`)
  return value
}

/** Why `text` is not an address or CIDR block of ipAllow/ipDeny, or null (shared with the proxy's TETHER_TRUSTED_PROXIES). */
export { cidrProblem }

/** An endpoint's [bracketed] host, if any, is an IPv6 address ('[1:2:3]' fits the pattern but is not). */
function bracketedIPv6Valid(endpoint: string): boolean {
  if (!endpoint.startsWith('[')) return true
  const host = endpoint.slice(1, endpoint.lastIndexOf(']'))
  return isIPv6(host)
}

export function checkList(field: string, rule: PatternRule, values: readonly string[], maxItems: number): string[] {
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
  if (value === undefined) fail(field, `is required; it ${rules.port.text}`)
  // Only canonical decimal digits: no '0x50', '8e1', ' 80', '+80' or '8.0' (which Number() takes).
  const n = typeof value === 'number' ? value : /^[0-9]{1,5}$/.test(value) ? Number(value) : NaN
  if (!Number.isInteger(n) || n < 1 || n > 65535) fail(field, `${showValue(value)} ${rules.port.text}`)
  return n
}

/** A TCP route's listen port: a port, and not one the proxies hold for themselves by default. */
export function parseSrcPort(field: string, value: string | number | undefined): number {
  const n = parsePort(field, value)
  const own = reservedPorts.get(n)
  if (own !== undefined) fail(field, `${n} is ${own}; a TCP route needs a port of its own`)
  return n
}

/** A TLS server name (SNI), lower-cased. */
export function checkServerName(field: string, value: string): string {
  const name = value.toLowerCase().replace(/\.$/, '')
  if (name.length > rules.serverName.maxLength || !patterns.serverName.test(name)) fail(field, `${showValue(value)} ${rules.serverName.text}`)
  return name
}

/**
 * Within one route: one TCP destination per srcPort and one SNI destination per server name
 * (the field names are the form's own).
 */
export function checkStreamDestinations(tcp: ReadonlyArray<{ field: string; srcPort: number }>, sni: ReadonlyArray<{ field: string; serverName: readonly string[] }>): void {
  const ports = new Map<number, string>()
  for (const t of tcp) {
    const first = ports.get(t.srcPort)
    if (first !== undefined) fail(t.field, `${t.srcPort} is given twice in this route (also in ${first}); one TCP destination per listen port`)
    ports.set(t.srcPort, t.field)
  }
  const names = new Map<string, string>()
  for (const d of sni) {
    for (const n of d.serverName) {
      const first = names.get(n)
      if (first !== undefined && first !== d.field) fail(d.field, `${showValue(n)} is given twice in this route (also in ${first}); one SNI destination per server name`)
      names.set(n, d.field)
    }
  }
}

const checkRoute = Compile(RouteSchema)

/** Last line of defence: the built route must satisfy the contract every proxy relies on. */
export function finish(route: Route): Route {
  if (!checkRoute.Check(route)) {
    const first = [...checkRoute.Errors(route)][0]
    throw new ValidationFailedError(first === undefined ? 'route: invalid' : describeSchemaError(first, route))
  }
  const backend = backendProblem(route)
  if (backend !== null) fail(backend[0], backend[1])
  if (route.destinations.length === 0 && route.tcp === undefined && route.sni === undefined) {
    throw new ValidationFailedError('destinations: a route needs at least one destination: HTTP (servicePath + port), TCP (reqMode=tcp: srcPort + port) or SNI (reqMode=sni: serverName + port)')
  }
  if (route.destinations.length === 0) {
    // A route of TCP/SNI destinations only has no HTTP request to apply these to: refused, never
    // stored and silently ignored (denyHttp and httpsOnly would look like a restriction that is not there).
    const field = HTTP_ONLY_ROUTE_FIELDS.find((f) => route[f] !== undefined && route[f] !== false)
    if (field !== undefined) fail(field, 'applies to HTTP destinations (servicePath + port); this route has only tcp/sni destinations, which forward connections unchanged. Leave it out')
  }
  for (const key of ['ipAllow', 'ipDeny'] as const) {
    route[key]?.forEach((c, i) => {
      const problem = cidrProblem(c)
      if (problem !== null) fail(`${key}[${i}]`, `${showValue(c)} ${problem}`)
    })
    // Access by address applies to HTTP requests: TCP and SNI destinations of the route would stay open.
    if (route[key] !== undefined && (route.tcp !== undefined || route.sni !== undefined)) {
      fail(key, "applies to HTTP destinations only: this route's tcp/sni destinations would stay open to every address. Give them a route (service) of their own, or leave it out")
    }
  }
  if (route.compressionType !== undefined && route.compressionAlgo === undefined) fail('compressionType', 'needs compressionAlgo (the algorithms to compress these types with, e.g. gzip)')
  if (route.rateLimitBurst !== undefined) {
    if (route.rateLimit === undefined) fail('rateLimitBurst', 'needs rateLimit (the requests per second a client may send on average)')
    else if (route.rateLimitBurst < route.rateLimit || route.rateLimitBurst > route.rateLimit * 3600) fail('rateLimitBurst', `${route.rateLimitBurst} ${rules.rateLimitBurst.text} (${route.rateLimit})`)
  }
  if (route.healthCheckStatus !== undefined && route.healthCheckPath === undefined) fail('healthCheckStatus', 'needs healthCheckPath (the path whose answer is checked); without it a task is checked by a TCP connect')
  // What a pattern cannot say (the JSON form's endpoints were only matched against it).
  route.endpoints.forEach((e, i) => checkString(`endpoints[${i}]`, 'endpoint', e))
  return route
}

/** The request and response header rules: route fields, and parameters of the same names. */
export const HEADER_FIELDS = ['addReqHeader', 'setReqHeader', 'delReqHeader', 'addResHeader', 'setResHeader', 'delResHeader'] as const satisfies ReadonlyArray<keyof Route>

/** Route fields that act on HTTP requests only. */
const HTTP_ONLY_ROUTE_FIELDS = [
  'denyHttp',
  'httpsOnly',
  'redirectWhenHttpProto',
  'httpsRedirectCode',
  'hstsMaxAge',
  'hstsIncludeSubDomains',
  'hstsPreload',
  'auth',
  'stickyCookie',
  ...HEADER_FIELDS,
  'isDefaultBackend',
  'compressionAlgo',
  'compressionType',
  'ipAllow',
  'ipDeny',
  'healthCheckPath',
  'healthCheckStatus',
  'rateLimit',
  'rateLimitBurst',
  'rateLimitTotal',
  'bodyLimit',
] as const satisfies ReadonlyArray<keyof Route>
