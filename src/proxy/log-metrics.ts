/**
 * Per-route metrics HAProxy's statistics cannot give, counted from its access-log lines: a
 * latency histogram, upgraded (WebSocket) connections, and affinity outcomes.
 *
 * HAProxy sends every access-log line a second time, as a UDP datagram to 127.0.0.1 on a port
 * this process bound (access-log.ts, `metricsAddress`): sending never blocks (a full socket
 * buffer drops the datagram, counted by the kernel and exported here), so this reader can never
 * slow a request, like a slow reader of the standard output. The agent counts, so the counts go
 * on across HAProxy reloads and restarts (they start again only when the agent restarts).
 * Only the JSON access log is read (TETHER_ACCESS_LOG=json, the default); with `text` or `off`
 * these metrics are not exported.
 *
 * What is counted, per route (the service name of the line; lines without one, HAProxy's own
 * 404s, are not):
 * - tether_route_request_duration_seconds: a histogram of the total time of each HTTP request
 *   (HAProxy %Ta: from the request's first byte to the response's last one, as the client sees
 *   it without its own network), except upgraded connections (their time is the whole session);
 * - tether_route_upgraded_connections_total: HTTP connections upgraded (101, WebSockets),
 *   counted when they end (HAProxy logs a session when it closes);
 * - tether_route_refused_requests_total{reason}: requests a route policy refused, by the access
 *   log's `refused` field: ip (ipAllow/ipDeny 403), rate (rateLimit/rateLimitTotal 429), auth
 *   (basic authentication 401), size (bodyLimit/TETHER_MAX_BODY_SIZE 413); refusals before routing (the per-client request rate,
 *   TETHER_CLIENT_MAX_REQUEST_RATE) have no route: tether_proxy_refused_requests_total{reason};
 * - tether_route_affinity_total{outcome}: new (a new affinity cookie), kept (the client's cookie
 *   took it to its task), repinned (the cookie's task was down or gone: a new one was chosen),
 *   from the cookie status in HAProxy's termination state; routes without affinity have none.
 *
 * Cardinality: one histogram (12 series: 11 buckets + +Inf, with _sum and _count) per served
 * route, one upgraded counter, at most 3 refusal and 3 affinity series; a route no longer served loses its
 * series (prune()). No label carries a client-chosen value: the service name is checked against
 * the routes served.
 */
import { createSocket, type Socket } from 'node:dgram'
import { readFile } from 'node:fs/promises'
import { Counter, Histogram, type Metric, type Registry } from 'prom-client'

/** Seconds. Chosen for web requests: 5 ms to 10 s; slower ones are in +Inf. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const

/** The access log's `refused` values (render.ts sets them before each policy's refusal). */
export const REFUSAL_REASONS = ['ip', 'rate', 'auth', 'size'] as const

export type AffinityOutcome = 'new' | 'kept' | 'repinned'

/** The affinity outcome of HAProxy's 4-character termination state (3rd: the client's cookie, 4th: what HAProxy did with it). */
export function affinityOf(terminationState: string): AffinityOutcome | null {
  const client = terminationState[2]
  const server = terminationState[3]
  if (client === undefined || client === '-') return null
  if (client === 'V') return 'kept'
  // D: its task is down; I: unknown to HAProxy (the task is gone).
  if (client === 'D' || client === 'I') return 'repinned'
  // N: no cookie (or E/O: expired, too old) and one was inserted.
  if (server === 'I' || server === 'U' || server === 'R') return 'new'
  return null
}

export interface LogMetrics {
  /** Where HAProxy sends the lines: `127.0.0.1:<port>`. */
  readonly address: string
  /** Counts one access-log line (JSON); returns false when it is not one this counts. */
  observe(line: string, served: ReadonlySet<string>): boolean
  /** Per bucket of DURATION_BUCKETS then +Inf, the requests of `service` counted in it (cumulative); undefined when none. */
  durations(service: string): number[] | undefined
  /** Adds the metrics to a registry; `served()`: the service names served now (others are not counted, and their series go). */
  register(registry: Registry, served: () => ReadonlySet<string>): void
  close(): Promise<void>
}

/** Starts the UDP reader on 127.0.0.1 (an ephemeral port) and the metrics it feeds. */
export async function startLogMetrics(): Promise<LogMetrics> {
  let served: () => ReadonlySet<string> = () => new Set()
  const duration = new Histogram({
    name: 'tether_route_request_duration_seconds',
    help: 'Total time of HTTP requests per route (HAProxy %Ta), from the access log; upgraded connections not included. Counted by the agent: carried over reloads.',
    labelNames: ['service'] as const,
    buckets: [...DURATION_BUCKETS],
    registers: [],
    collect() {
      const now = served()
      for (const s of [...seen]) {
        if (now.has(s)) continue
        seen.delete(s)
        counts.delete(s)
        this.remove({ service: s })
        upgraded.remove({ service: s })
        for (const reason of REFUSAL_REASONS) refused.remove({ service: s, reason })
        for (const outcome of ['new', 'kept', 'repinned']) affinity.remove({ service: s, outcome })
      }
    },
  })
  const upgraded = new Counter({
    name: 'tether_route_upgraded_connections_total',
    help: 'HTTP connections upgraded (101: WebSockets) per route, counted when they close.',
    labelNames: ['service'] as const,
    registers: [],
  })
  const refused = new Counter({
    name: 'tether_route_refused_requests_total',
    help: 'HTTP requests a route policy refused, per route and reason: ip (ipAllow/ipDeny, 403), rate (rateLimit/rateLimitTotal, 429), auth (basic authentication, 401), size (bodyLimit or TETHER_MAX_BODY_SIZE, 413).',
    labelNames: ['service', 'reason'] as const,
    registers: [],
  })
  const refusedBeforeRouting = new Counter({
    name: 'tether_proxy_refused_requests_total',
    help: 'HTTP requests refused before any route was chosen, per reason: rate (TETHER_CLIENT_MAX_REQUEST_RATE, 429).',
    labelNames: ['reason'] as const,
    registers: [],
  })
  const affinity = new Counter({
    name: 'tether_route_affinity_total',
    help: "Requests of routes with affinity (sticky) by outcome: new (a new cookie), kept (on the cookie's task), repinned (the cookie's task was down or gone).",
    labelNames: ['service', 'outcome'] as const,
    registers: [],
  })
  const unreadable = new Counter({
    name: 'tether_proxy_metrics_log_unreadable_lines_total',
    help: 'Access-log lines the agent received and could not count (not JSON, or cut).',
    registers: [],
  })
  const seen = new Set<string>()
  /** Per service, requests per bucket (not cumulative; the last one is +Inf): the dashboard's p95, in heartbeats. */
  const counts = new Map<string, number[]>()

  const observe = (line: string, served: ReadonlySet<string>): boolean => {
    let entry: { type?: unknown; service?: unknown; status?: unknown; duration_ms?: unknown; termination_state?: unknown; refused?: unknown }
    try {
      entry = JSON.parse(line) as typeof entry
    } catch {
      unreadable.inc()
      return false
    }
    const reason = REFUSAL_REASONS.find((r) => r === entry.refused)
    if (entry.type === 'http' && entry.service === '' && reason !== undefined) {
      refusedBeforeRouting.inc({ reason })
      return true
    }
    if (entry.type !== 'http' || typeof entry.service !== 'string' || !served.has(entry.service)) return false
    const service = entry.service
    seen.add(service)
    if (reason !== undefined) refused.inc({ service, reason })
    if (entry.status === 101) upgraded.inc({ service })
    else if (typeof entry.duration_ms === 'number' && entry.duration_ms >= 0) {
      const seconds = entry.duration_ms / 1000
      duration.observe({ service }, seconds)
      let c = counts.get(service)
      if (c === undefined) counts.set(service, (c = DURATION_BUCKETS.map(() => 0).concat(0)))
      const i = DURATION_BUCKETS.findIndex((le) => seconds <= le)
      c[i < 0 ? DURATION_BUCKETS.length : i]! += 1
    }
    const outcome = typeof entry.termination_state === 'string' ? affinityOf(entry.termination_state) : null
    if (outcome !== null) affinity.inc({ service, outcome })
    return true
  }

  const socket: Socket = createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 })
  socket.on('message', (msg) => {
    // `format raw`: the line itself, maybe with a trailing newline.
    observe(msg.toString('utf8').trimEnd(), served())
  })
  socket.on('error', () => undefined)
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(0, '127.0.0.1', () => {
      socket.off('error', reject)
      resolve()
    })
  })
  socket.unref()
  const port = socket.address().port

  const dropped = new Counter({
    name: 'tether_proxy_metrics_log_dropped_lines_total',
    help: "Access-log lines HAProxy sent to the agent's metrics socket that the kernel dropped (the agent read too slowly): the latency and affinity metrics miss them.",
    registers: [],
    async collect() {
      const count = await udpDrops(port)
      this.reset()
      if (count !== null) this.inc(count)
    },
  })

  return {
    address: `127.0.0.1:${port}`,
    observe,
    durations(service) {
      const c = counts.get(service)
      if (c === undefined) return undefined
      let sum = 0
      return c.map((n) => (sum += n))
    },
    register(registry, servedNow) {
      served = servedNow
      // The histogram first: its collect (run when a scrape begins) drops the series of routes no longer served.
      for (const m of [duration, upgraded, refused, refusedBeforeRouting, affinity, unreadable, dropped] as Metric[]) registry.registerMetric(m)
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  }
}

/** The kernel's drop count of the UDP socket bound to 127.0.0.1:port (/proc/net/udp), null when it cannot tell. */
async function udpDrops(port: number): Promise<number | null> {
  let text: string
  try {
    text = await readFile('/proc/net/udp', 'utf8')
  } catch {
    return null
  }
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/)
    if (cols[1] === local) return Number(cols[cols.length - 1]) || 0
  }
  return null
}
