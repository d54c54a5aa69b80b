/**
 * The access log and the request id, as HAProxy configuration lines for render.ts to place. Pure.
 *
 * One line per HTTP request and per TCP / SNI-passthrough session, written by HAProxy itself on its
 * standard output (`log stdout ... format raw`), which the proxy hands the container's standard
 * output (see accessLogOutput): `docker service logs` shows it. HAProxy writes it without blocking:
 * when the reader is slow and the pipe is full, the line is dropped and counted (`show info`
 * DroppedLogs, `haproxy_process_dropped_logs_total` on /metrics), never waited for, so a stalled log
 * reader cannot slow a request.
 *
 * A line is valid JSON whatever the client sends: every value a client chooses (method, host,
 * path, query, SNI, request id) goes through HAProxy's `json(utf8s)` converter (quotes, backslashes
 * and control characters escaped, invalid UTF-8 dropped), cut first to a bounded length so that a
 * line always fits the log line length (HAProxy cuts longer lines, which would break the JSON); a
 * missing value is "" (`%{+Q}`), a number is one of HAProxy's numeric fields.
 * Request headers are gone when HAProxy logs, so the frontend keeps what the line needs in
 * variables. Never written: cookies, Authorization, and query values (kept only with `query: true`;
 * otherwise every `=value` becomes `=[redacted]`, the names stay).
 *
 * The route: a map (`logroutes`) from `<backend><prefix>/` to `<service>|<prefix>`, looked up
 * longest-prefix with the backend's name and the request's path, gives the service and the path
 * rule that matched; each backend also has `<backend>/` → `<service>|` (its default route, TCP).
 * It is a map file like the routing maps, so a route placed in a spare backend between reloads
 * updates it over the runtime API with them.
 *
 * Affinity: HAProxy 2.6 has no sample for it; the 3rd and 4th characters of `termination_state`
 * (HAProxy's %tsc) are its cookie status: `NI` a new cookie, `VN` kept on its task, `DI`/`II`
 * re-pinned (its task was down or gone), `--` no affinity cookie on this route.
 *
 * Refusals: a request a policy refused (render.ts: an address rule, a rate limit, basic auth, a
 * body limit) has its reason in `refused` ("ip", "rate", "auth", "size"); "" for every other request.
 *
 * Request id: a client's X-Request-ID is kept when it is one header of 1-128 characters
 * [A-Za-z0-9._:-]; otherwise a UUID replaces it. It is passed to the backend, returned on every
 * response (HAProxy's own 404/503/429 included) and logged.
 */
import { closeSync, constants, fstatSync, openSync } from 'node:fs'
import { createHash } from 'node:crypto'
import type { RenderedFile } from './render.ts'

export const ACCESS_LOG_FORMATS = ['json', 'text', 'off'] as const
export type AccessLogFormat = (typeof ACCESS_LOG_FORMATS)[number]

export interface AccessLogSettings {
  /** 'json' (one object a line), 'text' (for terminals) or 'off'. */
  format: AccessLogFormat
  /** Log query values as sent (TETHER_ACCESS_LOG_QUERY=on). Default false: `name=[redacted]`. */
  query?: boolean
  /**
   * `127.0.0.1:<port>`: every JSON line is also sent there as a UDP datagram, for the agent's
   * latency and affinity metrics (log-metrics.ts). Never blocks: a full socket drops it.
   */
  metricsAddress?: string
  /** Written in every line: this proxy's id and node. */
  proxyId?: string
  node?: string
}

/** Longest client-chosen values written, in bytes (before JSON escaping, at most 6 bytes a byte). */
const MAX = { host: 256, path: 2048, query: 1024, sni: 256 } as const
/** HAProxy's longest log line (the default, 1024, would cut a long path and break the JSON). */
const LINE_LENGTH = 65535

export const REQUEST_ID_HEADER = 'X-Request-ID'

/** A literal of a log-format string: JSON-quoted, ASCII only (no quote of the configuration), '%' doubled. */
function literal(value: string): string {
  return JSON.stringify(value)
    .replace(/[^\x20-\x7e]|'/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
    .replace(/%/g, '%%')
}

/** A client-chosen sample as a JSON string (quoted, "" when missing). */
const str = (sample: string, max: number): string => `%{+Q}[${sample},bytes(0,${max}),json(utf8s)]`

/** When HAProxy writes the line, UTC, ISO 8601 with milliseconds. */
const TIME = '%[date,utime(%Y-%m-%dT%H:%M:%S)].%[date(0,ms),mod(1000),add(1000),regsub("^1","")]Z'

function route(mapPath: string, key: string): string {
  const lookup = `${key},map_beg(${mapPath})`
  return `"service":%{+Q}[${lookup},field(1,|)],"route_path":%{+Q}[${lookup},field(2,|)]`
}

function who(s: AccessLogSettings): string {
  return `"proxy":${literal(s.proxyId ?? '')},"node":${literal(s.node ?? '')}`
}

/** The HTTP log-format (json or text). */
export function httpLogFormat(s: AccessLogSettings, mapPath: string): string {
  const key = 'be_name,concat(,txn.log_path,/)'
  if (s.format === 'text') {
    return `%[date,utime(%H:%M:%S)] %ci:%cp %[var(txn.log_host),bytes(0,${MAX.host}),json(utf8s)] %HM %[var(txn.log_path),bytes(0,${MAX.path}),json(utf8s)] %HV %ST %B %Tams ${'%[' + key + ',map_beg(' + mapPath + '),field(1,|)]'}/%s %tsc retries=%rc id=%[var(txn.request_id)] refused=%[var(txn.tether_refused),bytes(0,16),json(utf8s)]`
  }
  return [
    `{"time":"${TIME}",${who(s)},"type":"http"`,
    '"client_ip":"%ci","client_port":%cp,"frontend":"%f"',
    `"method":${str('var(txn.log_method)', 32)},"host":${str('var(txn.log_host)', MAX.host)},"path":${str('var(txn.log_path)', MAX.path)},"query":${str('var(txn.log_query)', MAX.query)}`,
    `"protocol":"%HV","tls_version":"%sslv","sni":${str('ssl_fc_sni', MAX.sni)}`,
    '"status":%ST,"bytes_in":%U,"bytes_out":%B',
    '"duration_ms":%Ta,"request_ms":%TR,"queue_ms":%Tw,"connect_ms":%Tc,"response_ms":%Tr',
    `${route(mapPath, key)},"backend":"%b","server":"%s"`,
    `"termination_state":"%tsc","retries":"%rc","request_id":${str('var(txn.request_id)', 128)},"refused":${str('var(txn.tether_refused)', 16)}}`,
  ].join(',')
}

/** The TCP log-format (TCP routes and SNI passthrough): no HTTP fields. */
export function tcpLogFormat(s: AccessLogSettings, mapPath: string): string {
  const key = 'be_name,concat(/)'
  if (s.format === 'text') {
    return `%[date,utime(%H:%M:%S)] %ci:%cp tcp %f sni=%[var(sess.log_sni),bytes(0,${MAX.sni}),json(utf8s)] %U/%B %Ttms %[${key},map_beg(${mapPath}),field(1,|)]/%s %ts retries=%rc`
  }
  return [
    `{"time":"${TIME}",${who(s)},"type":"tcp"`,
    '"client_ip":"%ci","client_port":%cp,"frontend":"%f"',
    `"sni":${str('var(sess.log_sni)', MAX.sni)}`,
    '"bytes_in":%U,"bytes_out":%B',
    '"duration_ms":%Tt,"queue_ms":%Tw,"connect_ms":%Tc',
    `${route(mapPath, key)},"backend":"%b","server":"%s"`,
    '"termination_state":"%ts","retries":"%rc"}',
  ].join(',')
}

const enabled = (s: AccessLogSettings | undefined): s is AccessLogSettings => s !== undefined && s.format !== 'off'

/** `global` section. */
export function globalLogLines(s: AccessLogSettings | undefined): string[] {
  if (!enabled(s)) return []
  return [
    '    # Access log on standard output, written without blocking: a full pipe drops lines (DroppedLogs), never stalls traffic.',
    `    log stdout len ${LINE_LENGTH} format raw daemon info`,
    ...(s.format === 'json' && s.metricsAddress !== undefined && /^127\.0\.0\.1:\d{1,5}$/.test(s.metricsAddress)
      ? ['    # The same lines to the agent, for the latency and affinity metrics (UDP on loopback: a slow agent loses lines, never delays one).', `    log ${s.metricsAddress} len ${LINE_LENGTH} format raw daemon info`]
      : []),
  ]
}

/**
 * A frontend's log lines (the routing one, each TCP one, the SNI passthrough one). In frontends,
 * not in defaults: a backend with a logger would write HAProxy's notices (a server going down) there too.
 */
export function frontendLogLines(s: AccessLogSettings | undefined, mode: 'http' | 'tcp', mapPath: string | undefined): string[] {
  if (!enabled(s) || mapPath === undefined) return []
  const format = mode === 'http' ? httpLogFormat(s, mapPath) : tcpLogFormat(s, mapPath)
  return ['    log global', ...(mode === 'http' ? ['    option dontlognull'] : []), `    log-format '${format}'`]
}

/**
 * The routing frontend's lines, before routing: the request id (always), and what the log line
 * needs of the request (kept in variables: the request is gone when HAProxy logs).
 */
export function frontendLines(s: AccessLogSettings | undefined): string[] {
  const out = [
    `    # ${REQUEST_ID_HEADER}: the client's when it is one plain token of at most 128 characters, else a new UUID; to the backend and back.`,
    `    http-request set-var(txn.request_id) req.fhdr(${REQUEST_ID_HEADER}) if { req.fhdr_cnt(${REQUEST_ID_HEADER}) eq 1 } { req.fhdr(${REQUEST_ID_HEADER}) -m reg ^[A-Za-z0-9._:-]{1,128}$ }`,
    '    http-request set-var(txn.request_id) uuid unless { var(txn.request_id) -m found }',
    `    http-request set-header ${REQUEST_ID_HEADER} %[var(txn.request_id)]`,
    `    http-after-response set-header ${REQUEST_ID_HEADER} %[var(txn.request_id)] if { var(txn.request_id) -m found }`,
  ]
  if (!enabled(s)) return out
  out.push('    # What the access log line needs of the request (never a cookie, Authorization or, unless asked, a query value).')
  if (s.format === 'json') out.push('    http-request set-var(txn.log_method) method')
  out.push('    http-request set-var(txn.log_host) req.hdr(host)')
  out.push('    http-request set-var(txn.log_path) path')
  if (s.format === 'json') out.push(s.query === true ? '    http-request set-var(txn.log_query) query' : `    http-request set-var(txn.log_query) 'query,regsub("=[^&]*","=[redacted]",g)'`)
  return out
}

/** The SNI passthrough frontend, before its accept rule: keep the server name for the log. */
export function passthroughLines(s: AccessLogSettings | undefined): string[] {
  return enabled(s) ? ['    tcp-request content set-var(sess.log_sni) req.ssl_sni if { req.ssl_hello_type 1 }'] : []
}

/** The hop from the passthrough frontend to the terminating one: its HTTP requests are logged there, not this. */
export function terminateHopLines(s: AccessLogSettings | undefined): string[] {
  return enabled(s) ? ['    tcp-request content set-log-level silent'] : []
}

export interface LoggedBackend {
  name: string
  serviceName: string
  /** The path prefixes routed to it ('/' the catch-all); none for TCP and SNI backends. */
  paths: readonly string[]
}

/** The `logroutes` map: `<backend><prefix>/` → `<service>|<prefix>`, and `<backend>/` → `<service>|` unless '/' is a prefix. */
export function logRoutesMap(mapDir: string, backends: readonly LoggedBackend[]): RenderedFile {
  const entries = new Map<string, { value: string; owner: string }>()
  for (const b of backends) {
    for (const p of b.paths) entries.set(`${b.name}${p === '/' ? '/' : `${p}/`}`, { value: `${b.serviceName}|${p}`, owner: b.serviceName })
    if (!entries.has(`${b.name}/`)) entries.set(`${b.name}/`, { value: `${b.serviceName}|`, owner: b.serviceName })
  }
  const sorted = [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  const text = sorted.map(([key, e]) => `${key} ${e.value}\n`).join('')
  return { path: `${mapDir}/logroutes-${createHash('sha256').update(text).digest('hex').slice(0, 16)}.map`, text, owners: sorted.map(([, e]) => [e.owner]) }
}

/**
 * The file descriptor HAProxy gets as its standard output: this process's own standard output,
 * opened anew when it is a pipe (Docker's log pipe) so that HAProxy's non-blocking mode is its
 * own and not shared with this process's writes; the same descriptor otherwise (a terminal, a
 * file). Caller closes it with closeAccessLogOutput() when HAProxy is gone.
 */
export function accessLogOutput(fd = 1): number {
  try {
    if (fstatSync(fd).isFIFO()) return openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY | constants.O_NONBLOCK)
  } catch {
    // No /proc, or the pipe has no reader: share the descriptor.
  }
  return fd
}

export function closeAccessLogOutput(fd: number): void {
  if (fd > 2) closeSync(fd)
}
