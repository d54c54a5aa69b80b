/**
 * `tether proxy` configuration: one TypeBox schema for the environment gives the type and the
 * boot-time validation. A wrong value fails at start with a message naming the variable.
 */
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { Type, type Static } from 'typebox'
import { EnvError, loadEnv, LogLevelEnv, logLevelOf, type LogLevel } from '../shared/env.ts'
import { LogFormatEnv, logFormatOf, type LogFormat } from '../shared/create-logger.ts'
import { ProxyIdSchema } from '../contracts/proxy-status.ts'
import { statsAuthPattern } from './haproxy/settings.ts'
import { cidrProblem } from '../shared/cidr.ts'

import { HOST_PORT_PATTERN as DNS_PATTERN, LISTEN_PATTERN, parseListen, formatListen, type Listen } from './listen.ts'
/** One or more http(s) URLs separated by commas. */
const CONTROL_URL_PATTERN = '^\\s*https?://[^\\s,]+(?:\\s*,\\s*https?://[^\\s,]+)*\\s*$'

export const ProxyEnvSchema = Type.Object({
  TETHER_CONTROL_URL: Type.String({
    pattern: CONTROL_URL_PATTERN,
    description:
      'Control plane URL(s), comma-separated. A host name is resolved to every address it has (e.g. http://tasks.control:8080 on Swarm), and the agent fails over between all of them.',
  }),
  TETHER_PROXY_TOKEN: Type.Optional(Type.String({ minLength: 1, description: 'Bearer token for /v1/config and /v1/proxies.' })),
  TETHER_PROXY_TOKEN_FILE: Type.Optional(Type.String({ minLength: 1, description: 'File holding the proxy token (Docker secret).' })),
  TETHER_PROXY_ID: Type.Optional({ ...ProxyIdSchema, description: 'This replica\'s id in the fleet status. Default: the Swarm task id (TASK_ID / TETHER_TASK_ID) or the host name.' }),
  TETHER_TASK_ID: Type.Optional(Type.String({ description: "The Swarm task id, the proxy id's default; Swarm does not set it by itself: give it in the service (TETHER_TASK_ID={{.Task.ID}})." })),
  TASK_ID: Type.Optional(Type.String({ description: 'The same as TETHER_TASK_ID (read when TETHER_TASK_ID is unset).' })),
  TETHER_PROXY_LISTEN: Type.String({ pattern: LISTEN_PATTERN, default: ':80', description: 'HTTP listener for the routed traffic. Default :80.' }),
  TETHER_PROXY_LISTEN_TLS: Type.String({
    pattern: `^(?:${LISTEN_PATTERN.slice(1, -1)}|off)$`,
    default: ':443',
    description: "HTTPS listener for the routed traffic (certificates by SNI; a self-signed default until one covers a name), or 'off'. Default :443.",
  }),
  TETHER_CERT_DIR: Type.Optional(Type.String({ minLength: 1, description: 'A directory whose every file is a certificate (chain and key as one PEM), read again every 30 s. Default: none.' })),
  TETHER_ADMIN_LISTEN: Type.String({ pattern: LISTEN_PATTERN, default: ':8404', description: 'Admin listener: stats, /metrics, /healthz. Default :8404.' }),
  TETHER_DNS: Type.String({ pattern: DNS_PATTERN, default: '127.0.0.11:53', description: "DNS server the proxy asks for tasks.<service> and task names. Default Docker's embedded DNS 127.0.0.11:53." }),
  TETHER_DNS_INTERVAL_MS: Type.Integer({ minimum: 100, maximum: 60_000, default: 1000, description: 'Pause between two rounds of task discovery over every routed service. Default 1000 ms.' }),
  TETHER_SPARE_BACKENDS: Type.Integer({
    minimum: 0,
    maximum: 256,
    default: 8,
    description:
      'Spare backends of each kind (sticky, not sticky) kept empty once the table holds 1,000 routes: a new route with one plain destination is served from one over the runtime API instead of a reload (2 s and more at 10,000 routes); the next reload gives it its own backend. 0: none. Default 8.',
  }),
  TETHER_DRAIN_TIMEOUT: Type.Integer({
    minimum: 0,
    maximum: 604_800,
    default: 3600,
    description:
      "Seconds an old HAProxy worker keeps its connections (WebSockets, streamed responses, TCP sessions) after a reload before they are closed (HAProxy's hard-stop-after). 0: as long as the connections live. Default 3600 (1 h, as the WebSocket idle timeout).",
  }),
  TETHER_MAX_OLD_WORKERS: Type.Integer({
    minimum: 0,
    maximum: 1000,
    default: 10,
    description: 'Old HAProxy workers still draining connections after reloads kept at most; past it the oldest is stopped at once (its connections close). 0: no bound by count. Default 10.',
  }),
  TETHER_CLIENT_MAX_CONNECTIONS: Type.Integer({
    minimum: 0,
    maximum: 10_000_000,
    default: 1000,
    description: 'Connections one client address may hold open at once on the HTTP/HTTPS listeners; more are closed at once. 0: no limit (set it behind a load balancer that does not keep client addresses). Default 1000.',
  }),
  TETHER_CLIENT_MAX_REQUEST_RATE: Type.Integer({
    minimum: 0,
    maximum: 100_000_000,
    default: 0,
    description: 'Requests one client address may send in 10 seconds on the HTTP/HTTPS listeners; past it requests answer 429 with Retry-After. 0: no limit (the default: behind a load balancer or a large NAT one address carries many users).',
  }),
  TETHER_MAX_BODY_SIZE: Type.Integer({
    minimum: 0,
    maximum: 1_099_511_627_776,
    default: 0,
    description:
      'Largest request body, in bytes, of every HTTP route without a bodyLimit of its own: a request whose Content-Length is over it is answered 413 before the service sees anything. A body sent without Content-Length (chunked) is not limited. 0: no limit (the default).',
  }),
  TETHER_TRUSTED_PROXIES: Type.String({
    default: '',
    description:
      "Balancers in front of the proxies whose word on the client address is believed: IPv4/IPv6 addresses or CIDR blocks, separated by commas or spaces (e.g. 10.0.0.0/8). From them the client is the rightmost X-Forwarded-For address (or the PROXY header, TETHER_PROXY_PROTOCOL=on); ipAllow/ipDeny, rate limits and the access log use it. From any other peer X-Forwarded-For changes nothing. Default: none.",
  }),
  TETHER_PROXY_PROTOCOL: Type.Union([Type.Literal('on'), Type.Literal('off')], {
    default: 'off',
    description: 'on: the trusted proxies (TETHER_TRUSTED_PROXIES, required) send a PROXY protocol header (v1 or v2) on the HTTP/HTTPS listeners, and X-Forwarded-For is not read; other peers send none. Default off.',
  }),
  TETHER_MAXCONN: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 10_000_000, description: "HAProxy's maxconn. Default 4096, lowered by the proxy when the descriptor limit cannot hold it with every server; a value set here is never lowered." }),
  ),
  TETHER_COOKIE_KEY: Type.Optional(Type.String({ minLength: 8, description: 'dynamic-cookie-key; every replica must share it. Required (or _FILE).' })),
  TETHER_COOKIE_KEY_FILE: Type.Optional(Type.String({ minLength: 1, description: 'File holding the cookie key (Docker secret).' })),
  TETHER_STATS_AUTH: Type.Optional(Type.String({ description: "user:password HAProxy's stats page (/stats on the admin listener) asks for. Unset: the page is open." })),
  TETHER_STATS_AUTH_FILE: Type.Optional(Type.String({ minLength: 1, description: 'File holding TETHER_STATS_AUTH (Docker secret).' })),
  TETHER_STATE_DIR: Type.String({ minLength: 1, default: '/var/lib/tether', description: 'Where the last known good snapshot and HAProxy files live. Mount a volume here. Default /var/lib/tether.' }),
  TETHER_SECRETS_DIR: Type.String({
    minLength: 1,
    default: '/run/secrets',
    description:
      "Where the proxy's Docker secrets are mounted: basic-auth users of routes with usersSecret=S are read from dfp_users_S there, and files named cert-* or cert_* are certificates (chain and key as one PEM, Docker Flow Proxy's convention) served beside the control plane's. Default /run/secrets.",
  }),
  TETHER_SLOTS: Type.Optional(Type.String({ description: 'Deprecated and ignored: servers follow the real tasks, there are no slots.' })),
  TETHER_NODE: Type.Optional(Type.String({ minLength: 1, maxLength: 253, description: 'Node name shown in the fleet status. Default: the host name.' })),
  TETHER_HEARTBEAT_MS: Type.Integer({ minimum: 100, maximum: 60_000, default: 5000, description: 'Heartbeat interval. Default 5000 ms.' }),
  TETHER_CONTROL_LIVENESS_TIMEOUT_MS: Type.Integer({
    minimum: 1000,
    maximum: 60_000,
    default: 1500,
    description:
      'Longest silence accepted from the control replica a long poll waits on (it writes a heartbeat every 500 ms): past it the replica counts as hung and the agent moves to another (a heartbeat PUT gets twice as long). Default 1500 ms.',
  }),
  TETHER_ACCESS_LOG: Type.Union([Type.Literal('json'), Type.Literal('text'), Type.Literal('off')], {
    default: 'json',
    description:
      "Access log on the proxy's standard output, one line per HTTP request and TCP session: 'json' (one object a line, the default), 'text' (for terminals) or 'off'. Never written: cookies, Authorization, query values (see TETHER_ACCESS_LOG_QUERY).",
  }),
  TETHER_ACCESS_LOG_QUERY: Type.Union([Type.Literal('on'), Type.Literal('off')], {
    default: 'off',
    description: "'on' writes query strings as sent; default 'off' keeps the names only (token=[redacted]).",
  }),
  TETHER_HAPROXY_BIN: Type.String({ minLength: 1, default: 'haproxy', description: "HAProxy executable. Default 'haproxy' from PATH." }),
  ...LogLevelEnv,
  ...LogFormatEnv,
})
export type ProxyEnv = Static<typeof ProxyEnvSchema>

export { parseListen, formatListen, type Listen }

/** The agent's typed configuration, after defaults and files are resolved. */
export interface ProxyConfig {
  controlUrls: string[]
  proxyToken: string
  proxyId: string
  proxyListen: Listen
  /** null: no HTTPS listener (TETHER_PROXY_LISTEN_TLS=off). */
  tlsListen: Listen | null
  /** Certificates from files: Docker secrets cert-* (TETHER_SECRETS_DIR) and TETHER_CERT_DIR. */
  certificateFiles: { secretsDir: string; dir: string | undefined }
  adminListen: Listen
  dns: { host: string; port: number }
  dnsIntervalMs: number
  spareBackends: number
  /** TETHER_DRAIN_TIMEOUT in seconds; 0: no limit. */
  drainTimeoutSeconds: number
  maxOldWorkers: number
  /** Per-client-address limits on the HTTP/HTTPS frontend; 0: none. */
  clientMaxConnections: number
  clientMaxRequestRate: number
  maxBodySize: number
  /** TETHER_TRUSTED_PROXIES: addresses and CIDR blocks of the balancers in front (empty: none). */
  trustedProxies: string[]
  /** TETHER_PROXY_PROTOCOL=on: the trusted proxies send a PROXY header. */
  proxyProtocol: boolean
  /** undefined: the default, which the proxy may lower to fit the descriptor limit. */
  maxconn: number | undefined
  cookieKey: string
  /** TETHER_STATS_AUTH(_FILE): user:password for the stats page; undefined: open. */
  statsAuth: string | undefined
  stateDir: string
  /** TETHER_SECRETS_DIR: where dfp_users_* secrets are read. */
  secretsDir: string
  /** Warnings about deprecated settings, logged at start. */
  deprecations: string[]
  node: string
  heartbeatMs: number
  /** TETHER_CONTROL_LIVENESS_TIMEOUT_MS. */
  controlLivenessTimeoutMs: number
  haproxyBin: string
  /** TETHER_ACCESS_LOG and TETHER_ACCESS_LOG_QUERY. */
  accessLog: { format: 'json' | 'text' | 'off'; query: boolean }
  logLevel: LogLevel
  logFormat: LogFormat
}



type SecretName = 'TETHER_PROXY_TOKEN' | 'TETHER_COOKIE_KEY' | 'TETHER_STATS_AUTH'

function readSecret(env: ProxyEnv, name: SecretName, fileName: `${SecretName}_FILE`, readFile: (path: string) => string): string | undefined {
  const direct = env[name]
  const file = env[fileName]
  if (direct !== undefined && file !== undefined) throw new EnvError(name, `set either ${name} or ${fileName}, not both`)
  if (file === undefined) return direct
  try {
    const text = readFile(file).trim()
    if (text === '') throw new EnvError(fileName, `file '${file}' is empty`)
    return text
  } catch (error) {
    if (error instanceof EnvError) throw error
    throw new EnvError(fileName, `cannot read '${file}': ${(error as Error).message}`)
  }
}

export interface LoadOptions {
  /** Injected for tests. Default readFileSync(path, 'utf8'). */
  readFile?: (path: string) => string
  /** Injected for tests. Default os.hostname(). */
  hostname?: () => string
}

/**
 * Validates the environment and returns the agent's configuration. Throws `EnvError`
 * naming the first variable at fault. Unrelated variables are ignored.
 */
export function loadProxyConfig(env: Record<string, string | undefined>, options: LoadOptions = {}): ProxyConfig {
  const readFile = options.readFile ?? ((path: string) => readFileSync(path, 'utf8'))
  const host = (options.hostname ?? hostname)()
  const value = loadEnv(ProxyEnvSchema, env, { secret: ['TETHER_PROXY_TOKEN', 'TETHER_COOKIE_KEY', 'TETHER_STATS_AUTH'] })
  const known = value
  const proxyToken = readSecret(known, 'TETHER_PROXY_TOKEN', 'TETHER_PROXY_TOKEN_FILE', readFile)
  if (proxyToken === undefined) throw new EnvError('TETHER_PROXY_TOKEN', 'required (or TETHER_PROXY_TOKEN_FILE): the bearer token the control plane expects from proxies')
  const cookieKey = readSecret(known, 'TETHER_COOKIE_KEY', 'TETHER_COOKIE_KEY_FILE', readFile)
  if (cookieKey === undefined) {
    throw new EnvError('TETHER_COOKIE_KEY', 'required (or TETHER_COOKIE_KEY_FILE): the dynamic cookie key, the same on every proxy replica so that any replica honours a cookie issued by another')
  }
  if (cookieKey.length < 8) throw new EnvError('TETHER_COOKIE_KEY', 'must be at least 8 characters')
  const trustedProxies = value.TETHER_TRUSTED_PROXIES.split(/[\s,]+/).filter((c) => c !== '')
  for (const c of trustedProxies) {
    const problem = cidrProblem(c)
    if (problem !== null) throw new EnvError('TETHER_TRUSTED_PROXIES', `'${c}' ${problem}`)
  }
  if (trustedProxies.length > 64) throw new EnvError('TETHER_TRUSTED_PROXIES', `has ${trustedProxies.length} entries; at most 64 (use CIDR blocks)`)
  if (value.TETHER_PROXY_PROTOCOL === 'on' && trustedProxies.length === 0) throw new EnvError('TETHER_PROXY_PROTOCOL', 'on needs TETHER_TRUSTED_PROXIES: the balancers allowed to send a PROXY header')
  if (/[\s"'\\#]/.test(cookieKey)) throw new EnvError('TETHER_COOKIE_KEY', 'must not contain spaces, quotes, backslashes or #')
  const statsAuth = readSecret(known, 'TETHER_STATS_AUTH', 'TETHER_STATS_AUTH_FILE', readFile)
  // A password that cannot be used is refused, never dropped: the stats page would be open.
  if (statsAuth !== undefined && !statsAuthPattern.test(statsAuth)) {
    throw new EnvError(known.TETHER_STATS_AUTH_FILE === undefined ? 'TETHER_STATS_AUTH' : 'TETHER_STATS_AUTH_FILE', 'must be user:password, the user of letters, digits and . _ ~ - (at most 64), the password 12-256 letters, digits and . _ ~ + / = - (e.g. printf \'stats:%s\' "$(openssl rand -hex 24)")')
  }

  const controlUrls = value.TETHER_CONTROL_URL.split(',').map((u) => u.trim())
  for (const url of controlUrls) {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      throw new EnvError('TETHER_CONTROL_URL', `'${url}' is not a URL`)
    }
    // The URLs are logged (at start, in every control-plane error): no credentials in them, and
    // none are needed (TETHER_PROXY_TOKEN is sent as a header). The message does not repeat them.
    if (parsed.username !== '' || parsed.password !== '' || parsed.search !== '' || parsed.hash !== '') {
      throw new EnvError('TETHER_CONTROL_URL', `a control plane URL must not carry a user or password, a query or a fragment (${parsed.protocol}//${parsed.host}${parsed.pathname === '/' ? '' : parsed.pathname} is enough: the proxy authenticates with TETHER_PROXY_TOKEN, sent as a header, never in a URL)`)
    }
  }
  // Swarm sets neither variable by itself; a service template such as
  // `TETHER_TASK_ID={{.Task.ID}}` does. Otherwise the container's host name is its short id.
  const proxyId = value.TETHER_PROXY_ID ?? value.TETHER_TASK_ID ?? value.TASK_ID ?? host
  if (!new RegExp((ProxyIdSchema as { pattern?: string }).pattern ?? '').test(proxyId)) {
    throw new EnvError('TETHER_PROXY_ID', `the default id '${proxyId}' (task id or host name) is not a valid proxy id; set TETHER_PROXY_ID`)
  }
  const dnsListen = parseListen(value.TETHER_DNS)
  const logLevel = logLevelOf(value)
  return {
    controlUrls,
    proxyToken,
    proxyId,
    proxyListen: parseListen(value.TETHER_PROXY_LISTEN),
    tlsListen: value.TETHER_PROXY_LISTEN_TLS === 'off' ? null : parseListen(value.TETHER_PROXY_LISTEN_TLS),
    certificateFiles: { secretsDir: value.TETHER_SECRETS_DIR, dir: value.TETHER_CERT_DIR },
    adminListen: parseListen(value.TETHER_ADMIN_LISTEN),
    dns: { host: dnsListen.host ?? '127.0.0.11', port: dnsListen.port },
    dnsIntervalMs: value.TETHER_DNS_INTERVAL_MS,
    spareBackends: value.TETHER_SPARE_BACKENDS,
    maxconn: value.TETHER_MAXCONN,
    drainTimeoutSeconds: value.TETHER_DRAIN_TIMEOUT,
    maxOldWorkers: value.TETHER_MAX_OLD_WORKERS,
    clientMaxConnections: value.TETHER_CLIENT_MAX_CONNECTIONS,
    clientMaxRequestRate: value.TETHER_CLIENT_MAX_REQUEST_RATE,
    maxBodySize: value.TETHER_MAX_BODY_SIZE,
    trustedProxies,
    proxyProtocol: value.TETHER_PROXY_PROTOCOL === 'on',
    cookieKey,
    statsAuth,
    stateDir: value.TETHER_STATE_DIR,
    secretsDir: value.TETHER_SECRETS_DIR,
    deprecations: [
      ...logLevel.deprecations,
      ...(value.TETHER_SLOTS === undefined
        ? []
        : ['TETHER_SLOTS is deprecated and ignored: each proxy now holds exactly the running tasks of a service, found through DNS, with no slot limit. Remove it.']),
    ],
    node: value.TETHER_NODE ?? host,
    heartbeatMs: value.TETHER_HEARTBEAT_MS,
    controlLivenessTimeoutMs: value.TETHER_CONTROL_LIVENESS_TIMEOUT_MS,
    haproxyBin: value.TETHER_HAPROXY_BIN,
    accessLog: { format: value.TETHER_ACCESS_LOG, query: value.TETHER_ACCESS_LOG_QUERY === 'on' },
    logLevel: logLevel.level,
    logFormat: logFormatOf(value),
  }
}

export { EnvError }
