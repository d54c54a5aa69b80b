/**
 * HTTP schemas of the control plane's own endpoints. Shared ones carry an `$id`, are
 * registered once with `app.addSchema` (see `sharedSchemas`) and are used through `ref()`,
 * so the OpenAPI document shows them as named components while TypeScript still infers
 * their types.
 */
import { Type, type Static, type TSchema } from 'typebox'
import { ChangeSchema } from '../../contracts/change.ts'
import { ConfigSnapshotSchema } from '../../contracts/config-snapshot.ts'
import { ErrorSchema } from '../../contracts/errors.ts'
import { ApplyFailureSchema, DescriptorReportSchema, OldWorkersReportSchema, ProxyHeartbeatSchema, ProxyStatusSchema, ProxyTlsReportSchema } from '../../contracts/proxy-status.ts'
import { TlsStatusSchema } from '../services/tls-status.ts'
import {
  AuthSchema,
  DestinationSchema,
  EndpointSchema,
  limits,
  PortSchema,
  rules,
  RouteSchema,
  ServiceDomainSchema,
  SniDestinationSchema,
  TcpDestinationSchema,
  ServiceNameSchema,
  ServicePathSchema,
  routeHttpsProperties,
  StickyCookieSchema,
} from '../../contracts/route.ts'

/** A `$ref` to a shared schema, typed as the schema itself. */
export function ref<T extends TSchema>(schema: T): T {
  const id = (schema as { $id?: string }).$id
  if (id === undefined) throw new Error('ref(): schema has no $id')
  return { $ref: `${id}#` } as unknown as T
}

/** `wait=converged&timeout=S`: shared by every endpoint that changes the routing table. */
export const waitProperties = {
  wait: Type.Optional(
    Type.Literal('converged', {
      description: "'converged': answer only once every live proxy has applied the new version (or 504 CONVERGENCE_TIMEOUT naming the laggards; the change stays stored).",
    }),
  ),
  timeout: Type.Optional(
    Type.String({ pattern: '^(?:[0-9]|[1-9][0-9]|[12][0-9]{2}|300)s?$', description: 'Seconds to wait for convergence, 0-300 (default 30); 30 and 30s are the same.', examples: ['30s'] }),
  ),
}
export const WaitQuerySchema = Type.Object(waitProperties, { additionalProperties: false })

/** `wait=converged|healthy&timeout=S`: the writes of one route (reconfigure in every form, PUT /v1/routes/{serviceName}). */
export const routeWaitProperties = {
  ...waitProperties,
  wait: Type.Optional(
    Type.Union([Type.Literal('converged'), Type.Literal('healthy')], {
      description:
        "'converged': answer only once every live proxy has applied the new version. 'healthy': and has at least one task of this route passing its health check (the TCP connect, or healthCheckPath), so a new service answers at once instead of 503. " +
        'Otherwise 504 CONVERGENCE_TIMEOUT naming the proxies that lag (or have no passing task, and how many fail); the change stays stored.',
    }),
  ),
}

/** `takeover=true`: on Tether's own forms, the explicit move of paths another service holds. */
export const takeoverProperty = {
  takeover: Type.Optional(
    Type.Boolean({
      description:
        'Move the paths (for these hosts) that other services hold to this route, in the same version: the blue-green switch. The holders keep their other paths; a holder left with none is removed; the change log notes it. Without it, such a write answers 409 ROUTE_CONFLICT and stores nothing.',
    }),
  ),
}
/** `drain=<seconds>` with takeover=true: the holders' pinned clients keep their tasks that long (docs/releasing.md). */
export const drainProperty = {
  drain: Type.Optional(
    Type.String({
      pattern: '^[0-9]{1,6}s?$',
      description: `With takeover=true: seconds (${rules.drain.text}) during which clients pinned to the old service's tasks keep reaching them while every new session goes to this route; then the old route is removed and they move. Shown as 'drain' in the old route.`,
      examples: ['600'],
    }),
  ),
}
export const WriteQuerySchema = Type.Object({ ...routeWaitProperties, ...takeoverProperty, ...drainProperty }, { additionalProperties: false })

/** The HTTPS fields in the query form (acmeDomains is the JSON form's list; the query says acme=true). */
const { acmeDomains: _acmeDomains, ...routeHttpsQueryProperties } = routeHttpsProperties

const listMax = (entry: number, count: number): number => (entry + 1) * count

/**
 * The HTTP features in the query form: Docker Flow Proxy's parameter names and text forms
 * (parsed by control/input/route-features.ts, the same rules as the DFP form).
 */
const text = (maxLength: number, description: string, example?: string) => Type.Optional(Type.String({ maxLength, description, ...(example === undefined ? {} : { examples: [example] }) }))
const flag = (description: string) => Type.Optional(Type.Boolean({ description }))
export const featureQueryProperties = {
  backendScheme: text(5, 'How the proxies talk to the tasks: http (default), https (TLS), h2c (HTTP/2 in clear text: gRPC) or h2 (HTTP/2 over TLS).', 'h2c'),
  sslVerifyNone: flag("TLS to the tasks without verifying their certificates (Docker Flow Proxy's sslVerifyNone)."),
  backendCaSecret: text(63, 'TLS to the tasks, verified against the CA bundle in this Docker secret mounted in the proxies; the certificate must name the service.', 'internal_ca'),
  listener: Type.Optional(Type.Union([Type.Literal('http'), Type.Literal('https')], { description: "Only requests arriving on this listener of the proxies (plain HTTP or HTTPS) take this route; absent: both." })),
  userAgent: text(2048, 'Comma-separated: only requests whose User-Agent contains one of these (case-insensitive) take this route.', 'iphone,android'),
  serviceHeader: text(2048, "Comma-separated 'Name:value': only requests carrying all these headers take this route.", 'X-Version:2'),
  servicePathExclude: text(listMax(rules.servicePath.maxLength, limits.maxPaths), 'Comma-separated path prefixes (whole segments) this route does not serve.', '/demo/internal'),
  reqPathSearchReplace: text(4096, "Path rewrites, 'search,replace' pairs separated by ':' (PCRE; \\1..\\9 are the groups), applied in order before the request is sent.", '^/api/v1/(.*),/v1/\\1'),
  reqPathSearch: text(256, 'A path rewrite: the regular expression (with reqPathReplace).'),
  reqPathReplace: text(256, 'A path rewrite: the replacement (with reqPathSearch).'),
  stripPrefix: flag('Remove the matched servicePath prefix before sending the request (/demo/x reaches the service as /x).'),
  allowedMethods: text(1024, 'Comma-separated methods; any other method answers 403.', 'GET,HEAD'),
  deniedMethods: text(1024, 'Comma-separated methods that answer 403.', 'DELETE'),
  ignoreAuthorization: flag("This route's paths do not ask for the users (with users on the same route only)."),
  timeoutServer: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}$', description: `Seconds to wait for the service's answer; ${rules.timeout.text}.`, examples: ['60'] })),
  timeoutTunnel: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}$', description: `Seconds a WebSocket (tunnel) may stay idle; ${rules.timeout.text}.`, examples: ['3600'] })),
  redirectFromDomain: text(listMax(rules.serviceDomain.maxLength, limits.maxDomains), "Comma-separated host names redirected (301) to the route's first serviceDomain.", 'old.example.com'),
  addReqHeader: text(8192, "Comma-separated 'Name value' headers added to the request.", 'X-Forwarded-Port %[dst_port]'),
  setReqHeader: text(8192, "Comma-separated 'Name value' headers set on the request (replacing any).", 'X-Env prod'),
  delReqHeader: text(2048, 'Comma-separated header names removed from the request.', 'X-Debug'),
  addResHeader: text(8192, "Comma-separated 'Name value' headers added to the response.", 'X-Served-By tether'),
  setResHeader: text(8192, "Comma-separated 'Name value' headers set on the response.", 'Cache-Control no-store'),
  delResHeader: text(2048, 'Comma-separated header names removed from the response.', 'X-Powered-By'),
  users: text(20000, "Basic auth: comma-separated 'name:password' (hashed with SHA-512 crypt before it is stored; never stored plain), or crypt(3) hashes with usersPassEncrypted=true. A name without a password is taken from usersSecret.", 'admin:s3cret'),
  usersPassEncrypted: flag('The passwords in users (and in usersSecret) are crypt(3) hashes (mkpasswd -m sha-512).'),
  usersSecret: Type.Optional(Type.String({ pattern: rules.secretName.pattern, maxLength: 63, description: 'Basic auth users from the Docker secret dfp_users_<usersSecret> mounted in the proxies (read by each proxy).', examples: ['admins'] })),
  realm: Type.Optional(Type.String({ pattern: rules.realm.pattern, maxLength: 64, description: 'The basic-auth realm browsers show.' })),
  isDefaultBackend: flag('Requests no route matches go to this service instead of a 404.'),
  compressionAlgo: text(64, `Compress responses with these algorithms (space- or comma-separated), for clients that ask for one in Accept-Encoding; each ${rules.compressionAlgo.text}. A response already compressed by the service is passed as it is.`, 'gzip'),
  ipAllow: text(3200, `Only clients from these addresses or CIDR blocks (space- or comma-separated) are served, others get 403; each ${rules.cidr.text}.`, '10.0.0.0/8,2001:db8::/32'),
  healthCheckPath: text(rules.healthCheckPath.maxLength, `Check every task with GET <path>; a task that fails gets no request, a new task none before it passes. It ${rules.healthCheckPath.text}.`, '/healthz'),
  healthCheckInterval: text(5, 'Seconds between two checks of a task, 1-3600 (default 2).', '2'),
  healthCheckStatus: text(3, 'The status a passing task answers, 100-599 (needs healthCheckPath; default: any 2xx or 3xx).', '200'),
  healthCheckSlowStart: text(5, 'Seconds over which a task that starts passing gets its full share of new sessions, 1-3600.', '30'),
  canary: text(3, `Percent of the new sessions of paths another service holds that go to this service instead; it ${rules.canary.text}. Promote with takeover=true, abort by removing this route.`, '30'),
  rateLimit: text(7, 'Requests per second one client address may send to this route on average, 1-1000000; past it, 429 with Retry-After. Per proxy replica (not shared between replicas).', '10'),
  rateLimitBurst: text(8, 'Requests a client may send at once (needs rateLimit; default rateLimit), counted over rateLimitBurst / rateLimit seconds; at least rateLimit, at most 3600 times it.', '50'),
  rateLimitTotal: text(8, 'Requests per second all clients together may send to this route through one proxy replica, 1-10000000; past it, 429 with Retry-After: 1.', '1000'),
  bodyLimit: text(13, 'Largest request body in bytes, 1-1099511627776 (default: the proxy\'s TETHER_MAX_BODY_SIZE); a Content-Length over it is answered 413 before the service sees the request. A body without Content-Length (chunked) is not limited.', '1048576'),
  ipDeny: text(3200, `Clients from these addresses or CIDR blocks (space- or comma-separated) get 403; each ${rules.cidr.text}.`, '192.0.2.7'),
  compressionType: text(4200, `Only responses of these MIME types (space- or comma-separated) are compressed (needs compressionAlgo); each ${rules.mimeType.text}.`, 'text/html text/css application/json'),
}

export const ReconfigureQuerySchema = Type.Object(
  {
    serviceName: ServiceNameSchema,
    servicePath: Type.Optional(
      Type.String({
        maxLength: listMax(rules.servicePath.maxLength, limits.maxPaths),
        description: `Comma-separated path prefixes (at most ${limits.maxPaths}); each ${rules.servicePath.text}. Required for reqMode=http (the default); not given for tcp and sni.`,
        examples: ['/demo,/api/demo'],
      }),
    ),
    // Text, not an integer: coercion would take '0x50', '8e1', ' 80' or '+80' for 80. The
    // input parser reads the digits the way every other form does.
    port: Type.String({ pattern: '^[0-9]{1,5}$', description: `Port the service listens on inside the overlay network (decimal digits); ${rules.port.text}.`, examples: ['8080'] }),
    serviceDomain: Type.Optional(
      Type.String({ maxLength: listMax(rules.serviceDomain.maxLength, limits.maxDomains), description: `Comma-separated host names; each ${rules.serviceDomain.text}.`, examples: ['app.example.com,*.example.org'] }),
    ),
    sticky: Type.Optional(Type.Boolean({ description: 'Pin each client to one task with an opaque cookie. Default false.' })),
    stickyCookie: Type.Optional(StickyCookieSchema),
    endpoints: Type.Optional(
      Type.String({ maxLength: listMax(rules.endpoint.maxLength, limits.maxEndpoints), description: `Comma-separated host:port backends instead of tasks.<serviceName> DNS; each ${rules.endpoint.text}.`, examples: ['127.0.0.1:3001,127.0.0.1:3002'] }),
    ),
    ...routeHttpsQueryProperties,
    acme: Type.Optional(Type.Boolean({ description: "Get a certificate for the route's serviceDomain by ACME (stored as acmeDomains)." })),
    ...featureQueryProperties,
    reqMode: Type.Optional(
      Type.Union([Type.Literal('http'), Type.Literal('tcp'), Type.Literal('sni')], {
        description: "http (default): servicePath + port. tcp: every proxy listens on srcPort and forwards to port. sni: TLS connections on the proxies' HTTPS port naming serverName are passed through, unterminated, to port.",
      }),
    ),
    srcPort: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}$', description: `reqMode=tcp: the port every proxy listens on; ${rules.srcPort.text}; not 80, 443 or 8404 (the proxies' own listeners).`, examples: ['6379'] })),
    serverName: Type.Optional(
      Type.String({ maxLength: listMax(rules.serverName.maxLength, limits.maxServerNames), description: `reqMode=sni: comma-separated TLS server names; each ${rules.serverName.text}.`, examples: ['db.example.com,*.db.example.com'] }),
    ),
    sendProxyProtocol: Type.Optional(Type.Boolean({ description: 'reqMode=tcp|sni: send a PROXY protocol v2 header to the tasks (they must expect it). Default false.' })),
    ...routeWaitProperties,
    ...takeoverProperty,
    ...drainProperty,
  },
  { additionalProperties: false },
)
export type ReconfigureQuery = Static<typeof ReconfigureQuerySchema>

/** The destination fields other than paths, port and hosts: at the top level of the JSON form with 'servicePath' + 'port'. */
const { servicePath: _p, port: _port, serviceDomain: _d, ...destinationFeatureProperties } = DestinationSchema.properties

export const UserInputSchema = Type.Object(
  {
    name: Type.String({ pattern: rules.userName.pattern, maxLength: 64 }),
    password: Type.Optional(Type.String({ pattern: '^[\\x20-\\x7e]{1,256}$', maxLength: 256, description: 'Hashed (SHA-512 crypt) before it is stored; never stored or answered plain.' })),
    passwordHash: Type.Optional(Type.String({ pattern: rules.passwordHash.pattern, maxLength: 260, description: 'A crypt(3) hash (mkpasswd -m sha-512), stored as given.' })),
  },
  { additionalProperties: false, description: "One user: 'password' or 'passwordHash'." },
)

export const AuthInputSchema = Type.Object(
  {
    users: Type.Optional(Type.Array(UserInputSchema, { maxItems: 64 })),
    usersSecret: AuthSchema.properties.usersSecret,
    usersSecretEncrypted: AuthSchema.properties.usersSecretEncrypted,
    usersFromSecret: AuthSchema.properties.usersFromSecret,
    realm: AuthSchema.properties.realm,
  },
  { additionalProperties: false, description: "HTTP basic authentication in front of the route: 'users', or 'usersSecret', or both." },
)

const routeBodyProperties = {
  servicePath: Type.Optional(Type.Array(ServicePathSchema, { minItems: 1, maxItems: limits.maxPaths, description: "Path prefixes of the one destination (with 'port'); or give 'destinations'." })),
  port: Type.Optional(PortSchema),
  // Loose here: backend-fields.ts judges them and names the rule in its 400.
  backendScheme: Type.Optional(Type.String({ maxLength: 5, description: 'How the proxies talk to the tasks: http (HTTP/1.1, default), https (TLS), h2c (HTTP/2 in clear text: gRPC services) or h2 (HTTP/2 over TLS).', examples: ['h2c'] })),
  sslVerifyNone: RouteSchema.properties.sslVerifyNone,
  backendCaSecret: Type.Optional(Type.String({ maxLength: 63, description: 'TLS to the tasks, verified: their certificate must chain to the CA bundle in this Docker secret (mounted in the proxies) and name the service.', examples: ['internal_ca'] })),
  destinations: Type.Optional(Type.Array(ref(DestinationSchema), { minItems: 1, maxItems: limits.maxDestinations, description: "Several path/port destinations; instead of 'servicePath' and 'port'." })),
  tcp: Type.Optional(Type.Array(ref(TcpDestinationSchema), { minItems: 1, maxItems: limits.maxTcp, description: 'TCP listen ports forwarded to the service (besides or instead of HTTP destinations).' })),
  sni: Type.Optional(Type.Array(ref(SniDestinationSchema), { minItems: 1, maxItems: limits.maxSni, description: "TLS server names passed through, unterminated, on the proxies' HTTPS port." })),
  serviceDomain: Type.Optional(Type.Array(ServiceDomainSchema, { maxItems: limits.maxDomains })),
  sticky: Type.Optional(Type.Boolean({ description: 'Pin each client to one task with an opaque cookie. Default false.' })),
  stickyCookie: Type.Optional(StickyCookieSchema),
  endpoints: Type.Optional(Type.Array(EndpointSchema, { maxItems: limits.maxEndpoints })),
  ...routeHttpsProperties,
  acme: Type.Optional(Type.Boolean({ description: "Get a certificate for the route's serviceDomain by ACME (stored as acmeDomains)." })),
  ...destinationFeatureProperties,
  addReqHeader: RouteSchema.properties.addReqHeader,
  setReqHeader: RouteSchema.properties.setReqHeader,
  delReqHeader: RouteSchema.properties.delReqHeader,
  addResHeader: RouteSchema.properties.addResHeader,
  setResHeader: RouteSchema.properties.setResHeader,
  delResHeader: RouteSchema.properties.delResHeader,
  auth: Type.Optional(AuthInputSchema),
  isDefaultBackend: RouteSchema.properties.isDefaultBackend,
  compressionAlgo: RouteSchema.properties.compressionAlgo,
  compressionType: RouteSchema.properties.compressionType,
  ipAllow: RouteSchema.properties.ipAllow,
  ipDeny: RouteSchema.properties.ipDeny,
  healthCheckPath: RouteSchema.properties.healthCheckPath,
  healthCheckInterval: RouteSchema.properties.healthCheckInterval,
  healthCheckStatus: RouteSchema.properties.healthCheckStatus,
  healthCheckSlowStart: RouteSchema.properties.healthCheckSlowStart,
  canary: RouteSchema.properties.canary,
  rateLimit: RouteSchema.properties.rateLimit,
  rateLimitBurst: RouteSchema.properties.rateLimitBurst,
  rateLimitTotal: RouteSchema.properties.rateLimitTotal,
  bodyLimit: RouteSchema.properties.bodyLimit,
}

export const ReconfigureBodySchema = Type.Object(
  { serviceName: ServiceNameSchema, ...routeBodyProperties },
  { $id: 'ReconfigureRequest', additionalProperties: false, description: "A route: 'servicePath' + 'port', or 'destinations'; and/or 'tcp' and 'sni' destinations." },
)
export type ReconfigureBody = Static<typeof ReconfigureBodySchema>

export const RouteBodySchema = Type.Object(
  { serviceName: Type.Optional(ServiceNameSchema), ...routeBodyProperties },
  { $id: 'RouteRequest', additionalProperties: false, description: "A route for the service named in the path: 'servicePath' + 'port', or 'destinations'. 'serviceName', if given, must equal the path's." },
)
export type RouteBody = Static<typeof RouteBodySchema>

export const LaggardSchema = Type.Object({ id: Type.String(), version: Type.Integer(), node: Type.String() }, { additionalProperties: false })

export const ConvergenceSchema = Type.Object(
  {
    version: Type.Integer({ description: 'The version every live proxy had to apply.' }),
    live: Type.Integer({ description: 'Live proxies (heartbeat not expired).' }),
    converged: Type.Integer({ description: 'Live proxies at that version or newer.' }),
    laggards: Type.Array(LaggardSchema),
    healthy: Type.Optional(
      Type.Array(Type.Object({ id: Type.String(), up: Type.Integer({ minimum: 1, description: "Tasks of the route passing their health check on this proxy." }) }, { additionalProperties: false }), {
        description: 'wait=healthy: every live proxy, with its tasks of the route that pass.',
      }),
    ),
  },
  { $id: 'Convergence', additionalProperties: false },
)

const warnings = Type.Optional(
  Type.Array(Type.String(), {
    description:
      'One sentence each: Docker Flow Proxy form: parameters accepted but ignored, and paths this route shares with another (who serves them, who is shadowed); with Swarm discovery on: no Swarm service of that name, or no running task (its requests get 503).',
  }),
)

export const TakenOverSchema = Type.Object(
  {
    serviceName: Type.String({ description: 'The service that held the paths.' }),
    servicePath: Type.Array(Type.String(), { description: 'The paths moved to this route.' }),
    removed: Type.Boolean({ description: 'Nothing was left of its route, so it was removed.' }),
    redirectFromDomain: Type.Optional(Type.Array(Type.String(), { description: 'Host redirects moved to this route.' })),
    isDefaultBackend: Type.Optional(Type.Literal(true, { description: 'The default backend moved to this route.' })),
    drainUntil: Type.Optional(Type.String({ format: 'date-time', description: "drain=S: the holder's route stays until then for the clients pinned to its tasks, then it is removed." })),
  },
  { additionalProperties: false },
)

export const ReconfigureAnswerSchema = Type.Object(
  {
    route: ref(RouteSchema),
    version: Type.Integer({ description: 'Config version that holds this route.' }),
    changed: Type.Boolean({ description: 'False when the route was already stored exactly so (the version did not move).' }),
    takenOver: Type.Optional(Type.Array(TakenOverSchema, { description: 'takeover=true: what was moved from which service.' })),
    warnings,
    convergence: Type.Optional(ref(ConvergenceSchema)),
  },
  { $id: 'ReconfigureAnswer', additionalProperties: false },
)

export const RemoveAnswerSchema = Type.Object(
  { version: Type.Integer(), removed: ref(RouteSchema), warnings, convergence: Type.Optional(ref(ConvergenceSchema)) },
  { $id: 'RemoveAnswer', additionalProperties: false },
)

export const RemoveQuerySchema = Type.Object({ serviceName: ServiceNameSchema, ...waitProperties }, { additionalProperties: false })

/** Swarm discovery's task inventory of one routed service (src/control/discovery/task-inventory.ts). */
export const ServiceTasksSchema = Type.Object(
  {
    serviceName: Type.String(),
    running: Type.Integer({ description: 'Running tasks at the last listing.' }),
    tasks: Type.Array(
      Type.Object({ id: Type.String(), slot: Type.Union([Type.Integer(), Type.Null()]), nodeId: Type.String(), addresses: Type.Array(Type.String()) }, { additionalProperties: false }),
    ),
    addresses: Type.Array(Type.String(), { description: "Every running task's overlay address." }),
    checkedAt: Type.String({ format: 'date-time', description: 'Last successful listing (Docker sends no task events: listed every few seconds).' }),
    error: Type.Optional(Type.String({ description: 'Set while listing fails; the counts are those of the last success.' })),
  },
  { additionalProperties: false, description: 'Running tasks of the service (only with Swarm discovery on, TETHER_DISCOVERY=on).' },
)

/** A (host, path) binding one route lost to another (contracts/route-planner.ts). */
export const ShadowedBindingSchema = Type.Object(
  {
    serviceName: Type.String({ description: 'The route that does not serve this binding.' }),
    host: Type.String({ description: "The host ('' for any host)." }),
    path: Type.String(),
    port: Type.Integer(),
    shadowedBy: Type.String({ description: 'The route that serves it instead.' }),
    message: Type.String({ description: 'The same, as a sentence.' }),
  },
  { $id: 'ShadowedBinding', additionalProperties: false },
)

/** A host redirect or the default backend one route asked for and another holds (contracts/route-planner.ts). */
export const ShadowedExtraSchema = Type.Object(
  {
    serviceName: Type.String({ description: 'The route that asked for it and does not get it.' }),
    what: Type.String({ description: "'the redirect from <host>' or 'the default backend (isDefaultBackend)'." }),
    shadowedBy: Type.String({ description: 'The route that holds it (Docker Flow Proxy order).' }),
    message: Type.String({ description: 'The same, as a sentence.' }),
  },
  { $id: 'ShadowedExtra', additionalProperties: false },
)

export const RouteRecordSchema = Type.Object(
  {
    route: ref(RouteSchema),
    version: Type.Integer({ description: 'Version at which this route last changed.' }),
    updatedAt: Type.String({ format: 'date-time' }),
    actor: Type.String(),
    source: Type.String(),
    tasks: Type.Optional(ServiceTasksSchema),
    shadowed: Type.Optional(
      Type.Array(ref(ShadowedBindingSchema), {
        description: "GET /v1/routes/{serviceName}: this route's bindings that another route serves, and the bindings of others this route shadows (paths shared through the Docker Flow Proxy form or labels).",
      }),
    ),
    shadowedExtras: Type.Optional(
      Type.Array(ref(ShadowedExtraSchema), {
        description: 'GET /v1/routes/{serviceName}: host redirects and the default backend this route asked for and another holds, or holds against another (Docker Flow Proxy form or labels).',
      }),
    ),
  },
  { $id: 'RouteRecord', additionalProperties: false },
)

export const RoutesAnswerSchema = Type.Object({ version: Type.Integer(), routes: Type.Array(ref(RouteRecordSchema)) }, { additionalProperties: false })

export const ServiceNameParamsSchema = Type.Object({ serviceName: ServiceNameSchema }, { additionalProperties: false })

export const ConfigQuerySchema = Type.Object(
  {
    since: Type.Optional(Type.Integer({ minimum: 0, description: 'The version the caller holds.' })),
    wait: Type.Optional(
      Type.String({
        pattern: '^(?:[0-9]|[1-5][0-9]|60)s?$',
        description: "Long poll, with 'since': seconds (0-60; 30 and 30s are the same) to wait for a version newer than 'since' before answering 304.",
        examples: ['30s'],
      }),
    ),
  },
  { additionalProperties: false },
)

/**
 * The change-log entry of contracts/change.ts with `before`/`after` as references: ajv refuses
 * one schema holding the same nested `$id` ('Route') twice.
 */
export const ChangeEntrySchema = Type.Object(
  {
    ...ChangeSchema.properties,
    before: Type.Union([ref(RouteSchema), Type.Null()], { description: 'The route before the change; null when it was created.' }),
    after: Type.Union([ref(RouteSchema), Type.Null()], { description: 'The route after the change; null when it was removed.' }),
  },
  { $id: 'Change', additionalProperties: false },
)

export const ChangesQuerySchema = Type.Object(
  {
    since: Type.Integer({ minimum: 0, default: 0, description: 'Only changes with a version greater than this.' }),
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'At most this many changes, oldest first.' }),
  },
  { additionalProperties: false },
)
export const ChangesAnswerSchema = Type.Object({ version: Type.Integer({ description: 'Current version.' }), changes: Type.Array(ref(ChangeEntrySchema)) }, { additionalProperties: false })

export const RollbackQuerySchema = Type.Object({ to: Type.Integer({ minimum: 0, description: 'The version whose routing table to restore.' }), ...waitProperties }, { additionalProperties: false })
export const RollbackAnswerSchema = Type.Object(
  {
    version: Type.Integer({ description: 'The new version (unchanged when the table already equalled version `to`).' }),
    changed: Type.Integer({ description: 'Routes the rollback changed.' }),
    convergence: Type.Optional(ref(ConvergenceSchema)),
  },
  { additionalProperties: false },
)

export const ProxyIdParamsSchema = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$', description: 'Proxy replica id (Swarm task id or host name).' }) }, { additionalProperties: false })
export const ProxiesAnswerSchema = Type.Object({ proxies: Type.Array(ref(ProxyStatusSchema)) }, { additionalProperties: false })

export const FleetStatusSchema = Type.Object(
  {
    version: Type.Integer({ description: 'Current config version.' }),
    live: Type.Integer(),
    converged: Type.Integer({ description: 'Live proxies that applied the current version.' }),
    laggards: Type.Array(LaggardSchema),
    proxies: Type.Array(
      Type.Object(
        {
          id: Type.String(),
          version: Type.Integer(),
          status: Type.String(),
          node: Type.String(),
          receivedAt: Type.String({ format: 'date-time' }),
          lastError: Type.Union([Type.String(), Type.Null()]),
          applyFailure: Type.Optional(ApplyFailureSchema),
          descriptors: Type.Optional(DescriptorReportSchema),
          oldWorkers: Type.Optional(OldWorkersReportSchema),
          tls: Type.Optional(ProxyTlsReportSchema),
        },
        { additionalProperties: false },
      ),
    ),
    routeHealth: Type.Array(
      Type.Object(
        {
          serviceName: Type.String(),
          up: Type.Integer({ description: 'Servers up on the proxy that has the fewest up.' }),
          down: Type.Integer({ description: 'Servers down (failing their health check) on the proxy that has the most down.' }),
          proxies: Type.Integer({ description: 'Live proxies reporting this route.' }),
          servers: Type.Array(Type.String(), { maxItems: 64, description: "Names of the route's servers (tasks) as the proxies report them, up to 64." }),
        },
        { additionalProperties: false },
      ),
      { description: 'Health of every route as the live proxies report it (health checks on every server: a task on a wrong port shows down).' },
    ),
    refusedRoutes: Type.Array(
      Type.Object({ serviceName: Type.String(), error: Type.String(), proxies: Type.Array(Type.String()) }, { additionalProperties: false }),
      { description: 'Routes some proxy refused (HAProxy rejected the configuration with them), with the error and which proxies.' },
    ),
    shadowedExtras: Type.Optional(
      Type.Array(ref(ShadowedExtraSchema), {
        description: 'Host redirects (redirectFromDomain) and the default backend (isDefaultBackend) asked for by more than one route (Docker Flow Proxy form or labels): who holds each and who does not get it.',
      }),
    ),
    routeProblems: Type.Array(
      Type.Object({ serviceName: Type.String(), problem: Type.String(), proxies: Type.Array(Type.String()) }, { additionalProperties: false }),
      { description: "Routes some proxy serves with something missing (e.g. a usersSecret not mounted in it: nobody can log in there), with the problem and which proxies." },
    ),
    shadowed: Type.Array(ref(ShadowedBindingSchema), {
      description: 'Every binding of the table that another route serves instead (paths shared through the Docker Flow Proxy form or com.df.* labels; Tether\'s own forms refuse them).',
    }),
    tls: TlsStatusSchema,
    releases: Type.Object(
      {
        canaries: Type.Array(
          Type.Object(
            {
              serviceName: Type.String({ description: 'The canary service.' }),
              percent: Type.Integer({ minimum: 1, maximum: 99, description: 'Percent of new sessions on the shared paths sent to its tasks (sessions already pinned stay where they are).' }),
              paths: Type.Array(
                Type.Object(
                  {
                    host: Type.String({ description: "The host ('' for any host)." }),
                    path: Type.String(),
                    sharedWith: Type.String({ description: 'The service that holds this path; the canary gets its share of its new sessions.' }),
                  },
                  { additionalProperties: false },
                ),
                { description: 'The paths it shares. Empty when no other service holds its paths any more (the main route was removed): then it serves them alone.' },
              ),
            },
            { additionalProperties: false },
          ),
        ),
        drains: Type.Array(
          Type.Object(
            {
              serviceName: Type.String({ description: 'The old service: only clients pinned to its tasks still reach them.' }),
              to: Type.String({ description: 'The service that took its paths (takeover=true).' }),
              until: Type.String({ format: 'date-time', description: 'When the drain ends (UTC): then its route is removed and its pinned clients move to `to`.' }),
              secondsLeft: Type.Integer({ minimum: 0, description: 'Seconds until `until` when this answer was made (0: ended, the route is removed within seconds).' }),
            },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false, description: 'Releases in progress (docs/releasing.md): canaries (canary=<percent>) and drains (takeover=true&drain=<seconds>), from the stored table.' },
    ),
    discovery: Type.Optional(
      Type.Object(
        {
          leader: Type.Boolean({ description: 'This replica holds the discovery lease (only the leader writes routes).' }),
          services: Type.Array(ServiceTasksSchema, { description: 'Task inventory of every routed service.' }),
          problems: Type.Array(Type.Object({ serviceName: Type.String(), message: Type.String() }, { additionalProperties: false }), {
            description: 'Labels that cannot become a route, labelled services whose route the API owns, services whose tasks cannot be listed.',
          }),
        },
        { additionalProperties: false, description: 'Swarm discovery (only with TETHER_DISCOVERY=on).' },
      ),
    ),
    stale: Type.Optional(
      Type.Object(
        { asOf: Type.String({ format: 'date-time', description: 'When this replica read this status.' }), reason: Type.String() },
        { additionalProperties: false, description: 'Only while the route store is unavailable: this is the last status read, not the current one (also x-tether-stale: true).' },
      ),
    ),
  },
  { $id: 'FleetStatus', additionalProperties: false },
)

export const HealthAnswerSchema = Type.Object({ status: Type.String({ examples: ['ok'] }) }, { additionalProperties: false })

/** Registered with `app.addSchema`, dependencies first. */
export const sharedSchemas: TSchema[] = [
  DestinationSchema,
  TcpDestinationSchema,
  SniDestinationSchema,
  RouteSchema,
  ConfigSnapshotSchema,
  ChangeEntrySchema,
  ErrorSchema,
  ProxyHeartbeatSchema,
  ProxyStatusSchema,
  ConvergenceSchema,
  ShadowedBindingSchema,
  ShadowedExtraSchema,
  ReconfigureBodySchema,
  RouteBodySchema,
  ReconfigureAnswerSchema,
  RemoveAnswerSchema,
  RouteRecordSchema,
  FleetStatusSchema,
]

const ErrorRef = ref(ErrorSchema)

/** Error responses, documented per route. */
export const errors = {
  400: { ...ErrorRef, description: 'Invalid or unknown parameter (VALIDATION_FAILED, UNKNOWN_PARAMETER); nothing changed.' },
  401: { ...ErrorRef, description: 'Missing or invalid API token: Bearer, or Basic with the token as password and its name as user (UNAUTHORIZED).' },
  404: { ...ErrorRef, description: 'Not found.' },
  409: { ...ErrorRef, description: "ROUTE_CONFLICT: another service holds one of this route's paths (for the same host); the message names the field, the value and the holder. Nothing was stored; takeover=true moves them. LISTENER_CONFLICT: a srcPort that live proxies listen on themselves (HTTP, HTTPS, admin); nothing was stored." },
  413: { ...ErrorRef, description: 'Body larger than 1 MiB (BODY_TOO_LARGE).' },
  503: {
    ...ErrorRef,
    description:
      'STORE_UNAVAILABLE: the route store is unavailable; nothing changed. WRITE_OUTCOME_UNKNOWN (writes only): the write reached the store but was not confirmed in time, so it may or may not have been applied; writes are idempotent, so repeating the request is safe.',
  },
  502: { ...ErrorRef, description: "wait=converged: every live proxy applied the new version but some does not serve this route as asked (ROUTE_NOT_SERVED: a srcPort it cannot bind, a route HAProxy refused, a users secret it lacks; the message names the proxies and the problem); the change is stored." },
  504: { ...ErrorRef, description: 'wait=converged: some live proxy did not apply the new version in time (CONVERGENCE_TIMEOUT, naming them); the change is stored.' },
} as const

/** OpenAPI security requirement of routes that take a token. */
export const bearer = [{ bearerAuth: [] as string[] }]
