import type { FastifyInstance, FastifyReply } from 'fastify'
import type { Convergence } from '../../plugins/fleet.ts'

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
  query: { wait?: 'converged' | undefined; timeout?: string | undefined },
  version: number,
): Promise<{ convergence?: Convergence }> {
  if (query.wait !== 'converged') return {}
  const timeoutMs = seconds(query.timeout ?? DEFAULT_CONVERGENCE_TIMEOUT) * 1000
  return { convergence: await app.fleet.waitForConvergence(version, timeoutMs, clientGone(reply)) }
}
