/**
 * Pure: Swarm services and their Docker Flow Swarm Listener labels → Tether routes. Existing
 * stacks work unchanged. Read here:
 *
 *   com.df.notify=true                 the service is routed (anything else: ignored)
 *   com.df.servicePath=/a,/b           path prefixes (comma-separated) of the first destination
 *   com.df.port=8080                   its port
 *   com.df.servicePath.N / .port.N     further destinations (N = 1, 2, ...); a missing
 *                                      com.df.port.N falls back to com.df.port
 *   com.df.serviceDomain=a.io,b.io     host names the route answers to
 *   com.df.sessionType=sticky-server   sticky (Docker Flow Proxy's spelling)
 *   com.df.sticky=true                 sticky (Tether's shorthand)
 *   com.df.stickyCookie=NAME           the affinity cookie's name
 *   com.df.aclName=NAME                Docker Flow Proxy's order among routes sharing a path
 *
 * Other com.df.* labels (Docker Flow Proxy's many rendering options) are ignored. A service
 * whose labels cannot become a valid route yields a problem instead of a route, with the
 * label, its value and the same rule sentence the API shows; it never throws.
 */
import { Compile } from 'typebox/compile'
import { limits, normalizeRoute, rules, RouteSchema, type Route } from '../../contracts/route.ts'
import { showValue } from '../route-input.ts'
import type { SwarmService } from './swarm-client.ts'

export interface DiscoveryProblem {
  serviceName: string
  message: string
}

export interface LabelMapping {
  /** Sorted by serviceName, normalised. */
  routes: Route[]
  problems: DiscoveryProblem[]
}

const PREFIX = 'com.df.'
const routeCheck = Compile(RouteSchema)
const patterns = {
  serviceName: new RegExp(rules.serviceName.pattern),
  servicePath: new RegExp(rules.servicePath.pattern),
  serviceDomain: new RegExp(rules.serviceDomain.pattern),
  stickyCookie: new RegExp(rules.stickyCookie.pattern),
  aclName: new RegExp(rules.aclName.pattern),
}

/** True when the service asks to be routed (com.df.notify=true). */
export function isNotified(service: Pick<SwarmService, 'labels'>): boolean {
  return service.labels[`${PREFIX}notify`]?.trim().toLowerCase() === 'true'
}

export function routesFromServices(services: readonly SwarmService[]): LabelMapping {
  const routes: Route[] = []
  const problems: DiscoveryProblem[] = []
  for (const service of services) {
    if (!isNotified(service)) continue
    const result = routeFromLabels(service.name, service.labels)
    if ('route' in result) routes.push(result.route)
    else problems.push(...result.problems.map((message) => ({ serviceName: service.name, message })))
  }
  routes.sort((a, b) => (a.serviceName < b.serviceName ? -1 : a.serviceName > b.serviceName ? 1 : 0))
  problems.sort((a, b) => (a.serviceName < b.serviceName ? -1 : a.serviceName > b.serviceName ? 1 : 0))
  return { routes, problems }
}

// Values are shown the way the API shows them (route-input.ts), so a label problem reads like
// the 400 the same value would get from PUT /v1/reconfigure, with the label as the field.
const shown = showValue
const tooLong = (label: string, value: string, rule: { text: string }, max: number): string => `${label}: is ${value.length} characters long; ${rule.text}, at most ${max} characters`

/** One service's labels → its route, or every reason it cannot have one. */
export function routeFromLabels(serviceName: string, labels: Readonly<Record<string, string>>): { route: Route } | { problems: string[] } {
  const problems: string[] = []
  const label = (name: string): string | undefined => labels[PREFIX + name]

  if (!patterns.serviceName.test(serviceName) || serviceName.length > 63) {
    problems.push(`service name ${shown(serviceName)} ${rules.serviceName.text}`)
  }

  // Destination indexes: '' (unindexed) first, then 1, 2, ... in numeric order.
  const indexes = new Set<string>()
  if (label('servicePath') !== undefined) indexes.add('')
  for (const key of Object.keys(labels)) {
    const m = /^com\.df\.(servicePath|port)\.([0-9]+)$/.exec(key)
    if (m?.[2] !== undefined) indexes.add(m[2])
  }
  const ordered = [...indexes].sort((a, b) => (a === '' ? -1 : b === '' ? 1 : Number(a) - Number(b)))

  const destinations: Array<{ servicePath: string[]; port: number }> = []
  for (const index of ordered) {
    const suffix = index === '' ? '' : `.${index}`
    const pathLabel = `${PREFIX}servicePath${suffix}`
    const rawPath = labels[pathLabel]
    const rawPort = labels[`${PREFIX}port${suffix}`] ?? (index === '' ? undefined : label('port'))
    const portLabel = labels[`${PREFIX}port${suffix}`] !== undefined ? `${PREFIX}port${suffix}` : `${PREFIX}port`
    if (rawPath === undefined) {
      problems.push(`${PREFIX}port${suffix} is set but ${pathLabel} is missing`)
      continue
    }
    const paths = rawPath.split(',').map((p) => p.trim())
    for (const path of paths) {
      if (path.length > rules.servicePath.maxLength) problems.push(tooLong(pathLabel, path, rules.servicePath, rules.servicePath.maxLength))
      else if (!patterns.servicePath.test(path)) problems.push(`${pathLabel}: ${shown(path)} ${rules.servicePath.text}`)
    }
    if (paths.length > limits.maxPaths) problems.push(`${pathLabel}: at most ${limits.maxPaths} paths`)
    if (rawPort === undefined) {
      problems.push(`${pathLabel} is set but ${PREFIX}port${suffix} is missing`)
      continue
    }
    const port = /^[0-9]{1,5}$/.test(rawPort.trim()) ? Number(rawPort.trim()) : Number.NaN
    if (!(port >= 1 && port <= 65535)) {
      problems.push(`${portLabel}: ${shown(rawPort)} ${rules.port.text}`)
      continue
    }
    destinations.push({ servicePath: paths, port })
  }
  if (ordered.length === 0) problems.push(`${PREFIX}notify is true but ${PREFIX}servicePath is missing`)
  if (ordered.length > limits.maxDestinations) problems.push(`at most ${limits.maxDestinations} destinations (${PREFIX}servicePath.N)`)

  const rawDomains = label('serviceDomain')
  const domains = rawDomains === undefined || rawDomains.trim() === '' ? [] : rawDomains.split(',').map((d) => d.trim())
  for (const domain of domains) {
    if (domain.length > rules.serviceDomain.maxLength) problems.push(tooLong(`${PREFIX}serviceDomain`, domain, rules.serviceDomain, rules.serviceDomain.maxLength))
    else if (!patterns.serviceDomain.test(domain)) problems.push(`${PREFIX}serviceDomain: ${shown(domain)} ${rules.serviceDomain.text}`)
  }
  if (domains.length > limits.maxDomains) problems.push(`${PREFIX}serviceDomain: at most ${limits.maxDomains} domains`)

  const sessionType = label('sessionType')?.trim()
  if (sessionType !== undefined && sessionType !== '' && sessionType !== 'sticky-server') {
    problems.push(`${PREFIX}sessionType: ${shown(sessionType)} must be "sticky-server" (the only session type Docker Flow Proxy knows)`)
  }
  const stickyLabel = label('sticky')?.trim().toLowerCase()
  if (stickyLabel !== undefined && stickyLabel !== 'true' && stickyLabel !== 'false') {
    problems.push(`${PREFIX}sticky: ${shown(stickyLabel)} must be "true" or "false"`)
  }
  const stickyCookie = label('stickyCookie')?.trim()
  if (stickyCookie !== undefined && !patterns.stickyCookie.test(stickyCookie)) {
    problems.push(`${PREFIX}stickyCookie: ${shown(stickyCookie)} ${rules.stickyCookie.text}`)
  }

  const aclName = label('aclName')?.trim()
  if (aclName !== undefined && (!patterns.aclName.test(aclName) || aclName.length > 63)) {
    problems.push(`${PREFIX}aclName: ${shown(aclName)} ${rules.aclName.text}`)
  }

  if (problems.length > 0) return { problems }
  const route = normalizeRoute({
    serviceName,
    destinations,
    serviceDomain: domains,
    sticky: sessionType === 'sticky-server' || stickyLabel === 'true',
    stickyCookie,
    aclName,
  })
  // Backstop: the schema the API validates against has the last word.
  if (!routeCheck.Check(route)) {
    const first = [...routeCheck.Errors(route)][0]
    return { problems: [`labels give an invalid route: ${first?.instancePath ?? ''} ${first?.message ?? 'does not match the route schema'}`.trim()] }
  }
  return { route }
}
