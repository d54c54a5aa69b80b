/**
 * buildApp(options): the control plane as a Fastify instance that never listens. The server
 * (server.ts), the tests and other roles' tests all build it the same way:
 *
 *   const store = createMemoryRouteStore()
 *   const app = await buildApp({ store, auth: { apiTokens: new Map([['s3cret-token-0123456', 'ci']]), proxyToken: 'proxy-token-0123456' } })
 *   await app.listen({ port: 0, host: '127.0.0.1' })   // or app.inject(...)
 *   ...
 *   await app.close()                                    // does not close the store: the caller owns it
 *
 * buildApp owns every Fastify option (ajv, body limit, error shape), so tests and production
 * cannot drift apart.
 */
import { randomUUID } from 'node:crypto'
import { STATUS_CODES, type ServerOptions } from 'node:http'
import type { Socket } from 'node:net'
import ajvCompiler from '@fastify/ajv-compiler'
import serializerCompiler from '@fastify/fast-json-stringify-compiler'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions, type RawReplyDefaultExpression, type RawRequestDefaultExpression, type RawServerDefault } from 'fastify'
import { createAuthenticator, type AuthLevel, type AuthOptions } from './auth.ts'
import { UnauthorizedError } from './errors.ts'
import { createCertificateService, type CertificateService } from './certificates.ts'
import { readAcmeStatus } from './acme.ts'
import { createMetrics, type ControlMetrics } from './metrics.ts'
import { sharedCompilers } from './compiled-schemas.ts'
import { createEphemeralSecretBox, type SecretBox } from './secret-box.ts'
import { createConfigFeed, type ConfigFeed } from './services/config-feed.ts'
import { frameworkErrorHandler, installErrorHandlers, MAX_PARAM_LENGTH } from './plugins/error-handler.ts'
import { installJsonBodyParser } from './plugins/json-body.ts'
import { RequestLogController } from './plugins/request-log.ts'
import { createFleet, type Fleet } from './services/fleet.ts'
import type { DiscoveryProblem, TaskInventory } from './discovery/index.ts'
import { registerSwagger } from './plugins/swagger.ts'
import { decimalQuery } from './plugins/decimal-query.ts'
import healthRoutes from './routes/health.ts'
import uiRoutes from './routes/ui.ts'
import { sharedSchemas } from './routes/schemas.ts'
import v1Routes from './routes/v1/index.ts'
import type { RouteStore } from './store/route-store.ts'

export interface BuildAppOptions {
  /** The route store (memory or Redis). The app does not close it. */
  store: RouteStore
  /** Tokens: `{ apiTokens: new Map([[token, name]]), proxyToken }`, or `{ apiTokens: 'off' }` (no checks). */
  auth: AuthOptions
  /** A pino logger, `true` for Fastify's default one, or false/undefined for none (tests). */
  logger?: FastifyBaseLogger | boolean | undefined
  /** How long a proxy heartbeat keeps the proxy live. Default 15,000 ms (3 × the agent's 5 s interval). */
  proxyTtlMs?: number
  /** Longest long poll GET /v1/config?wait= may ask for, in seconds (≤ 60). Default 60. */
  longPollMaxSeconds?: number
  /** Re-check interval while waiting for convergence (heartbeats on other replicas). Default 100 ms. */
  convergencePollMs?: number
  /**
   * How long a client may take to send a whole request, headers and body; a slower one (a
   * trickled body) gets 408 REQUEST_TIMEOUT and its connection closed. Long polls and
   * wait=converged are not affected: they wait after the request was received. Default 30,000 ms.
   */
  requestTimeoutMs?: number
  /** Swarm discovery, when on: its task inventory and problems are shown by GET /v1/routes/{serviceName} and /v1/status. */
  discovery?: DiscoveryView | undefined
  /** Link to each proxy's HAProxy stats page on the dashboard (/ui): `{node}`, `{id}` replaced. Default: no link. */
  statsUrl?: string | undefined
  /**
   * Seals certificate keys in the store (TETHER_SECRET_KEY_FILE). null: certificates cannot be
   * stored (503 SECRET_KEY_MISSING). Default: a random key for this process (fits the in-memory store only).
   */
  secretBox?: SecretBox | null | undefined
  /**
   * ACME as GET /v1/status shows it (the orderer itself runs beside the app, see server.ts):
   * the directory, TETHER_ACME_EVERY_DOMAIN, and whether this replica holds the ordering lease.
   * Default: no ACME section.
   */
  acme?: AcmeView | undefined
}

export interface AcmeView {
  directoryUrl: string
  everyDomain: boolean
  isLeader(): boolean
}

/** What the API reads from Swarm discovery (a SwarmDiscovery fits). */
export interface DiscoveryView {
  isLeader(): boolean
  problems(): DiscoveryProblem[]
  inventory: TaskInventory
  /** A warning when Docker says nobody can serve the service (see SwarmDiscovery). */
  serviceWarning?(serviceName: string): Promise<string | null>
}

export type ControlApp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>

declare module 'fastify' {
  interface FastifyInstance {
    store: RouteStore
    feed: ConfigFeed
    fleet: Fleet
    discovery: DiscoveryView | null
    metrics: ControlMetrics
    longPollMaxSeconds: number
    certificates: CertificateService
    acme: AcmeView | null
  }
  interface FastifyRequest {
    /** Name of the token that authorised the request ('anonymous' with auth off). */
    actor: string
  }
  interface FastifyContextConfig {
    /** Who may call the route. Default 'none' (readable without a token). */
    auth?: AuthLevel
  }
}

const MiB = 1024 * 1024

export async function buildApp(options: BuildAppOptions): Promise<ControlApp> {
  const longPollMaxSeconds = options.longPollMaxSeconds ?? 60
  if (!Number.isInteger(longPollMaxSeconds) || longPollMaxSeconds < 1 || longPollMaxSeconds > 60) throw new Error('buildApp: longPollMaxSeconds must be an integer from 1 to 60')
  const proxyTtlMs = options.proxyTtlMs ?? 15_000
  if (!(proxyTtlMs > 0)) throw new Error('buildApp: proxyTtlMs must be positive')

  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000
  if (!Number.isInteger(requestTimeoutMs) || requestTimeoutMs < 100) throw new Error('buildApp: requestTimeoutMs must be an integer of at least 100')

  const logger = options.logger
  const fastifyOptions: FastifyServerOptions & { http: ServerOptions } = {
    bodyLimit: MiB,
    // Slow clients: the whole request within requestTimeoutMs (headers within 10 s of it), an
    // idle keep-alive connection closed after 65 s (longer than the 60 s idle timeout of common
    // load balancers, so they close first). Node checks these every connectionsCheckingInterval.
    requestTimeout: requestTimeoutMs,
    keepAliveTimeout: 65_000,
    http: { headersTimeout: Math.min(10_000, requestTimeoutMs), connectionsCheckingInterval: Math.min(1000, Math.ceil(requestTimeoutMs / 4)) },
    clientErrorHandler,
    genReqId: () => randomUUID(),
    // Path parameters longer than this never reach a route; they answer 414 in the error shape.
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    frameworkErrors: frameworkErrorHandler,
    // One line per request; reads and heartbeats at debug (plugins/request-log.ts).
    logController: new RequestLogController(),
    // Query strings are coerced ('8080' → 8080, 'true' → true); JSON bodies are taken as sent.
    // Compiled once per process (compiled-schemas.ts): every app built after the first starts at once.
    schemaController: {
      compilersFactory: {
        // Typed loosely: Fastify's ValidatorFactory type also covers JTD, which Tether does not use.
        buildValidator: sharedCompilers('validator', bodyStrictValidator() as never) as never,
        buildSerializer: sharedCompilers('serializer', serializerCompiler() as never) as never,
      },
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
  }
  if (logger === true) fastifyOptions.logger = true
  else if (logger !== undefined && logger !== false) fastifyOptions.loggerInstance = logger
  const app = Fastify(fastifyOptions).withTypeProvider<TypeBoxTypeProvider>() as unknown as ControlApp

  const metrics = createMetrics()
  const feed = createConfigFeed(options.store, app.log)
  const fleet = createFleet(options.store, { ttlMs: proxyTtlMs, pollMs: options.convergencePollMs })
  app.decorate('store', options.store)
  app.decorate('feed', feed)
  app.decorate('fleet', fleet)
  app.decorate('discovery', options.discovery ?? null)
  app.decorate('metrics', metrics)
  app.decorate('longPollMaxSeconds', longPollMaxSeconds)
  const secretBox = options.secretBox === undefined ? createEphemeralSecretBox() : options.secretBox
  app.decorate('certificates', createCertificateService({ store: options.store, box: secretBox }))
  if (secretBox === null) app.log.warn('no TETHER_SECRET_KEY_FILE: certificates cannot be stored (keys are never kept in clear in a shared store)')
  app.decorate('acme', options.acme ?? null)
  app.decorateRequest('actor', '')
  metrics.setSources({
    table: async () => {
      try {
        const s = await feed.current()
        return { version: s.version, routes: s.routes }
      } catch {
        return null
      }
    },
    longPollWaiters: () => feed.waiters(),
    liveProxies: async () => {
      try {
        return (await options.store.listProxies()).length
      } catch {
        return null
      }
    },
    oldWorkers: async () => {
      try {
        return (await options.store.listProxies()).flatMap((p) => (p.oldWorkers === undefined ? [] : [{ proxy: p.id, count: p.oldWorkers.count, connections: p.oldWorkers.connections, oldestAgeSeconds: p.oldWorkers.oldestAgeSeconds }]))
      } catch {
        return null
      }
    },
    certificates: async () => {
      try {
        return (await options.store.listCertificates()).map((c) => ({ name: c.info.name, source: c.info.source, notAfter: c.info.notAfter }))
      } catch {
        return null
      }
    },
    acmeFailures: async () => {
      const acme = options.acme
      if (acme === undefined) return null
      try {
        const status = await readAcmeStatus(options.store, { directoryUrl: acme.directoryUrl, everyDomain: acme.everyDomain })
        return status.certificates.map((c) => ({ name: c.name, failures: c.failures }))
      } catch {
        return null
      }
    },
  })

  installJsonBodyParser(app)
  installErrorHandlers(app, { onStoreError: (request) => metrics.storeErrors.inc({ operation: `${request.method} ${request.routeOptions.url ?? 'unknown'}` }) })

  const authenticator = createAuthenticator(options.auth)
  if (!authenticator.enabled) app.log.warn('authentication is OFF (TETHER_AUTH=off): anyone who can reach this port can change every route')
  app.addHook('onRequest', async (request, reply) => {
    // The id of the request's log lines: a client quoting it (e.g. with a 503) finds the cause.
    void reply.header('x-request-id', request.id)
    const level = request.routeOptions.config.auth ?? 'none'
    if (level === 'none') return
    const actor = authenticator.check(request.headers.authorization, level)
    if (actor === null) throw new UnauthorizedError()
    request.actor = actor
  })
  decimalQuery(app)
  // Basic-auth password hashes go to proxies and to API-token holders, not to public readers
  // (GET /v1/routes, the change log, the dashboard): a crypt(3) hash can be cracked offline.
  app.addHook('preSerialization', async (request, _reply, payload) => {
    const level = request.routeOptions.config.auth ?? 'none'
    return level === 'none' ? hidePasswordHashes(payload) : payload
  })
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched'
    metrics.httpRequests.inc({ method: request.method, route, status_code: String(reply.statusCode) })
    metrics.httpDuration.observe({ method: request.method, route }, reply.elapsedTime / 1000)
  })
  // Answer waiting long polls (304) before the server stops accepting, so shutdown is quick.
  app.addHook('preClose', async () => feed.close())

  for (const schema of sharedSchemas) app.addSchema(schema)
  await registerSwagger(app, { authEnabled: authenticator.enabled })
  await app.register(healthRoutes)
  await app.register(v1Routes, { prefix: '/v1' })
  await app.register(uiRoutes, { statsUrl: options.statsUrl, proxyTtlMs, authEnabled: authenticator.enabled })
  return app
}

/**
 * Requests Node's HTTP parser refuses before Fastify sees them (raw spaces or control bytes in
 * the URL, oversized headers, a request not received within requestTimeoutMs): answered in the
 * one error shape, with a code, and the connection closed.
 */
function clientErrorHandler(this: FastifyInstance, err: Error & { code?: string; reason?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [statusCode, code, message] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'REQUEST_TIMEOUT', 'The request (headers and body) was not received in time; the connection is closed']
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'HEADERS_TOO_LARGE', 'The request headers are larger than 16 KiB']
        : [400, 'MALFORMED_REQUEST', `The HTTP request could not be parsed${typeof err.reason === 'string' ? ` (${err.reason.replace(/[^\x20-\x7e]/g, '?').slice(0, 100)})` : ''}: raw spaces and control characters must be percent-encoded`]
  this.log.info({ code, err: err.code }, 'client error')
  if (socket.writable) {
    const body = JSON.stringify({ statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message })
    socket.write(`HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode] ?? 'Error'}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  }
  socket.destroy()
}

/**
 * Two ajv instances from Fastify's own compiler: one coerces types (query strings, params,
 * headers are text), one does not (a JSON body says what it means). Neither removes unknown
 * properties: unknown parameters are refused with UNKNOWN_PARAMETER.
 */
function bodyStrictValidator() {
  const factory = ajvCompiler()
  return (externalSchemas: unknown, ajvServerOptions: { customOptions?: Record<string, unknown>; plugins?: unknown[] } | undefined) => {
    const custom = ajvServerOptions?.customOptions ?? {}
    const plugins = ajvServerOptions?.plugins ?? []
    const coercing = factory(externalSchemas as never, { customOptions: { ...custom }, plugins } as never)
    const strict = factory(externalSchemas as never, { customOptions: { ...custom, coerceTypes: false }, plugins } as never)
    return (route: { httpPart?: string; schema: unknown; method: string; url: string }) => (route.httpPart === 'body' ? strict(route as never) : coercing(route as never))
  }
}

/** The text public answers show instead of a password hash. */
export const HIDDEN_HASH = '(hidden)'

/** A copy of `value` with every `passwordHash` replaced by HIDDEN_HASH (the value itself when it has none). */
export function hidePasswordHashes<T>(value: T, depth = 0): T {
  if (depth > 64 || value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) {
    let changed = false
    const out = value.map((v) => {
      const h = hidePasswordHashes(v, depth + 1)
      if (h !== v) changed = true
      return h
    })
    return (changed ? out : value) as T
  }
  let copy: Record<string, unknown> | undefined
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const h = k === 'passwordHash' && typeof v === 'string' ? HIDDEN_HASH : hidePasswordHashes(v, depth + 1)
    if (h !== v) {
      copy ??= { ...(value as Record<string, unknown>) }
      copy[k] = h
    }
  }
  return (copy ?? value) as T
}
