/**
 * Per-route Prometheus metrics of a proxy, labelled by the route's service name (not HAProxy's
 * backend names), with counters that survive reloads and restarts of HAProxy.
 *
 * Source: HAProxy's own statistics (`show info` + `show stat` over the runtime API, one
 * connection, so both come from the same worker), read at every scrape and right before every
 * reload (ProcessOptions.beforeReload), and the replaced workers once more right after it, over
 * the master CLI, until they hold no connection (ProcessOptions.afterReload): they keep answering
 * while the new worker starts. A new worker starts every counter at zero; the worker's pid tells
 * a new generation, and the totals of the previous one are carried over: total = what earlier
 * workers counted (read last) + what the current worker counted. A spare backend that changes
 * hands between reloads starts its new route at the values read when the route took it.
 *
 * What is real and what is not:
 * - requests by status class, connections, bytes: HAProxy's counters, exact up to the last read
 *   of each worker (not counted: what a replaced worker answers after it held no connection for a
 *   moment, e.g. the last request of a keep-alive connection idle during the reload; what a worker
 *   that crashed answered since the last scrape);
 * - latency: HAProxy 2.6 keeps no distribution, only the average of the last 1024 requests
 *   (`rtime`, `ttime`) and the maximum since the worker started: those are exported as gauges;
 *   the histogram (p50/p95/p99) is counted from the access log by log-metrics.ts, with the
 *   upgraded connections and the affinity outcomes;
 * - active connections per route and per task (server): HAProxy's current sessions.
 *
 * Cardinality: one series per served route (× 6 status classes for requests), one per task of
 * each route for its connections; a removed route's series go with it.
 */
import { chmod, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import { Counter, Gauge, Registry } from 'prom-client'
import { sendCommand, type StatRow } from './haproxy/runtime.ts'
import { DURATION_BUCKETS, type LogMetrics } from './log-metrics.ts'
import type { ProxyTraffic, RouteTraffic } from '../contracts/proxy-status.ts'

/** One reading of a HAProxy worker's statistics. */
export interface StatsSample {
  /** Identifies the worker (its pid): another value means every counter started again at zero. */
  worker: string
  /** `show info` DroppedLogs: access-log lines the worker dropped (a full pipe). */
  droppedLogs: number
  /** `show stat` rows of backends and servers. */
  rows: StatRow[]
  /** The `show info` text. */
  info?: string
}

export interface RouteMetricsSource {
  /** A reading of the running worker, or null when HAProxy is not running. */
  sample(): Promise<StatsSample | null>
  /** A reading of a previous worker (by pid) still draining after a reload. */
  sampleOf?(pid: number): Promise<StatsSample>
  /** Backend name → the service name of the route it serves (what is served now). */
  services(): ReadonlyMap<string, string>
  /** Extra per-proxy facts (agent status), read at scrape time. */
  proxy?(): { configVersion: number | null; applyFailing: boolean; reloads: number }
}

export interface RouteMetrics {
  registry: Registry
  /** Reads HAProxy and gives the counters for the heartbeat (the dashboard); null when HAProxy cannot be read. */
  traffic(): Promise<ProxyTraffic | null>
  /** Reads the statistics and folds them into the totals (also done at every scrape). Rejects when HAProxy cannot be read. */
  update(): Promise<void>
  /** update() that never rejects and gives up after timeoutMs: for the moment before a reload. */
  capture(timeoutMs?: number): Promise<void>
  /**
   * After a reload: reads the replaced workers (master CLI) until they hold no connection (or are
   * gone, or timeoutMs), so what they answered while the new worker started is counted. Never
   * rejects. Not to be awaited by a reload: it may take timeoutMs.
   */
  captureReplaced(pids: readonly number[], timeoutMs?: number): Promise<void>
}

const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'other'] as const
/** The cumulative fields of a backend row, in Vec order. */
const COUNTER_FIELDS = ['hrsp_1xx', 'hrsp_2xx', 'hrsp_3xx', 'hrsp_4xx', 'hrsp_5xx', 'hrsp_other', 'bin', 'bout', 'stot'] as const
type Vec = number[]
const zeros = (): Vec => COUNTER_FIELDS.map(() => 0)
const num = (v: string | undefined): number => {
  const n = Number(v)
  return v === undefined || v === '' || !Number.isFinite(n) ? 0 : n
}
const vecOf = (row: StatRow): Vec => COUNTER_FIELDS.map((f) => num(row[f]))
const add = (a: Vec, b: Vec, sign = 1): Vec => a.map((x, i) => x + sign * (b[i] ?? 0))

/** `show info` then `show stat` for backends and servers, parsed. */
export function parseSample(text: string): StatsSample {
  const headerAt = text.indexOf('\n# ')
  const info = headerAt < 0 ? text : text.slice(0, headerAt)
  const csv = headerAt < 0 ? '' : text.slice(headerAt + 1)
  const field = (name: string): string | undefined => new RegExp(`^${name}: *(.*)$`, 'm').exec(info)?.[1]?.trim()
  const pid = field('Pid')
  if (pid === undefined || pid === '') throw new Error(`unexpected 'show info' answer: ${text.slice(0, 200)}`)
  const lines = csv.split('\n').filter((l) => l.length > 0)
  const header = lines.shift()
  if (header === undefined || !header.startsWith('# ')) throw new Error(`unexpected 'show stat' answer: ${csv.slice(0, 200)}`)
  const names = header.slice(2).split(',')
  const rows = lines.map((line) => {
    const values = line.split(',')
    const row: Record<string, string> = {}
    names.forEach((name, i) => {
      if (name !== '') row[name] = values[i] ?? ''
    })
    return { pxname: '', svname: '', status: '', addr: '', ...row } as StatRow
  })
  return { worker: pid, droppedLogs: num(field('DroppedLogs')), rows, info }
}

/** Reads a sample from the worker's runtime API (`stats socket`). */
export async function readSample(adminSocket: string, timeoutMs = 5_000): Promise<StatsSample> {
  // -1 6 -1: every proxy, backends (2) and servers (4), not frontends (1).
  return parseSample(await sendCommand(adminSocket, 'show info; show stat -1 6 -1', timeoutMs))
}

interface Entry {
  service: string | undefined
  /** The backend's counters when its current service took it (zero for a backend new in this worker). */
  offset: Vec
  /** The counters read last. */
  last: Vec
}

/** The carried-over arithmetic, apart from Prometheus (unit-tested through RouteMetrics). */
class Totals {
  worker: string | undefined
  entries = new Map<string, Entry>()
  /** Counted by earlier workers (or by backends the service no longer has), per service. */
  base = new Map<string, Vec>()
  droppedBase = 0
  droppedLast = 0
  /** Previous workers' entries (the last few), for what they count after the new worker is seen. */
  retired = new Map<string, { entries: Map<string, Entry>; dropped: number }>()

  fold(sample: StatsSample, services: ReadonlyMap<string, string>): void {
    const old = this.retired.get(sample.worker)
    if (old !== undefined) {
      // A replaced worker, read after the new one was: only what it counted since is added.
      for (const row of sample.rows) {
        const e = row.svname === 'BACKEND' ? old.entries.get(row.pxname) : undefined
        if (e === undefined) continue
        const v = vecOf(row)
        const delta = add(v, e.last, -1)
        if (e.service !== undefined && delta.every((d) => d >= 0)) this.base.set(e.service, add(this.base.get(e.service) ?? zeros(), delta))
        e.last = v
      }
      if (sample.droppedLogs >= old.dropped) this.droppedBase += sample.droppedLogs - old.dropped
      old.dropped = sample.droppedLogs
      return
    }
    if (sample.worker !== this.worker) {
      // A new worker (reload or restart): what the previous one counted is carried over.
      for (const e of this.entries.values()) if (e.service !== undefined) this.base.set(e.service, add(this.base.get(e.service) ?? zeros(), add(e.last, e.offset, -1)))
      if (this.worker !== undefined) {
        this.retired.set(this.worker, { entries: this.entries, dropped: this.droppedLast })
        for (const k of this.retired.keys()) if (this.retired.size > 8) this.retired.delete(k)
      }
      this.entries = new Map()
      this.droppedBase += this.droppedLast
      this.droppedLast = 0
      this.worker = sample.worker
    }
    this.droppedLast = sample.droppedLogs
    for (const row of sample.rows) {
      if (row.svname !== 'BACKEND') continue
      const service = services.get(row.pxname)
      let e = this.entries.get(row.pxname)
      if (e === undefined) {
        e = { service, offset: zeros(), last: zeros() }
        this.entries.set(row.pxname, e)
      } else if (e.service !== service) {
        // A spare backend given to another route (or freed) without a reload.
        if (e.service !== undefined) this.base.set(e.service, add(this.base.get(e.service) ?? zeros(), add(e.last, e.offset, -1)))
        e.service = service
        e.offset = e.last
      }
      e.last = vecOf(row)
    }
    // A route no longer served takes its totals with it (bounded memory, bounded series).
    // (A replaced worker read later adds to the routes still served only.)
    const served = new Set(services.values())
    for (const s of this.base.keys()) if (!served.has(s)) this.base.delete(s)
  }

  totals(): Map<string, Vec> {
    const out = new Map<string, Vec>()
    for (const [s, v] of this.base) out.set(s, [...v])
    for (const e of this.entries.values()) {
      if (e.service === undefined) continue
      out.set(e.service, add(out.get(e.service) ?? zeros(), add(e.last, e.offset, -1)))
    }
    return out
  }
}

/** The busiest routes a heartbeat carries (it must stay small). */
const TRAFFIC_ROUTES = 2000

export function createRouteMetrics(source: RouteMetricsSource, logMetrics?: Pick<LogMetrics, 'durations'>): RouteMetrics {
  const registry = new Registry()
  const totals = new Totals()
  /** The rows of the last reading (for the gauges), by backend. */
  let lastRows: StatRow[] = []
  let lastServices: ReadonlyMap<string, string> = new Map()
  let lastInfo: string | undefined
  let up = 0
  let reading: Promise<void> | undefined

  /** Folds a replaced worker's reading (serialised with the current worker's readings). */
  const foldReplaced = async (pid: number): Promise<number | null> => {
    if (source.sampleOf === undefined) return null
    const sample = await source.sampleOf(pid)
    await reading
    totals.fold(sample, source.services())
    const conns = /^CurrConns: *(\d+)$/m.exec(sample.info ?? '')
    return conns === null ? null : Number(conns[1])
  }

  const update = (): Promise<void> => {
    // Concurrent scrapes share one reading.
    reading ??= (async () => {
      try {
        const services = source.services()
        const sample = await source.sample()
        if (sample === null) {
          up = 0
          return
        }
        totals.fold(sample, services)
        lastRows = sample.rows
        lastInfo = sample.info
        lastServices = services
        up = 1
      } catch (err) {
        up = 0
        throw err
      } finally {
        reading = undefined
      }
    })()
    return reading
  }

  /** Reads once per scrape: the first collect() of a scrape reads, the others use it. */
  let scrape: Promise<Map<string, Vec>> | undefined
  const current = (): Promise<Map<string, Vec>> => {
    scrape ??= update()
      .catch(() => undefined)
      .then(() => totals.totals())
      .finally(() => setImmediate(() => (scrape = undefined)))
    return scrape
  }

  const counter = (name: string, help: string, index: number): void => {
    new Counter({
      name,
      help,
      labelNames: ['service'] as const,
      registers: [registry],
      async collect() {
        const t = await current()
        this.reset()
        for (const [service, v] of t) this.inc({ service }, v[index] ?? 0)
      },
    })
  }
  new Counter({
    name: 'tether_route_requests_total',
    help: 'HTTP responses per route (service name) and status class (1xx..5xx, other); carried over HAProxy reloads and restarts.',
    labelNames: ['service', 'code_class'] as const,
    registers: [registry],
    async collect() {
      const t = await current()
      this.reset()
      for (const [service, v] of t) CLASSES.forEach((code_class, i) => this.inc({ service, code_class }, v[i] ?? 0))
    },
  })
  counter('tether_route_received_bytes_total', 'Bytes received from clients per route (requests, TCP upstream); carried over reloads.', 6)
  counter('tether_route_sent_bytes_total', 'Bytes sent to clients per route (responses, TCP downstream); carried over reloads.', 7)
  counter('tether_route_connections_total', "Connections (HAProxy sessions) handed to each route's backends, HTTP and TCP; carried over reloads.", 8)

  /** Backend rows of served routes, grouped by service. */
  const byService = async (): Promise<Map<string, StatRow[]>> => {
    await current()
    const out = new Map<string, StatRow[]>()
    for (const row of lastRows) {
      if (row.svname !== 'BACKEND') continue
      const s = lastServices.get(row.pxname)
      if (s === undefined) continue
      out.set(s, [...(out.get(s) ?? []), row])
    }
    return out
  }
  new Gauge({
    name: 'tether_route_active_connections',
    help: 'Connections open now per route (HAProxy current sessions of its backends, WebSockets and TCP sessions included).',
    labelNames: ['service'] as const,
    registers: [registry],
    async collect() {
      const groups = await byService()
      this.reset()
      for (const [service, rows] of groups) this.set({ service }, rows.reduce((n, r) => n + num(r.scur), 0))
    },
  })
  new Gauge({
    name: 'tether_route_task_active_connections',
    help: 'Connections open now per route and task (HAProxy server: the Swarm task or endpoint).',
    labelNames: ['service', 'task'] as const,
    registers: [registry],
    async collect() {
      await current()
      this.reset()
      for (const row of lastRows) {
        if (row.svname === 'BACKEND' || row.svname === 'FRONTEND') continue
        const service = lastServices.get(row.pxname)
        if (service !== undefined) this.inc({ service, task: row.svname }, num(row.scur))
      }
    },
  })
  // HAProxy 2.6 keeps averages over the last 1024 requests and maxima, not a distribution.
  const timeGauge = (name: string, help: string, field: string, pick: 'avg' | 'max'): void => {
    new Gauge({
      name,
      help,
      labelNames: ['service'] as const,
      registers: [registry],
      async collect() {
        const groups = await byService()
        this.reset()
        for (const [service, rows] of groups) {
          if (pick === 'max') this.set({ service }, Math.max(...rows.map((r) => num(r[field]))) / 1000)
          else {
            // Weighted by the connections each backend handled (one backend per route but for split destinations).
            const weight = rows.reduce((n, r) => n + num(r.stot), 0)
            const value = weight === 0 ? 0 : rows.reduce((n, r) => n + num(r[field]) * num(r.stot), 0) / weight
            this.set({ service }, value / 1000)
          }
        }
      },
    })
  }
  timeGauge('tether_route_response_time_avg_seconds', "Average time to the backend's response headers over the route's last 1024 requests (HAProxy rtime; not a distribution).", 'rtime', 'avg')
  timeGauge('tether_route_total_time_avg_seconds', "Average total time of the route's last 1024 requests, client side included (HAProxy ttime; not a distribution).", 'ttime', 'avg')
  timeGauge('tether_route_response_time_max_seconds', "Longest time to the backend's response headers since the current HAProxy worker started (reset at reloads).", 'rtime_max', 'max')
  timeGauge('tether_route_total_time_max_seconds', 'Longest total request time since the current HAProxy worker started (reset at reloads).', 'ttime_max', 'max')

  new Counter({
    name: 'tether_proxy_dropped_log_lines_total',
    help: 'Access-log lines HAProxy dropped because its output was full (a slow reader); carried over reloads.',
    registers: [registry],
    async collect() {
      await current()
      this.reset()
      this.inc(totals.droppedBase + totals.droppedLast)
    },
  })
  new Gauge({
    name: 'tether_proxy_haproxy_up',
    help: "1 when the proxy's HAProxy answered the last statistics read, else 0.",
    registers: [registry],
    async collect() {
      await current()
      this.set(up)
    },
  })
  if (source.proxy !== undefined) {
    const proxy = source.proxy.bind(source)
    new Gauge({
      name: 'tether_proxy_config_version',
      help: 'Version of the routing table this proxy serves (compare with the control plane tether_config_version).',
      registers: [registry],
      collect() {
        const v = proxy().configVersion
        if (v !== null) this.set(v)
      },
    })
    new Gauge({
      name: 'tether_proxy_apply_failing',
      help: '1 while the newest routing table cannot be applied (the previous one keeps serving), else 0.',
      registers: [registry],
      collect() {
        this.set(proxy().applyFailing ? 1 : 0)
      },
    })
    new Counter({
      name: 'tether_proxy_reloads_total',
      help: 'HAProxy reloads this proxy ran for configuration changes (changes over the runtime API need none).',
      registers: [registry],
      collect() {
        this.reset()
        this.inc(proxy().reloads)
      },
    })
  }

  const traffic = async (): Promise<ProxyTraffic | null> => {
    await update().catch(() => undefined)
    if (up === 0) return null
    const routes = new Map<string, RouteTraffic>()
    for (const [serviceName, v] of totals.totals()) {
      const durations = logMetrics?.durations(serviceName)
      routes.set(serviceName, { serviceName, requests: CLASSES.reduce((n, _c, i) => n + (v[i] ?? 0), 0), errors: v[4] ?? 0, connections: 0, ...(durations === undefined ? {} : { durations }), tasks: [] })
    }
    for (const row of lastRows) {
      const service = lastServices.get(row.pxname)
      const r = service === undefined ? undefined : routes.get(service)
      if (r === undefined) continue
      if (row.svname === 'BACKEND') r.connections += num(row.scur)
      else if (row.svname !== 'FRONTEND' && r.tasks.length < 1000) r.tasks.push({ name: row.svname.slice(0, 256), connections: num(row.scur) })
    }
    const busiest = [...routes.values()].sort((a, b) => b.requests + b.connections - (a.requests + a.connections)).slice(0, TRAFFIC_ROUTES)
    const conns = /^CurrConns: *(\d+)$/m.exec(lastInfo ?? '')
    return {
      connections: conns === null ? 0 : Number(conns[1]),
      reloads: source.proxy?.().reloads ?? 0,
      droppedLogLines: totals.droppedBase + totals.droppedLast,
      durationBounds: [...DURATION_BUCKETS],
      routes: busiest.sort((a, b) => (a.serviceName < b.serviceName ? -1 : 1)),
    }
  }

  return {
    registry,
    traffic,
    update,
    async captureReplaced(pids, timeoutMs = 2_000) {
      const deadline = Date.now() + timeoutMs
      await Promise.all(
        pids.map(async (pid) => {
          // Until it holds no connection: then its counts are final (it exits right after).
          // Bounded: a worker draining WebSockets never gets there (each read is a whole `show stat`).
          for (let i = 0; i < 10 && Date.now() < deadline; i++) {
            const conns = await foldReplaced(pid).catch(() => null)
            if (conns === null || conns === 0) return
            await new Promise((r) => setTimeout(r, 100).unref())
          }
        }),
      )
    },
    async capture(timeoutMs = 2_000) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([update().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs).unref()))])
      clearTimeout(timer)
    },
  }
}

/** What the route metrics need of the HAProxy engine. */
export interface MetricsEngine {
  readonly paths: { adminSocket: string; masterSocket: string; metricsSocket: string }
  readonly process: unknown
  readonly counters: { reloads: number }
  backendServices(): ReadonlyMap<string, string>
}

/** The source for a HAProxy engine: its runtime API and what it serves; `status`: the agent's. */
export function engineSource(engine: MetricsEngine, status?: () => { version: number | null; applyFailure?: unknown }): RouteMetricsSource {
  return {
    sample: async () => (engine.process === undefined ? null : readSample(engine.paths.adminSocket)),
    sampleOf: async (pid) => parseSample(await sendCommand(engine.paths.masterSocket, `@!${pid} show info; @!${pid} show stat -1 6 -1`, 2_000)),
    services: () => engine.backendServices(),
    proxy: () => {
      const s = status?.()
      return { configVersion: s?.version ?? null, applyFailing: s?.applyFailure != null, reloads: engine.counters.reloads }
    },
  }
}

export interface MetricsServer {
  close(): Promise<void>
}

/**
 * Serves `registry` over HTTP on a unix socket (the engine's paths.metricsSocket), which the
 * admin listener forwards /metrics/tether to: one port for Prometheus, no new one to publish.
 */
export async function serveMetrics(registry: Registry, socketPath: string): Promise<MetricsServer> {
  await rm(socketPath, { force: true })
  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('GET only\n')
      return
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics unavailable: ${err instanceof Error ? err.message : String(err)}\n`),
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(socketPath, () => {
      server.off('error', reject)
      resolve()
    })
  })
  await chmod(socketPath, 0o600)
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/**
 * The route metrics of a HAProxy engine, served on its metrics socket. The engine must have been
 * created with `beforeReload: () => started.capture()` (see main.ts) for counts since the last
 * scrape to survive a reload.
 */
export async function startRouteMetrics(engine: MetricsEngine, status?: () => { version: number | null; applyFailure?: unknown }, logMetrics?: LogMetrics): Promise<RouteMetrics & MetricsServer> {
  const metrics = createRouteMetrics(engineSource(engine, status), logMetrics)
  logMetrics?.register(metrics.registry, () => new Set(engine.backendServices().values()))
  const server = await serveMetrics(metrics.registry, engine.paths.metricsSocket)
  return { ...metrics, close: () => server.close() }
}
