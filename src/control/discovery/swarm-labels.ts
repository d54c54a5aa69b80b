/**
 * Pure: Swarm services and their Docker Flow Swarm Listener labels → Tether routes. Existing
 * stacks work unchanged: a service with `com.df.notify=true` is routed, and every other
 * `com.df.X` label is the Docker Flow Proxy parameter X (`servicePath`, `port`, the indexed
 * `servicePath.N`/`port.N`, `serviceDomain`, `sessionType=sticky-server`, `aclName`, ... —
 * see input/dfp-form.ts), read by the same parser as /v1/docker-flow-proxy/reconfigure.
 *
 * A service whose labels cannot become a valid route yields a problem instead of a route, with
 * the label, its value and the same rule sentence the API shows; it never throws.
 */
import type { Route } from '../../contracts/route.ts'
import { NothingToRouteError, NotImplementedError, ValidationFailedError } from '../errors.ts'
import { routeFromDfpQuery } from '../input/dfp-form.ts'
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

/**
 * One service's labels → its route, or why it cannot have one. The labels are read exactly as
 * Docker Flow Swarm Listener forwards them to Docker Flow Proxy — `com.df.X=V` becomes the
 * parameter `X=V` of the Docker Flow Proxy form — and judged by that form's parser, so a label
 * and the same DFP request get the same route, or the same 400 sentence (with the label as the
 * field).
 */
export function routeFromLabels(serviceName: string, labels: Readonly<Record<string, string>>): { route: Route; warnings: string[] } | { problems: string[] } {
  const params: Record<string, string> = Object.create(null) as Record<string, string>
  for (const [key, value] of Object.entries(labels)) if (key.startsWith(PREFIX)) params[key.slice(PREFIX.length)] = value
  params.serviceName = serviceName
  try {
    return routeFromDfpQuery(params)
  } catch (err) {
    // Only monitoring labels (no path, no domain): nothing to route, and nothing wrong.
    if (err instanceof NothingToRouteError) return { problems: [] }
    if (!(err instanceof ValidationFailedError) && !(err instanceof NotImplementedError)) throw err
    const message = err.message
    return { problems: [message.startsWith('serviceName:') ? `service name${message.slice('serviceName:'.length)}` : `${PREFIX}${message}`] }
  }
}
