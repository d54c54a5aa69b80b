/**
 * What the HAProxy engine needs to know besides the snapshot. Everything the rendered
 * configuration depends on is here, so `renderConfig(snapshot, settings)` stays pure.
 */

import { silentLogger, type Logger } from '../../shared/logger.ts'
import { cidrProblem } from '../../shared/cidr.ts'
import { ACCESS_LOG_FORMATS, type AccessLogSettings } from './access-log.ts'
import { isListen } from '../listen.ts'

export interface HaproxyEngineSettings {
  /** HAProxy executable. Default 'haproxy' (from PATH). */
  haproxyBin?: string
  /**
   * Directory the engine owns: haproxy.cfg, map files, the admin and master sockets, the pid
   * file and the server-state file. Created if missing. One engine per directory.
   */
  stateDir: string
  /** HTTP listener, `[host]:port`. Default ':80'. */
  listen?: string
  /** Admin listener (/stats, /metrics, /healthz, /readyz), `[host]:port`. Default ':8404'. */
  adminListen?: string
  /** DNS servers the proxy asks for tasks.<service> (and PTR names of tasks), `host:port`. Default Docker's ['127.0.0.11:53']. */
  resolvers?: string[]
  /** Pause between two rounds of DNS queries over every routed service. Default 1000 ms. */
  dnsIntervalMs?: number
  /**
   * dynamic-cookie-key: every proxy replica must share it so a cookie issued by one replica is
   * honoured by all. Printable ASCII without quotes, backslash or spaces, 8-256 characters.
   */
  cookieKey: string
  /**
   * `user:password` that HAProxy's stats page (/stats on the admin listener) asks for (basic
   * auth). Unset: the page is open, so the admin port must not be reachable from outside.
   * /healthz, /readyz and /metrics never ask for it (health checks, Prometheus).
   */
  statsAuth?: string
  /** Add `secure` to affinity cookies (set when HAProxy sits behind TLS). Default false. */
  secureCookie?: boolean
  /**
   * Global maxconn. Default 4096, lowered by the proxy when the descriptor limit cannot hold it
   * with every server (see descriptors.ts); a value set here is never lowered.
   */
  maxconn?: number
  /**
   * The hard nofile limit HAProxy must stay under. Default: this process's own (HAProxy inherits
   * it). Set lower, it is also written as HAProxy's `fd-hard-limit`.
   */
  descriptorLimit?: number
  /**
   * HTTPS listener, `[host]:port`, on the same routing frontend (every route answers on both).
   * Undefined: no HTTPS. Certificates come with `certificates.set()`; until one covers a name,
   * a self-signed default certificate answers.
   */
  tlsListen?: string
  /**
   * Certificates from the proxy's own files, served beside the control plane's: Docker
   * secrets named cert-* / cert_* in `secretsDir` (Docker Flow Proxy's convention) and every
   * file of `dir`. Default: none. A bad file is reported and left out.
   */
  certificateFiles?: { secretsDir?: string | undefined; dir?: string | undefined }
  /** How often those files are read again (a directory may change). Default 30000 ms. */
  certificateFilesIntervalMs?: number
  /** nbthread; default: HAProxy's own (one per CPU). */
  nbthread?: number
  /**
   * hard-stop-after in ms: how long an old worker may keep its connections (WebSockets, streams,
   * TCP sessions) after a reload before HAProxy closes them. Default 3,600,000 (1 h, as
   * `timeout tunnel`); 0: no limit, an old worker lives as long as its connections do.
   */
  hardStopAfterMs?: number
  /** mworker-max-reloads: old workers that survived this many reloads are killed. Default 50. */
  maxReloads?: number
  /**
   * Old workers (still draining connections after reloads) kept at most; past it the engine
   * stops the oldest at once (its connections close). Default 10; 0: no bound by count.
   */
  maxOldWorkers?: number
  /**
   * Connections one client address may hold open at once on the HTTP/HTTPS frontend; one more
   * is closed at once. Default 1000; 0: no limit (behind a balancer every client has its address).
   */
  clientMaxConnections?: number
  /**
   * Requests one client address may send in 10 s on the HTTP/HTTPS frontend; past it requests
   * answer 429 (with Retry-After) until the rate falls. Default 0: no limit. Off by default because
   * one address can carry a whole office (NAT) or every client (a balancer in front), and a rate
   * that blocks them is worse than none; the connection limit is what stops one client holding
   * the proxy (bench/slow-clients.ts).
   */
  clientMaxRequestRate?: number
  /**
   * The request body limit, in bytes, of every HTTP route without a bodyLimit of its own: a
   * Content-Length over it is answered 413. Default 0: no limit.
   */
  maxBodySize?: number
  /**
   * Peers (IPv4/IPv6 addresses or CIDR blocks) whose word on the client address is believed: a
   * balancer in front. From them the client is the rightmost address of X-Forwarded-For, or the
   * PROXY protocol header (proxyProtocol); ipAllow/ipDeny, rate limits and the access log use it.
   * From any other peer X-Forwarded-For changes nothing. Default none.
   */
  trustedProxies?: readonly string[]
  /** The trusted proxies send a PROXY protocol header (v1 or v2) instead of X-Forwarded-For. Default false. */
  proxyProtocol?: boolean
  /**
   * Spare backends of each kind (sticky, not sticky) rendered empty once the table holds
   * spareFromRoutes routes or more. A new route with one plain destination (no domain, no
   * rules) is then served from a free one over the runtime API (`add server`, `add map`)
   * instead of a reload, which at 10,000 routes takes HAProxy 2.6 two seconds and more; the
   * next reload gives it its own backend. 0: no spares. Default 8.
   */
  spareBackends?: number
  /** The table size from which spare backends are rendered. Default 1000 (below, a reload is quick). */
  spareFromRoutes?: number
  /**
   * The access log (one line per request and TCP session, on HAProxy's standard output) and what
   * each line says of the proxy. Default { format: 'off' } (the proxy turns it on: TETHER_ACCESS_LOG).
   */
  accessLog?: AccessLogSettings
  /**
   * The file descriptor HAProxy gets as its standard output, where the access log goes (see
   * accessLogOutput() in access-log.ts). Default: a pipe this process reads HAProxy's messages from.
   */
  accessLogOutput?: number
  /** Supervision: restart delay after HAProxy dies, doubled each time up to max. Default 200 / 10000 ms. */
  restartBackoffMs?: { min: number; max: number }
  logger?: Logger
}

export type ResolvedSettings = Required<Omit<HaproxyEngineSettings, 'nbthread' | 'logger' | 'descriptorLimit' | 'tlsListen' | 'statsAuth' | 'certificateFiles' | 'accessLogOutput'>> & {
  accessLogOutput: number | undefined
  certificateFiles: { secretsDir?: string | undefined; dir?: string | undefined }
  statsAuth: string | undefined
  nbthread: number | undefined
  logger: Logger
  /** Whether maxconn was set (then never lowered). */
  maxconnFixed: boolean
  /** Set only when given: rendered as fd-hard-limit. */
  descriptorLimit: number | undefined
  tlsListen: string | undefined
}


const hostPortPattern = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?:[1-9][0-9]{0,4})$/
const cookieKeyPattern = /^[\x21-\x7e]{8,256}$/
/** user:password, both plain tokens: nothing HAProxy's config parser would read as a quote, escape, comment or separator. */
export const statsAuthPattern = /^[A-Za-z0-9._~-]{1,64}:[A-Za-z0-9._~+/=-]{12,256}$/

/** Fills defaults and checks every setting; throws a TypeError naming the bad one (at boot). */
export function resolveSettings(settings: HaproxyEngineSettings): ResolvedSettings {
  const resolved: ResolvedSettings = {
    haproxyBin: settings.haproxyBin ?? 'haproxy',
    stateDir: settings.stateDir,
    listen: settings.listen ?? ':80',
    adminListen: settings.adminListen ?? ':8404',
    resolvers: settings.resolvers ?? ['127.0.0.11:53'],
    cookieKey: settings.cookieKey,
    dnsIntervalMs: settings.dnsIntervalMs ?? 1000,
    secureCookie: settings.secureCookie ?? false,
    statsAuth: settings.statsAuth,
    maxconn: settings.maxconn ?? 4096,
    maxconnFixed: settings.maxconn !== undefined,
    descriptorLimit: settings.descriptorLimit,
    tlsListen: settings.tlsListen,
    certificateFiles: settings.certificateFiles ?? {},
    certificateFilesIntervalMs: settings.certificateFilesIntervalMs ?? 30_000,
    nbthread: settings.nbthread,
    hardStopAfterMs: settings.hardStopAfterMs ?? 3_600_000,
    maxReloads: settings.maxReloads ?? 50,
    maxOldWorkers: settings.maxOldWorkers ?? 10,
    clientMaxConnections: settings.clientMaxConnections ?? 1000,
    clientMaxRequestRate: settings.clientMaxRequestRate ?? 0,
    maxBodySize: settings.maxBodySize ?? 0,
    trustedProxies: settings.trustedProxies ?? [],
    proxyProtocol: settings.proxyProtocol ?? false,
    spareBackends: settings.spareBackends ?? 8,
    spareFromRoutes: settings.spareFromRoutes ?? 1000,
    restartBackoffMs: settings.restartBackoffMs ?? { min: 200, max: 10_000 },
    accessLog: settings.accessLog ?? { format: 'off' },
    accessLogOutput: settings.accessLogOutput,
    logger: settings.logger ?? silentLogger,
  }
  const fail = (name: string, rule: string): never => {
    throw new TypeError(`haproxy engine setting ${name} ${rule}`)
  }
  if (typeof resolved.stateDir !== 'string' || resolved.stateDir === '' || /[\s'"#$\\]/.test(resolved.stateDir)) {
    fail('stateDir', 'must be a directory path without spaces, quotes, #, $ or backslashes')
  }
  // The rule TETHER_PROXY_LISTEN and the others are checked with (listen.ts), not a second one.
  const listenRule = "must be [address]:port (':80', '127.0.0.1:8080', '[::1]:8080', port 1-65535)"
  if (!isListen(resolved.listen)) fail('listen', `${listenRule}, got '${resolved.listen}'`)
  if (resolved.tlsListen !== undefined && !isListen(resolved.tlsListen)) fail('tlsListen', `${listenRule}, got '${resolved.tlsListen}'`)
  if (!isListen(resolved.adminListen)) fail('adminListen', `${listenRule}, got '${resolved.adminListen}'`)
  if (resolved.resolvers.length === 0 || !resolved.resolvers.every((r) => hostPortPattern.test(r))) {
    fail('resolvers', 'must be a non-empty list of host:port')
  }
  if (typeof resolved.cookieKey !== 'string' || !cookieKeyPattern.test(resolved.cookieKey) || /['"\\]/.test(resolved.cookieKey)) {
    fail('cookieKey', 'must be 8-256 printable ASCII characters without spaces, quotes or backslashes')
  }
  if (resolved.statsAuth !== undefined && !statsAuthPattern.test(resolved.statsAuth)) {
    fail('statsAuth', "must be user:password, the user of letters, digits and . _ ~ -, the password 12-256 of letters, digits and . _ ~ + / = -")
  }
  const positive = (name: string, v: number | undefined, max: number): void => {
    if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > max)) fail(name, `must be an integer from 1 to ${max}`)
  }
  positive('dnsIntervalMs', resolved.dnsIntervalMs, 60_000)
  positive('descriptorLimit', resolved.descriptorLimit, 100_000_000)
  positive('maxconn', resolved.maxconn, 10_000_000)
  positive('nbthread', resolved.nbthread, 64)
  positive('maxReloads', resolved.maxReloads, 100_000)
  positive('certificateFilesIntervalMs', resolved.certificateFilesIntervalMs, 3_600_000)
  const count = (name: string, v: number, max: number): void => {
    if (!Number.isInteger(v) || v < 0 || v > max) fail(name, `must be an integer from 0 to ${max}`)
  }
  count('spareBackends', resolved.spareBackends, 256)
  if (!ACCESS_LOG_FORMATS.includes(resolved.accessLog.format)) fail('accessLog.format', `must be one of ${ACCESS_LOG_FORMATS.join(', ')}`)
  count('spareFromRoutes', resolved.spareFromRoutes, 10_000_000)
  count('hardStopAfterMs', resolved.hardStopAfterMs, 7 * 86_400_000)
  count('maxOldWorkers', resolved.maxOldWorkers, 1000)
  count('clientMaxConnections', resolved.clientMaxConnections, 10_000_000)
  count('clientMaxRequestRate', resolved.clientMaxRequestRate, 100_000_000)
  count('maxBodySize', resolved.maxBodySize, 1_099_511_627_776)
  if (!Array.isArray(resolved.trustedProxies) || resolved.trustedProxies.length > 64 || !resolved.trustedProxies.every((c) => cidrProblem(c) === null)) {
    fail('trustedProxies', 'must be at most 64 IPv4/IPv6 addresses or CIDR blocks (10.0.0.0/8, 2001:db8::/32)')
  }
  if (resolved.proxyProtocol && resolved.trustedProxies.length === 0) fail('proxyProtocol', 'needs trustedProxies: the peers allowed to send a PROXY protocol header')
  return resolved
}
