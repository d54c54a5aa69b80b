import type { FastifyInstance, FastifyReply } from 'fastify'
import type { ChangeMeta } from '../../../contracts/change.ts'
import type { Route } from '../../../contracts/route.ts'
import { RouteNotFoundError } from '../../errors.ts'
import type { Convergence } from '../../plugins/fleet.ts'

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

/** Stores a route and answers like every reconfigure: the stored route, version, changed (and convergence when asked). */
export async function putRoute(app: FastifyInstance, reply: FastifyReply, route: Route, meta: ChangeMeta, query: ConvergenceQuery) {
  const result = await app.store.put(route, meta)
  return { route: result.route, version: result.version, changed: result.changed, ...(await convergeIfAsked(app, reply, query, result.version)) }
}

/** Removes a service's route and answers like every remove; 404 ROUTE_NOT_FOUND when there is none. */
export async function removeRoute(app: FastifyInstance, reply: FastifyReply, serviceName: string, meta: ChangeMeta, query: ConvergenceQuery) {
  const result = await app.store.remove(serviceName, meta)
  if (result === null) throw new RouteNotFoundError(serviceName)
  return { version: result.version, removed: result.removed, ...(await convergeIfAsked(app, reply, query, result.version)) }
}
