/** GET /healthz (the process answers), GET /readyz (the store answers), GET /metrics. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errors, HealthAnswerSchema } from './schemas.ts'

const health: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/healthz',
    { schema: { tags: ['health'], operationId: 'getHealth', summary: 'Liveness: the process answers', response: { 200: HealthAnswerSchema } } },
    async () => ({ status: 'ok' }),
  )

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        operationId: 'getReadiness',
        summary: 'Readiness: the route store is reachable',
        response: { 200: HealthAnswerSchema, 503: errors[503] },
      },
    },
    async () => {
      await app.store.ping()
      return { status: 'ready' }
    },
  )

  app.get(
    '/metrics',
    {
      schema: {
        tags: ['health'],
        operationId: 'getMetrics',
        summary: 'Prometheus metrics',
        description: 'Requests, routes, config version, long-poll waiters, live proxies, store errors.',
        produces: ['text/plain'],
        response: { 200: { description: 'Prometheus text exposition format', type: 'string' } },
      },
    },
    async (_request, reply) => {
      const text = await app.metrics.registry.metrics()
      return reply.type(app.metrics.registry.contentType).send(text)
    },
  )
}

export default health
