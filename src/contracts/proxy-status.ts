import { Type, type Static } from 'typebox'
import { ServiceNameSchema } from './route.ts'

export const RefusedRouteSchema = Type.Object(
  {
    serviceName: ServiceNameSchema,
    error: Type.String({ description: "Why HAProxy refused the configuration with this route (from 'haproxy -c')." }),
  },
  { additionalProperties: false },
)
export type RefusedRoute = Static<typeof RefusedRouteSchema>

export const BackendHealthSchema = Type.Object(
  {
    serviceName: ServiceNameSchema,
    up: Type.Integer({ minimum: 0 }),
    down: Type.Integer({ minimum: 0 }),
    slots: Type.Integer({ minimum: 0, description: 'server-template slots; a service with more tasks than slots is not fully served.' }),
    tasks: Type.Optional(
      Type.Integer({ minimum: 0, description: 'Set only when the service has more tasks than slots (from DNS): the extra tasks get no traffic until TETHER_SLOTS is raised.' }),
    ),
  },
  { additionalProperties: false },
)

/** What a proxy replica reports with each heartbeat (PUT /v1/proxies/{id}). */
export const ProxyHeartbeatSchema = Type.Object(
  {
    version: Type.Integer({ minimum: 0, description: 'Config version the proxy serves.' }),
    status: Type.Union([Type.Literal('starting'), Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('error')]),
    lastError: Type.Union([Type.String({ maxLength: 4096 }), Type.Null()]),
    refusedRoutes: Type.Array(RefusedRouteSchema, { maxItems: 10000 }),
    node: Type.String({ maxLength: 253 }),
    haproxyVersion: Type.String({ maxLength: 128 }),
    startedAt: Type.String({ format: 'date-time' }),
    backends: Type.Array(BackendHealthSchema, { maxItems: 100000 }),
  },
  { $id: 'ProxyHeartbeat', additionalProperties: false },
)
export type ProxyHeartbeat = Static<typeof ProxyHeartbeatSchema>

export const ProxyIdSchema = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$', description: 'Proxy replica id (Swarm task id or host name).' })

/** A heartbeat as the control plane keeps it. */
export const ProxyStatusSchema = Type.Object(
  {
    id: ProxyIdSchema,
    ...ProxyHeartbeatSchema.properties,
    receivedAt: Type.String({ format: 'date-time' }),
  },
  { $id: 'ProxyStatus', additionalProperties: false },
)
export type ProxyStatus = Static<typeof ProxyStatusSchema>
