/**
 * Resource style: GET /v1/routes, GET|PUT|DELETE /v1/routes/{serviceName}. Reading needs no
 * token (see the OpenAPI description for why); PUT and DELETE need an API token.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { RouteNotFoundError } from '../../errors.ts'
import { routeFromBody } from '../../input/tether-forms.ts'
import { bearer, errors, ReconfigureAnswerSchema, ref, RemoveAnswerSchema, RouteBodySchema, RouteRecordSchema, RoutesAnswerSchema, ServiceNameParamsSchema, WaitQuerySchema, WriteQuerySchema } from '../schemas.ts'
import { putRoute, removeRoute, shadowedExtraReport, shadowedReport, withWarnings } from './helpers.ts'
import { shadowingOf } from '../../../contracts/route-planner.ts'

const notFound = { ...errors[404], description: 'No route for that service (ROUTE_NOT_FOUND).' }

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/routes',
    {
      schema: {
        tags: ['routes'],
        operationId: 'listRoutes',
        summary: 'Every route, sorted by service name, with who changed it last',
        response: { 200: RoutesAnswerSchema, 503: errors[503] },
      },
    },
    async () => {
      const [version, records] = await Promise.all([app.store.version(), app.store.list()])
      return { version, routes: records }
    },
  )

  app.get(
    '/routes/:serviceName',
    {
      schema: {
        tags: ['routes'],
        operationId: 'getRoute',
        summary: 'The route of one service',
        params: ServiceNameParamsSchema,
        response: { 200: ref(RouteRecordSchema), 400: errors[400], 404: notFound, 503: errors[503] },
      },
    },
    async (request) => {
      const record = await app.store.get(request.params.serviceName)
      if (record === null) throw new RouteNotFoundError(request.params.serviceName)
      const tasks = app.discovery?.inventory.tasksOf(record.route.serviceName) ?? null
      const { shadowed, shadows, shadowedExtras, shadowsExtras } = shadowingOf(await app.feed.plan(), record.route.serviceName)
      const report = [...shadowed, ...shadows].map(shadowedReport)
      const extras = [...shadowedExtras, ...shadowsExtras].map(shadowedExtraReport)
      return { ...record, ...(tasks === null ? {} : { tasks }), ...(report.length === 0 ? {} : { shadowed: report }), ...(extras.length === 0 ? {} : { shadowedExtras: extras }) }
    },
  )

  app.put(
    '/routes/:serviceName',
    {
      config: { auth: 'api' },
      schema: {
        tags: ['routes'],
        operationId: 'putRoute',
        summary: 'Create or replace the route of one service',
        description: 'Idempotent: the same body twice answers `changed: false` and leaves the version alone.',
        security: bearer,
        params: ServiceNameParamsSchema,
        querystring: WriteQuerySchema,
        body: ref(RouteBodySchema),
        response: { 200: ref(ReconfigureAnswerSchema), 400: errors[400], 401: errors[401], 409: errors[409], 413: errors[413], 502: errors[502], 503: errors[503], 504: errors[504] },
      },
    },
    async (request, reply) => {
      const { route, warnings } = routeFromBody(request.body, request.params.serviceName)
      return withWarnings(await putRoute(app, reply, route, { actor: request.actor, source: 'api' }, request.query), warnings)
    },
  )

  app.delete(
    '/routes/:serviceName',
    {
      config: { auth: 'api' },
      schema: {
        tags: ['routes'],
        operationId: 'deleteRoute',
        summary: 'Remove the route of one service',
        security: bearer,
        params: ServiceNameParamsSchema,
        querystring: WaitQuerySchema,
        response: { 200: ref(RemoveAnswerSchema), 400: errors[400], 401: errors[401], 404: notFound, 503: errors[503], 504: errors[504] },
      },
    },
    async (request, reply) => {
      return removeRoute(app, reply, request.params.serviceName, { actor: request.actor, source: 'api' }, request.query)
    },
  )
}

export default routes
