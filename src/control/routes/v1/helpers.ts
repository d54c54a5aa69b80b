import type { FastifyInstance, FastifyReply } from 'fastify'
import type { ChangeMeta } from '../../../contracts/change.ts'
import type { Route } from '../../../contracts/route.ts'
import { describeShadowed, shadowingOf, type ShadowedBinding } from '../../../contracts/route-planner.ts'
import type { ClaimMode } from '../../store/route-store.ts'
import type { Static } from 'typebox'
import type { ReconfigureAnswerSchema } from '../schemas.ts'
import { putExclusive } from '../../services/takeover.ts'
import { RouteNotFoundError } from '../../errors.ts'
import type { Convergence } from '../../services/fleet.ts'

type ConvergenceQuery = { wait?: 'converged' | undefined; timeout?: string | undefined }

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

/** With `wait=converged`, waits until every live proxy applied `version` (504 otherwise). */
export async function convergeIfAsked(
  app: FastifyInstance,
  reply: FastifyReply,
  query: ConvergenceQuery,
  version: number,
): Promise<{ convergence?: Convergence }> {
  if (query.wait !== 'converged') return {}
  const timeoutMs = seconds(query.timeout ?? DEFAULT_CONVERGENCE_TIMEOUT) * 1000
  return { convergence: await app.fleet.waitForConvergence(version, timeoutMs, clientGone(reply)) }
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
  query: ConvergenceQuery & { takeover?: boolean | undefined },
  claim: ClaimMode = 'exclusive',
): Promise<Static<typeof ReconfigureAnswerSchema>> {
  if (claim === 'exclusive') {
    const result = await putExclusive(app.store, route, meta, query.takeover === true)
    const { takenOver } = result
    return { route: result.route, version: result.version, changed: result.changed, ...(takenOver === undefined ? {} : { takenOver }), ...(await convergeIfAsked(app, reply, query, result.version)) }
  }
  const result = await app.store.put(route, meta, { claim: 'shared' })
  const warnings = await shadowingWarnings(app, route.serviceName)
  return { route: result.route, version: result.version, changed: result.changed, ...(warnings.length === 0 ? {} : { warnings }), ...(await convergeIfAsked(app, reply, query, result.version)) }
}

/** A shadowed binding as answers show it: the fields and the sentence. */
export function shadowedReport(s: ShadowedBinding) {
  return { serviceName: s.serviceName, host: s.host, path: s.path, port: s.port, shadowedBy: s.shadowedBy, message: describeShadowed(s) }
}

/** One sentence per binding of `serviceName` that another route shadows, and per binding it shadows. */
export async function shadowingWarnings(app: FastifyInstance, serviceName: string): Promise<string[]> {
  const { shadowed, shadows } = shadowingOf(await app.feed.plan(), serviceName)
  return [...shadowed, ...shadows].map(describeShadowed)
}

/** Removes a service's route and answers like every remove; 404 ROUTE_NOT_FOUND when there is none. */
export async function removeRoute(app: FastifyInstance, reply: FastifyReply, serviceName: string, meta: ChangeMeta, query: ConvergenceQuery) {
  const result = await app.store.remove(serviceName, meta)
  if (result === null) throw new RouteNotFoundError(serviceName)
  return { version: result.version, removed: result.removed, ...(await convergeIfAsked(app, reply, query, result.version)) }
}
