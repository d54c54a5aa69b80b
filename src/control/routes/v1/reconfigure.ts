/**
 * Tether's own CI-facing endpoints:
 *   GET|PUT /v1/reconfigure?serviceName=&servicePath=&port=...   (one curl line)
 *   POST    /v1/reconfigure                                      (the same fields as JSON)
 *   GET|DELETE /v1/remove?serviceName=
 * Unknown parameters are refused (400 UNKNOWN_PARAMETER); the DFP-compatible endpoints are
 * the lenient ones.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { routeFromBody, routeFromQuery } from '../../input/tether-forms.ts'
import { bearer, errors, ReconfigureAnswerSchema, ReconfigureBodySchema, ReconfigureQuerySchema, ref, RemoveAnswerSchema, RemoveQuerySchema, WriteQuerySchema } from '../schemas.ts'
import { putRoute, removeRoute, withWarnings } from './helpers.ts'

const reconfigureResponses = { 200: ref(ReconfigureAnswerSchema), 400: errors[400], 401: errors[401], 409: errors[409], 502: errors[502], 503: errors[503], 504: errors[504] }

const reconfigure: FastifyPluginAsyncTypebox = async (app) => {
  for (const method of ['GET', 'PUT'] as const) {
    app.route({
      method,
      url: '/reconfigure',
      config: { auth: 'api' },
      schema: {
        tags: ['routes'],
        operationId: `${method.toLowerCase()}Reconfigure`,
        summary: 'Create or replace the route of a service (query-string form)',
        description:
          'Stores the route and answers with it and the config version. The same request twice answers `changed: false` and leaves the version alone, so CI reruns are free. ' +
          (method === 'GET' ? 'GET is accepted because Docker Flow Proxy pipelines use it; prefer PUT.' : ''),
        security: bearer,
        querystring: ReconfigureQuerySchema,
        response: reconfigureResponses,
      },
      handler: async (request, reply) => {
        const { route, warnings } = routeFromQuery(request.query)
        return withWarnings(await putRoute(app, reply, route, { actor: request.actor, source: 'api' }, request.query), warnings)
      },
    })
  }

  app.post(
    '/reconfigure',
    {
      config: { auth: 'api' },
      schema: {
        tags: ['routes'],
        operationId: 'postReconfigure',
        summary: 'Create or replace the route of a service (JSON form)',
        description: "The same fields as the query-string form, as JSON; lists are arrays. Several path/port destinations go in 'destinations'.",
        security: bearer,
        querystring: WriteQuerySchema,
        body: ref(ReconfigureBodySchema),
        response: { ...reconfigureResponses, 413: errors[413] },
      },
    },
    async (request, reply) => {
      const { route, warnings } = routeFromBody(request.body)
      return withWarnings(await putRoute(app, reply, route, { actor: request.actor, source: 'api' }, request.query), warnings)
    },
  )

  for (const method of ['GET', 'DELETE'] as const) {
    app.route({
      method,
      url: '/remove',
      config: { auth: 'api' },
      schema: {
        tags: ['routes'],
        operationId: `${method.toLowerCase()}Remove`,
        summary: 'Remove the route of a service',
        description: method === 'GET' ? 'GET is accepted because Docker Flow Proxy pipelines use it; prefer DELETE.' : undefined,
        security: bearer,
        querystring: RemoveQuerySchema,
        response: { 200: ref(RemoveAnswerSchema), 400: errors[400], 401: errors[401], 404: { ...errors[404], description: 'No route for that service (ROUTE_NOT_FOUND).' }, 503: errors[503], 504: errors[504] },
      },
      handler: async (request, reply) => {
        return removeRoute(app, reply, request.query.serviceName, { actor: request.actor, source: 'api' }, request.query)
      },
    })
  }
}

export default reconfigure
