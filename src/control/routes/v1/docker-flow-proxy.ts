/**
 * Docker Flow Proxy's endpoints, so existing pipelines and Docker Flow Swarm Listener keep
 * working unchanged:
 *   GET|PUT|POST /v1/docker-flow-proxy/reconfigure?serviceName=&servicePath=&port=&...
 *   GET|DELETE|PUT|POST /v1/docker-flow-proxy/remove?serviceName=
 *   GET /v1/docker-flow-proxy/config   the routing table every proxy renders (JSON)
 *   GET /v1/docker-flow-proxy/reload   200: proxies reload themselves on every change
 * (DFSL's method is configurable — DF_NOTIFY_CREATE_SERVICE_METHOD / _REMOVE_ — and it sends
 * no body.) DFSL counts a create as done on 200 or 409 and a remove only on 200, so: a create
 * with nothing to route answers 409 NOTHING_TO_ROUTE (as DFP does), and removing a service
 * Tether has no route for answers 200 with `removed: false`.
 * Parameters: see input/dfp-form.ts (implemented, bookkeeping, warned, refused). Paths are
 * shared as in DFP: both routes are stored, `aclName` order decides, and `warnings` says which
 * route is shadowed. Values are judged as strictly as everywhere else.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { RouteSchema, ServiceNameSchema } from '../../../contracts/route.ts'
import { routeFromDfpQuery, serviceNameFromDfpRemove } from '../../input/dfp-form.ts'
import { RouteNotFoundError } from '../../errors.ts'
import { bearer, errors, ReconfigureAnswerSchema, ref, RemoveAnswerSchema, routeWaitProperties, waitProperties } from '../schemas.ts'
import { ConfigSnapshotSchema } from '../../../contracts/config-snapshot.ts'
import { putRoute, removeRoute, withWarnings } from './helpers.ts'

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
    ...routeWaitProperties,
  },
  {
    additionalProperties: Type.String({ maxLength: 8192 }),
    description:
      "Every Docker Flow Proxy parameter (the README's migration table says which are implemented): the indexed forms name.N (N ≥ 1, one extra destination each); " +
      "addReqHeader, setReqHeader, delReqHeader, addResHeader, setResHeader, delResHeader; users (+ usersPassEncrypted; Tether extension: realm); reqPathSearchReplace, reqPathSearch + reqPathReplace " +
      "(Tether extension: stripPrefix); allowedMethods, deniedMethods, servicePathExclude, redirectFromDomain, isDefaultBackend, timeoutServer, timeoutTunnel, userAgent, serviceHeader, compressionAlgo, compressionType (Tether extensions: ipAllow, ipDeny; healthCheckPath, healthCheckInterval, healthCheckStatus, healthCheckSlowStart). " +
      "Bookkeeping (notify, distribute, replicas, alert*, ...) is accepted silently; tuning parameters Tether lacks are reported in 'warnings'; a parameter that restricts access and is not implemented is refused (400 NOT_IMPLEMENTED).",
  },
)

/** What a Docker Flow Proxy remove answers: the removed route, or false when there was none (still 200, as DFP). */
export const DfpRemoveAnswerSchema = Type.Object(
  {
    version: Type.Integer(),
    removed: Type.Union([ref(RouteSchema), Type.Literal(false)], { description: 'The route removed, or false: Tether had no route for that service (nothing changed).' }),
    warnings: Type.Optional(Type.Array(Type.String())),
    convergence: RemoveAnswerSchema.properties.convergence,
  },
  { additionalProperties: false },
)

export const DfpRemoveQuerySchema = Type.Object(
  { serviceName: ServiceNameSchema, distribute: text('Accepted; every Tether proxy replica always receives every change.'), ...waitProperties },
  { additionalProperties: Type.String({ maxLength: 8192 }) },
)

const dfp: FastifyPluginAsyncTypebox = async (app) => {
  for (const method of ['GET', 'PUT', 'POST'] as const) {
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
        response: {
          200: ref(ReconfigureAnswerSchema),
          400: { ...errors[400], description: 'Invalid value (VALIDATION_FAILED), or a parameter that restricts access and is not implemented (NOT_IMPLEMENTED); nothing stored.' },
          401: errors[401],
          409: { ...errors[409], description: 'NOTHING_TO_ROUTE: no servicePath and no serviceDomain (as Docker Flow Proxy; Docker Flow Swarm Listener counts it as done). LISTENER_CONFLICT: a srcPort that live proxies listen on themselves. Nothing stored.' },
          502: errors[502],
          503: errors[503],
          504: errors[504],
        },
      },
      handler: async (request, reply) => {
        const query = request.query as Record<string, string | undefined>
        const { route, warnings } = routeFromDfpQuery(query)
        if (warnings.length > 0) request.log.warn({ serviceName: route.serviceName, warnings }, 'Docker Flow Proxy parameters ignored')
        return withWarnings(await putRoute(app, reply, route, { actor: request.actor, source: 'dfp' }, request.query, 'shared'), warnings)
      },
    })
  }

  for (const method of ['GET', 'DELETE', 'PUT', 'POST'] as const) {
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
        response: { 200: DfpRemoveAnswerSchema, 400: errors[400], 401: errors[401], 503: errors[503], 504: errors[504] },
      },
      handler: async (request, reply) => {
        const { serviceName, warnings } = serviceNameFromDfpRemove(request.query as Record<string, string | undefined>)
        if (warnings.length > 0) request.log.warn({ serviceName, warnings }, 'Docker Flow Proxy parameters ignored')
        let answer: Awaited<ReturnType<typeof removeRoute>> | { version: number; removed: false }
        try {
          answer = await removeRoute(app, reply, serviceName, { actor: request.actor, source: 'dfp' }, request.query)
        } catch (err) {
          // DFSL retries anything but 200 fifty times: a service Tether never routed is removed already.
          if (!(err instanceof RouteNotFoundError)) throw err
          answer = { version: await app.store.version(), removed: false }
        }
        return warnings.length > 0 ? { ...answer, warnings } : answer
      },
    })
  }

  app.get(
    '/docker-flow-proxy/config',
    {
      schema: {
        tags: ['docker-flow-proxy'],
        operationId: 'getDockerFlowProxyConfig',
        summary: 'The routing table every proxy renders (Docker Flow Proxy scripts read the config here)',
        description:
          "Docker Flow Proxy answers its own haproxy.cfg here. Tether's proxies each render theirs from this table (it depends on each proxy's settings and its tasks), so this answers the table itself, as JSON, whatever `type` asks: the same as GET /v1/config, without the long poll. Password hashes are hidden.",
        querystring: Type.Object({ type: Type.Optional(Type.String({ maxLength: 16, description: "DFP's 'json' or anything else: Tether answers JSON either way." })) }, { additionalProperties: Type.String({ maxLength: 8192 }) }),
        response: { 200: ref(ConfigSnapshotSchema), 503: errors[503] },
      },
    },
    async () => {
      const snapshot = await app.store.snapshot()
      return { version: snapshot.version, routes: snapshot.routes }
    },
  )

  app.get(
    '/docker-flow-proxy/reload',
    {
      schema: {
        tags: ['docker-flow-proxy'],
        operationId: 'getDockerFlowProxyReload',
        summary: 'Nothing to do: every proxy reloads itself whenever the table changes',
        description: "Docker Flow Proxy's reload re-reads its configuration. Tether's proxies apply every version as it is published (and keep the last good one), so this answers 200 with the current version and changes nothing. `recreate` and `fromListener` are accepted.",
        querystring: Type.Object({}, { additionalProperties: Type.String({ maxLength: 8192 }) }),
        response: {
          200: Type.Object({ status: Type.Literal('OK'), version: Type.Integer(), message: Type.String() }, { additionalProperties: false }),
          503: errors[503],
        },
      },
    },
    async () => ({ status: 'OK' as const, version: await app.store.version(), message: 'Tether proxies reload themselves whenever the routing table changes; nothing was done' }),
  )
}

export default dfp
