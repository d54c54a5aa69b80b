import type { FastifyInstance, FastifyReply } from 'fastify'
import type { ChangeMeta } from '../../../contracts/change.ts'
import { rules, type Route } from '../../../contracts/route.ts'
import { describeShadowed, describeShadowedExtra, shadowingOf, tcpBindings, type ShadowedBinding, type ShadowedExtra } from '../../../contracts/route-planner.ts'
import type { ClaimMode } from '../../store/route-store.ts'
import type { Static } from 'typebox'
import type { ReconfigureAnswerSchema } from '../schemas.ts'
import { putExclusive } from '../../services/takeover.ts'
import { ConvergenceUnknownError, ListenerConflictError, RouteNotFoundError, ValidationFailedError } from '../../errors.ts'
import type { Convergence } from '../../services/fleet.ts'

type ConvergenceQuery = { wait?: 'converged' | 'healthy' | undefined; timeout?: string | undefined }

/** '30' or '30s' → 30 (the schemas' patterns already bounded it). */
export function seconds(value: string): number {
  return Number(value.endsWith('s') ? value.slice(0, -1) : value)
}

/** Default wait for `wait=converged` when no `timeout` is given. */
export const DEFAULT_CONVERGENCE_TIMEOUT = '30'

/** An AbortSignal that fires when the client goes away before the answer is sent. */
export function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController()
  const res = reply.raw
  const onClose = (): void => {
    if (!res.writableFinished) controller.abort()
  }
  res.once('close', onClose)
  return controller.signal
}

/**
 * With `wait=healthy` (and `serviceName`): as converged, then until every live proxy has a task of
 * the route passing its health check (504 naming those without one).
 * With `wait=converged`, waits until there is a live proxy and every live proxy applied `version`
 * (504 CONVERGENCE_TIMEOUT otherwise, naming the laggards or saying no proxy is live). With
 * `serviceName`: and serves that route (502 ROUTE_NOT_SERVED otherwise, naming the proxies and why).
 */
export async function convergeIfAsked(
  app: FastifyInstance,
  reply: FastifyReply,
  query: ConvergenceQuery,
  version: number,
  serviceName?: string,
): Promise<{ convergence?: Convergence }> {
  if (query.wait !== 'converged' && query.wait !== 'healthy') return {}
  const timeoutMs = seconds(query.timeout ?? DEFAULT_CONVERGENCE_TIMEOUT) * 1000
  try {
    // wait=healthy: only the writes of one route offer it (their schemas); anything else waits for convergence.
    if (query.wait === 'healthy' && serviceName !== undefined) return { convergence: await app.fleet.waitForHealthy(version, serviceName, timeoutMs, clientGone(reply)) }
    return { convergence: await app.fleet.waitForConvergence(version, timeoutMs, clientGone(reply), serviceName) }
  } catch (err) {
    // The write is stored: never let a store failure here answer "nothing was changed".
    if ((err as { code?: string }).code !== 'STORE_UNAVAILABLE') throw err
    throw new ConvergenceUnknownError(
      `The change is stored (version ${version}), but the proxies' status could not be read while waiting for convergence (the route store became unavailable); GET /v1/status shows it once the store is back.`,
    )
  }
}

/**
 * Stores a route and answers like every reconfigure: the stored route, version, changed (and
 * convergence when asked). Tether's own forms claim their paths exclusively (409
 * ROUTE_CONFLICT, or `takeover`); the Docker Flow Proxy form and labels share them, and the
 * answer's `warnings` say what is shadowed (see contracts/route-planner.ts).
 */
export async function putRoute(
  app: FastifyInstance,
  reply: FastifyReply,
  route: Route,
  meta: ChangeMeta,
  query: ConvergenceQuery & { takeover?: boolean | undefined; drain?: string | undefined },
  claim: ClaimMode = 'exclusive',
): Promise<Static<typeof ReconfigureAnswerSchema>> {
  await refuseProxyListeners(app, route)
  if (claim === 'exclusive') {
    const result = await putExclusive(app.store, route, meta, { takeover: query.takeover === true, drainSeconds: drainSecondsOf(query.drain) })
    const { takenOver } = result
    const warnings = await serviceWarnings(app, route)
    return {
      route: result.route,
      version: result.version,
      changed: result.changed,
      ...(takenOver === undefined ? {} : { takenOver }),
      ...(warnings.length === 0 ? {} : { warnings }),
      ...(await convergeIfAsked(app, reply, query, result.version, route.serviceName)),
    }
  }
  const result = await app.store.put(route, meta, { claim: 'shared' })
  const warnings = [...(await shadowingWarnings(app, route.serviceName)), ...(await serviceWarnings(app, route))]
  return { route: result.route, version: result.version, changed: result.changed, ...(warnings.length === 0 ? {} : { warnings }), ...(await convergeIfAsked(app, reply, query, result.version, route.serviceName)) }
}

/** `drain=<seconds>` (a trailing 's' allowed, as in timeout): 1-86400, or a 400 naming the field. */
function drainSecondsOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const digits = text.replace(/s$/, '')
  const seconds = Number(digits)
  if (!/^[1-9][0-9]{0,5}$/.test(digits) || seconds > 86_400) throw new ValidationFailedError(`drain: ${JSON.stringify(text)} ${rules.drain.text}. Nothing was stored`)
  return seconds
}

const LISTENER_NAMES = { http: 'HTTP listener (TETHER_PROXY_LISTEN)', https: 'HTTPS listener (TETHER_PROXY_LISTEN_TLS)', admin: 'admin listener (TETHER_ADMIN_LISTEN)' } as const

/**
 * 409 LISTENER_CONFLICT, before anything is stored, when a TCP route's srcPort is a port that live
 * proxies report as one of their own listeners: none of them could bind it. (Proxies that are not
 * live are not known; a clash with them shows at wait=converged as ROUTE_NOT_SERVED.)
 */
export async function refuseProxyListeners(app: FastifyInstance, route: Route): Promise<void> {
  const ports = tcpBindings(route).map((b) => b.srcPort)
  if (ports.length === 0) return
  const clash = (await app.fleet.listenerClashes(ports))[0]
  if (clash === undefined) return
  const who = clash.proxies.length > 3 ? `${clash.proxies.slice(0, 3).join(', ')} and ${clash.proxies.length - 3} more` : clash.proxies.join(', ')
  throw new ListenerConflictError(
    `srcPort: TCP port ${clash.port} is the ${LISTENER_NAMES[clash.kind]} of live prox${clash.proxies.length === 1 ? 'y' : 'ies'} ${who}; a TCP route cannot use a port the proxies listen on themselves. Nothing was stored; use another srcPort.`,
  )
}

/**
 * With Swarm discovery on, a warning when Docker says nobody can serve the route's service (no
 * such service, or no running task). Routes with fixed `endpoints` do not use tasks: none.
 */
async function serviceWarnings(app: FastifyInstance, route: Route): Promise<string[]> {
  if (route.endpoints.length > 0 || app.discovery?.serviceWarning === undefined) return []
  const warning = await app.discovery.serviceWarning(route.serviceName)
  return warning === null ? [] : [warning]
}

/** A shadowed binding as answers show it: the fields and the sentence. */
export function shadowedReport(s: ShadowedBinding) {
  return { serviceName: s.serviceName, host: s.host, path: s.path, port: s.port, shadowedBy: s.shadowedBy, message: describeShadowed(s) }
}

/** A lost redirect or default backend as answers show it. */
export function shadowedExtraReport(s: ShadowedExtra) {
  return { serviceName: s.serviceName, what: s.what, shadowedBy: s.shadowedBy, message: describeShadowedExtra(s) }
}

/** One sentence per binding of `serviceName` that another route shadows, and per binding it shadows. */
export async function shadowingWarnings(app: FastifyInstance, serviceName: string): Promise<string[]> {
  let plan
  try {
    plan = await app.feed.plan()
  } catch {
    // Called after a stored write: the answer must still say it was stored.
    return ['the route store could not be read after this write, so whether a path of this route shares a path with another was not checked (GET /v1/status shows it)']
  }
  const { shadowed, shadows, shadowedExtras, shadowsExtras } = shadowingOf(plan, serviceName)
  return [...[...shadowed, ...shadows].map(describeShadowed), ...[...shadowedExtras, ...shadowsExtras].map(describeShadowedExtra)]
}

/** An answer with the parse's warnings first (what the request asked for and does not get). */
export function withWarnings<T extends { warnings?: string[] | undefined }>(answer: T, warnings: readonly string[]): T {
  const all = [...warnings, ...(answer.warnings ?? [])]
  return all.length > 0 ? { ...answer, warnings: all } : answer
}

/** Removes a service's route and answers like every remove; 404 ROUTE_NOT_FOUND when there is none. */
export async function removeRoute(app: FastifyInstance, reply: FastifyReply, serviceName: string, meta: ChangeMeta, query: ConvergenceQuery) {
  const result = await app.store.remove(serviceName, meta)
  if (result === null) throw new RouteNotFoundError(serviceName)
  return { version: result.version, removed: result.removed, ...(await convergeIfAsked(app, reply, query, result.version)) }
}
