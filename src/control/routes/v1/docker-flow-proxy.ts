/**
 * Docker Flow Proxy's endpoints, so existing pipelines keep working unchanged:
 *   GET|PUT /v1/docker-flow-proxy/reconfigure?serviceName=&servicePath=&port=&sessionType=sticky-server
 *   GET|DELETE /v1/docker-flow-proxy/remove?serviceName=
 * Lenient where DFP was: parameters Tether does not implement are accepted, listed in the
 * answer's `warnings` and logged, never silently dropped. Paths are shared as in DFP (no 409:
 * Docker Flow Swarm Listener counts a 409 as success): both routes are stored, `aclName` order
 * decides, and `warnings` says which route is shadowed. Values are judged as strictly as
 * everywhere else.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { ServiceNameSchema } from '../../../contracts/route.ts'
import { routeFromDfpQuery, serviceNameFromDfpRemove } from '../../input/dfp-form.ts'
import { bearer, errors, ReconfigureAnswerSchema, ref, RemoveAnswerSchema, waitProperties } from '../schemas.ts'
import { putRoute, removeRoute } from './helpers.ts'

const text = (description: string, examples?: string[]) => Type.Optional(Type.String({ maxLength: 8192, description, ...(examples === undefined ? {} : { examples }) }))

export const DfpReconfigureQuerySchema = Type.Object(
  {
    serviceName: ServiceNameSchema,
    servicePath: text('Comma-separated path prefixes of the first destination.', ['/demo']),
    port: text('Port of the first destination.', ['8080']),
    serviceDomain: text('Comma-separated host names.'),
    sessionType: text("'sticky-server': pin each client to one task (Tether uses an opaque cookie)."),
    distribute: text('Accepted; every Tether proxy replica always receives every change.'),
    replicas: text('Accepted; meaningless in Tether.'),
    sticky: text('Tether extension: true or false.'),
    stickyCookie: text('Tether extension: affinity cookie name.'),
    endpoints: text('Tether extension: comma-separated host:port backends.'),
    aclName: text("Order among routes sharing a path (Docker Flow Proxy's rule): the first aclName, default the service name, serves it; the others are reported in 'warnings'.", ['00-go-demo']),
    ...waitProperties,
  },
  {
    additionalProperties: Type.String({ maxLength: 8192 }),
    description:
      "Also accepted: the indexed forms servicePath.N and port.N (N ≥ 1; one extra destination each). Any other Docker Flow Proxy parameter is accepted and reported in 'warnings'.",
  },
)

export const DfpRemoveQuerySchema = Type.Object(
  { serviceName: ServiceNameSchema, distribute: text('Accepted; every Tether proxy replica always receives every change.'), ...waitProperties },
  { additionalProperties: Type.String({ maxLength: 8192 }) },
)

const dfp: FastifyPluginAsyncTypebox = async (app) => {
  for (const method of ['GET', 'PUT'] as const) {
    app.route({
      method,
      url: '/docker-flow-proxy/reconfigure',
      config: { auth: 'api' },
      schema: {
        tags: ['docker-flow-proxy'],
        operationId: `${method.toLowerCase()}DockerFlowProxyReconfigure`,
        summary: "Create or replace a route with Docker Flow Proxy's parameters",
        security: bearer,
        querystring: DfpReconfigureQuerySchema,
        response: { 200: ref(ReconfigureAnswerSchema), 400: errors[400], 401: errors[401], 503: errors[503], 504: errors[504] },
      },
      handler: async (request, reply) => {
        const query = request.query as Record<string, string | undefined>
        const { route, warnings } = routeFromDfpQuery(query)
        if (warnings.length > 0) request.log.warn({ serviceName: route.serviceName, warnings }, 'Docker Flow Proxy parameters ignored')
        const answer = await putRoute(app, reply, route, { actor: request.actor, source: 'dfp' }, request.query, 'shared')
        const all = [...warnings, ...(answer.warnings ?? [])]
        return all.length > 0 ? { ...answer, warnings: all } : answer
      },
    })
  }

  for (const method of ['GET', 'DELETE'] as const) {
    app.route({
      method,
      url: '/docker-flow-proxy/remove',
      config: { auth: 'api' },
      schema: {
        tags: ['docker-flow-proxy'],
        operationId: `${method.toLowerCase()}DockerFlowProxyRemove`,
        summary: "Remove a route with Docker Flow Proxy's parameters",
        security: bearer,
        querystring: DfpRemoveQuerySchema,
        response: { 200: ref(RemoveAnswerSchema), 400: errors[400], 401: errors[401], 404: { ...errors[404], description: 'No route for that service (ROUTE_NOT_FOUND).' }, 503: errors[503], 504: errors[504] },
      },
      handler: async (request, reply) => {
        const { serviceName, warnings } = serviceNameFromDfpRemove(request.query as Record<string, string | undefined>)
        if (warnings.length > 0) request.log.warn({ serviceName, warnings }, 'Docker Flow Proxy parameters ignored')
        const answer = await removeRoute(app, reply, serviceName, { actor: request.actor, source: 'dfp' }, request.query)
        return warnings.length > 0 ? { ...answer, warnings } : answer
      },
    })
  }
}

export default dfp
