/**
 * Prometheus metrics, in a registry owned by one app (two apps in one process, as in the
 * tests, never share or double-register metrics).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'

export interface MetricsSources {
  /** Current snapshot size and version, or null when the store cannot be read. */
  table(): Promise<{ version: number; routes: number } | null>
  longPollWaiters(): number
  liveProxies(): Promise<number | null>
  /** Each live proxy's previous HAProxy workers still draining connections (from its heartbeat), or null. */
  oldWorkers?(): Promise<Array<{ proxy: string; count: number; connections: number; oldestAgeSeconds: number }> | null>
  /** Stored certificates (name, source, notAfter), or null when the store cannot be read. */
  certificates?(): Promise<Array<{ name: string; source: string; notAfter: string }> | null>
  /** ACME orders failing in a row per certificate (from the store, so every replica tells the same), or null. */
  acmeFailures?(): Promise<Array<{ name: string; failures: number }> | null>
}

export interface ControlMetrics {
  registry: Registry
  httpRequests: Counter<'method' | 'route' | 'status_code'>
  httpDuration: Histogram<'method' | 'route'>
  storeErrors: Counter<'operation'>
  /** ACME orders this replica ran, by result (issued, failed). */
  acmeOrders: Counter<'result'>
  /** Wires the gauges that are read at scrape time. */
  setSources(sources: MetricsSources): void
}

export function createMetrics(): ControlMetrics {
  const registry = new Registry()
  let sources: MetricsSources | undefined
  const httpRequests = new Counter({
    name: 'tether_http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status code.',
    labelNames: ['method', 'route', 'status_code'] as const,
    registers: [registry],
  })
  const httpDuration = new Histogram({
    name: 'tether_http_request_duration_seconds',
    help: 'Time to answer HTTP requests (long polls included), by method and route pattern.',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60],
    registers: [registry],
  })
  const storeErrors = new Counter({
    name: 'tether_store_errors_total',
    help: 'Requests that failed because the route store was unavailable.',
    labelNames: ['operation'] as const,
    registers: [registry],
  })
  const acmeOrders = new Counter({
    name: 'tether_acme_orders_total',
    help: 'ACME orders run by this control replica (the holder of the ordering lease), by result: issued or failed.',
    labelNames: ['result'] as const,
    registers: [registry],
  })
  new Gauge({
    name: 'tether_certificate_expiry_seconds',
    help: 'Seconds until each stored certificate expires (negative once expired), by name and source (api, dfp, acme).',
    labelNames: ['name', 'source'] as const,
    registers: [registry],
    async collect() {
      const list = await sources?.certificates?.()
      if (list == null) return
      this.reset()
      const now = Date.now()
      for (const c of list) this.set({ name: c.name, source: c.source }, Math.floor((Date.parse(c.notAfter) - now) / 1000))
    },
  })
  new Gauge({
    name: 'tether_acme_failures',
    help: 'ACME orders failed in a row for each wanted certificate (0 once issued or renewed); read from the store, the same on every replica.',
    labelNames: ['name'] as const,
    registers: [registry],
    async collect() {
      const list = await sources?.acmeFailures?.()
      if (list == null) return
      this.reset()
      for (const a of list) this.set({ name: a.name }, a.failures)
    },
  })
  new Gauge({
    name: 'tether_routes',
    help: 'Routes in the current routing table.',
    registers: [registry],
    async collect() {
      const t = await sources?.table()
      if (t != null) this.set(t.routes)
    },
  })
  new Gauge({
    name: 'tether_config_version',
    help: 'Current config version.',
    registers: [registry],
    async collect() {
      const t = await sources?.table()
      if (t != null) this.set(t.version)
    },
  })
  new Gauge({
    name: 'tether_long_poll_waiters',
    help: 'GET /v1/config long polls waiting on this replica.',
    registers: [registry],
    collect() {
      this.set(sources?.longPollWaiters() ?? 0)
    },
  })
  new Gauge({
    name: 'tether_live_proxies',
    help: 'Proxy replicas whose heartbeat has not expired.',
    registers: [registry],
    async collect() {
      const n = await sources?.liveProxies()
      if (n != null) this.set(n)
    },
  })
  // Previous HAProxy workers per proxy (TETHER_MAX_OLD_WORKERS bounds them): a reload storm with
  // long-lived connections shows here before it runs a node out of memory or descriptors.
  const oldWorkerGauge = (name: string, help: string, pick: (o: { count: number; connections: number; oldestAgeSeconds: number }) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['proxy'] as const,
      registers: [registry],
      async collect() {
        const list = await sources?.oldWorkers?.()
        if (list == null) return
        this.reset()
        for (const o of list) this.set({ proxy: o.proxy }, pick(o))
      },
    })
  }
  oldWorkerGauge('tether_proxy_old_workers', "Previous HAProxy workers still draining connections after reloads, per live proxy (from its heartbeat).", (o) => o.count)
  oldWorkerGauge('tether_proxy_old_worker_connections', 'Connections those previous workers hold (WebSockets, streams, TCP sessions), per live proxy.', (o) => o.connections)
  oldWorkerGauge('tether_proxy_old_worker_oldest_seconds', 'Age of the oldest previous worker still draining, per live proxy.', (o) => o.oldestAgeSeconds)
  return {
    registry,
    httpRequests,
    httpDuration,
    storeErrors,
    acmeOrders,
    setSources(s) {
      sources = s
    },
  }
}
