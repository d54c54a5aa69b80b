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

export const RouteProblemSchema = Type.Object(
  {
    serviceName: ServiceNameSchema,
    problem: Type.String({ maxLength: 1024, description: "What this proxy could not honour for the route, and what it does instead (e.g. a usersSecret it does not have mounted: nobody can log in)." }),
  },
  { additionalProperties: false },
)
export type RouteProblem = Static<typeof RouteProblemSchema>

export const ServerHealthSchema = Type.Object(
  {
    name: Type.String({ maxLength: 256, description: "HAProxy's server name: the task's name (from Docker's DNS), else its address; host:port for a fixed endpoint." }),
    status: Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('maint')], { description: 'From the health check (down: the check fails, e.g. nothing listens on the port).' }),
  },
  { additionalProperties: false },
)

export const BackendHealthSchema = Type.Object(
  {
    serviceName: ServiceNameSchema,
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    up: Type.Integer({ minimum: 0, description: 'Servers whose health check passes.' }),
    down: Type.Integer({ minimum: 0, description: 'Servers whose health check fails (or in maintenance).' }),
    servers: Type.Optional(
      Type.Array(ServerHealthSchema, {
        maxItems: 1000,
        description: 'The servers (tasks) behind the counts. Left out for backends whose servers are all up when the proxy serves more than 2,000 backends, to keep heartbeats small.',
      }),
    ),
  },
  { additionalProperties: false },
)

export const DescriptorReportSchema = Type.Object(
  {
    needed: Type.Integer({ minimum: 0, description: 'File descriptors HAProxy needs for this table: 2 × maxconn wanted + 1 per health-checked server + a fixed part.' }),
    limit: Type.Integer({ minimum: 0, description: 'The hard nofile limit HAProxy runs under.' }),
    maxconn: Type.Integer({ minimum: 0, description: 'The connection limit rendered (lowered by the proxy when the limit is too low, unless TETHER_MAXCONN set it).' }),
    servers: Type.Integer({ minimum: 0 }),
    checkedServers: Type.Integer({ minimum: 0, description: 'Servers with a health check; fewer than servers only when the limit cannot hold them.' }),
    problem: Type.Union([Type.String({ maxLength: 1024 }), Type.Null()], { description: 'What the proxy had to give up, or why HAProxy will refuse, and what to do; null when everything fits.' }),
  },
  { additionalProperties: false, description: "File descriptors of the proxy's HAProxy: what the table needs and the limit it runs under." },
)
export type DescriptorReport = Static<typeof DescriptorReportSchema>

export const ApplyFailureSchema = Type.Object(
  {
    version: Type.Integer({ minimum: 0, description: 'The newest version the proxy tried and could not apply.' }),
    message: Type.String({ maxLength: 4096, description: "Why, in HAProxy's own words when HAProxy refused (e.g. \"Cannot raise FD limit to 20209, limit is 20000.\")." }),
    attempts: Type.Integer({ minimum: 1, description: 'Failed attempts in a row.' }),
    nextAttemptAt: Type.String({ format: 'date-time', description: 'When the proxy tries again (backing off; a newer version waits for it too).' }),
  },
  { additionalProperties: false, description: 'Set while the proxy cannot apply the current table for a reason other than a refused route; it keeps serving the version it has.' },
)

export const ProxyTlsReportSchema = Type.Object(
  {
    certificates: Type.Integer({ minimum: 0, description: 'Certificates served by SNI: from the control plane and from files in the proxy (the default one not counted).' }),
    defaultOnly: Type.Boolean({ description: 'True when there is none: HTTPS answers every name with the self-signed default certificate (clients see a certificate error).' }),
    files: Type.Array(
      Type.Object(
        {
          name: Type.String({ maxLength: 256 }),
          file: Type.String({ maxLength: 1024, description: 'Where the proxy read it (a Docker secret under /run/secrets, or TETHER_PROXY_CERT_DIR).' }),
          domains: Type.Array(Type.String({ maxLength: 253 }), { maxItems: 1000 }),
          notAfter: Type.String({ format: 'date-time' }),
          fingerprint: Type.String({ maxLength: 128 }),
        },
        { additionalProperties: false },
      ),
      { maxItems: 1000, description: "Certificates from the proxy's own files (Docker secrets), served beside the control plane's." },
    ),
    problems: Type.Array(
      Type.Object({ file: Type.String({ maxLength: 1024 }), error: Type.String({ maxLength: 1024 }) }, { additionalProperties: false }),
      { maxItems: 1000, description: 'Certificate files not served, and why (the others are).' },
    ),
  },
  { additionalProperties: false, description: "The proxy's HTTPS listener: what it serves, and what it could not load." },
)
export type ProxyTlsReport = Static<typeof ProxyTlsReportSchema>

export const ProxyListenerSchema = Type.Object(
  {
    kind: Type.Union([Type.Literal('http'), Type.Literal('https'), Type.Literal('admin')], { description: 'http: TETHER_PROXY_LISTEN, https: TETHER_PROXY_LISTEN_TLS, admin: TETHER_ADMIN_LISTEN (stats, /healthz).' }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
  },
  { additionalProperties: false },
)
export type ProxyListener = Static<typeof ProxyListenerSchema>

export const OldWorkersReportSchema = Type.Object(
  {
    count: Type.Integer({ minimum: 0, description: 'Previous HAProxy workers still draining connections after reloads.' }),
    connections: Type.Integer({ minimum: 0, description: 'Connections they hold (WebSockets, streams, TCP sessions), summed over those that answered.' }),
    oldestAgeSeconds: Type.Integer({ minimum: 0, description: 'Seconds since the oldest of them started.' }),
    maxCount: Type.Integer({ minimum: 0, description: 'TETHER_MAX_OLD_WORKERS: past it the proxy stops the oldest (0: no bound by count).' }),
    drainTimeoutSeconds: Type.Integer({ minimum: 0, description: 'TETHER_DRAIN_TIMEOUT: an old worker closes its connections this long after the reload that replaced it (0: never).' }),
    workers: Type.Array(
      Type.Object(
        {
          pid: Type.Integer({ minimum: 1 }),
          reloads: Type.Integer({ minimum: 0, description: 'Reloads it has survived.' }),
          ageSeconds: Type.Integer({ minimum: 0, description: 'Seconds since it started.' }),
          connections: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description: 'Connections it holds; null when it did not answer.' }),
        },
        { additionalProperties: false },
      ),
      { maxItems: 1000 },
    ),
  },
  { additionalProperties: false, description: "HAProxy's previous workers still draining long-lived connections after reloads: how many, their connections and age, and the bounds in force." },
)
export type OldWorkersReport = Static<typeof OldWorkersReportSchema>

export const RouteTrafficSchema = Type.Object(
  {
    serviceName: ServiceNameSchema,
    requests: Type.Integer({ minimum: 0, description: 'HTTP responses since the proxy started (carried over HAProxy reloads), every status class.' }),
    errors: Type.Integer({ minimum: 0, description: 'Of them, 5xx.' }),
    connections: Type.Integer({ minimum: 0, description: 'Connections open now (WebSockets and TCP sessions included).' }),
    durations: Type.Optional(
      Type.Array(Type.Integer({ minimum: 0 }), {
        maxItems: 32,
        description: 'Requests counted in each latency bucket (cumulative, the bounds of tether_route_request_duration_seconds, then +Inf), since the proxy started; absent without the JSON access log.',
      }),
    ),
    tasks: Type.Array(Type.Object({ name: Type.String({ maxLength: 256 }), connections: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }), {
      maxItems: 1000,
      description: 'Connections open now per task (HAProxy server) of the route.',
    }),
  },
  { additionalProperties: false },
)
export type RouteTraffic = Static<typeof RouteTrafficSchema>

export const ProxyTrafficSchema = Type.Object(
  {
    connections: Type.Integer({ minimum: 0, description: "Connections HAProxy's current worker holds now." }),
    reloads: Type.Integer({ minimum: 0, description: 'HAProxy reloads since the proxy started.' }),
    droppedLogLines: Type.Integer({ minimum: 0, description: 'Access-log lines dropped since the proxy started (a slow reader of its output).' }),
    durationBounds: Type.Array(Type.Number({ minimum: 0 }), { maxItems: 31, description: 'Upper bounds (seconds) of the latency buckets of each route\'s durations, +Inf not listed.' }),
    routes: Type.Array(RouteTrafficSchema, { maxItems: 2000, description: 'Per route with traffic, the busiest 2,000 (a heartbeat must stay small).' }),
  },
  { additionalProperties: false, description: "The proxy's traffic counters, for the dashboard (Prometheus reads the same on /metrics/tether)." },
)
export type ProxyTraffic = Static<typeof ProxyTrafficSchema>

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
    descriptors: Type.Optional(DescriptorReportSchema),
    oldWorkers: Type.Optional(OldWorkersReportSchema),
    applyFailure: Type.Optional(ApplyFailureSchema),
    tls: Type.Optional(ProxyTlsReportSchema),
    routeProblems: Type.Optional(Type.Array(RouteProblemSchema, { maxItems: 10000, description: 'Routes this proxy serves with something missing (see each problem).' })),
    traffic: Type.Optional(ProxyTrafficSchema),
    listeners: Type.Optional(Type.Array(ProxyListenerSchema, { maxItems: 3, description: "The proxy's own listeners: a TCP route cannot use their ports (the control plane refuses such a write with 409 LISTENER_CONFLICT)." })),
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
