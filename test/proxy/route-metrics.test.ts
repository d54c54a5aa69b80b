/**
 * Per-route metrics on a real HAProxy (admin listener /metrics/tether, served by the agent's
 * route metrics): labelled by service names, and counting across a reload, where HAProxy's own
 * counters start again at zero.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { normalizeRoute, type Route } from '../../src/contracts/route.ts'
import { createHaproxyEngine, type HaproxyEngine } from '../../src/proxy/haproxy/haproxy-engine.ts'
import { startRouteMetrics, type MetricsServer, type RouteMetrics } from '../../src/proxy/route-metrics.ts'
import { TEST_COOKIE_KEY, waitFor } from '../helpers/haproxy.ts'
import { freePort } from '../helpers/redis-server.ts'

/** An application: 500 on paths ending in /err, else 200 with a 100-byte body. */
async function startApp(): Promise<{ server: Server; address: string }> {
  const server = createServer((req, res) => {
    req.resume()
    const fail = req.url?.endsWith('/err') === true
    res.writeHead(fail ? 500 : 200, { 'content-type': 'text/plain' }).end('x'.repeat(100))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const a = server.address()
  if (a === null || typeof a === 'string') throw new Error('no address')
  return { server, address: `127.0.0.1:${a.port}` }
}

/** A metric's value in a Prometheus text exposition (undefined when the series is absent). */
export function valueOf(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3])
  }
  return undefined
}

describe('per-route metrics on a real HAProxy', () => {
  let stateDir: string
  let engine: HaproxyEngine
  let metrics: (RouteMetrics & MetricsServer) | undefined
  let app: { server: Server; address: string }
  let port: number
  let adminPort: number
  const dispatcher = new Agent({ connections: 4 })
  let version = 0
  const routes: Route[] = []

  before(async () => {
    app = await startApp()
    stateDir = await mkdtemp(join(tmpdir(), 'tether-route-metrics-'))
    port = await freePort()
    adminPort = await freePort()
    engine = await createHaproxyEngine(
      { stateDir, listen: `127.0.0.1:${port}`, adminListen: `127.0.0.1:${adminPort}`, resolvers: ['127.0.0.1:1'], cookieKey: TEST_COOKIE_KEY, hardStopAfterMs: 5_000, restartBackoffMs: { min: 50, max: 1_000 } },
      // As main.ts wires it: the counters are read right before every reload.
      { beforeReload: async () => metrics?.capture(), afterReload: async (replaced) => void metrics?.captureReplaced(replaced) },
    )
    metrics = await startRouteMetrics(engine, () => ({ version: version === 0 ? null : version }))
    routes.push(
      normalizeRoute({ serviceName: 'shop', destinations: [{ servicePath: ['/shop'], port: 80 }], endpoints: [app.address] }),
      normalizeRoute({ serviceName: 'blog', destinations: [{ servicePath: ['/blog'], port: 80 }], endpoints: [app.address] }),
    )
    await engine.apply({ version: ++version, routes: [...routes] })
  })
  after(async () => {
    await metrics?.close()
    await engine?.stop()
    await dispatcher.close()
    app?.server.closeAllConnections()
    app?.server.close()
    if (stateDir !== undefined) await rm(stateDir, { recursive: true, force: true })
  })

  // A new connection per request, as new visitors: after a reload, the next request of an idle
  // keep-alive connection is answered by the previous worker (option idle-close-on-response),
  // which exits right after, and is not counted (README, Metrics).
  const send = async (path: string, n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const res = await request(`http://127.0.0.1:${port}${path}`, { dispatcher, headers: { connection: 'close' } })
      await res.body.text()
    }
  }
  const scrape = async (path = '/metrics/tether'): Promise<string> => {
    const t = performance.now()
    const res = await request(`http://127.0.0.1:${adminPort}${path}`, { headersTimeout: 10_000, bodyTimeout: 10_000 })
    const text = await res.body.text()
    assert.equal(res.statusCode, 200, `${path}: ${text.slice(0, 200)}`)
    if (path === '/metrics/tether') console.log(`MEASURED scrape of /metrics/tether through the admin listener: ${(performance.now() - t).toFixed(1)} ms`)
    return text
  }
  /** Scrapes until the route's counters read `want` (HAProxy counts a response as it sends it). */
  let last = ''
  let blogTotal = -1
  const until = (service: string, want: { ok: number; err: number }): Promise<string> =>
    waitFor(`${service} at ${JSON.stringify(want)}`, async () => {
      const text = await scrape()
      const ok = valueOf(text, 'tether_route_requests_total', { service, code_class: '2xx' })
      const err = valueOf(text, 'tether_route_requests_total', { service, code_class: '5xx' })
      last = `${ok}/${err}`
      return ok === want.ok && err === want.err ? text : undefined
    }, 15_000, 100).catch((e: Error) => {
      throw new Error(`${e.message} (last read 2xx/5xx: ${last})`)
    })

  it('labels by service name, counts by status class, bytes, and per task', async () => {
    await send('/shop/a', 30)
    await send('/shop/err', 4)
    await send('/blog/x', 3)
    const text = await until('shop', { ok: 30, err: 4 })
    assert.equal(valueOf(text, 'tether_route_requests_total', { service: 'blog', code_class: '2xx' }), 3)
    assert.equal(valueOf(text, 'tether_route_requests_total', { service: 'shop', code_class: '4xx' }), 0)
    assert.ok((valueOf(text, 'tether_route_sent_bytes_total', { service: 'shop' }) ?? 0) >= 34 * 100, 'the bodies sent are counted')
    assert.ok((valueOf(text, 'tether_route_received_bytes_total', { service: 'shop' }) ?? 0) > 0)
    assert.ok(valueOf(text, 'tether_route_task_active_connections', { service: 'shop' }) !== undefined, 'one series per task of the route')
    assert.ok(valueOf(text, 'tether_route_response_time_avg_seconds', { service: 'shop' }) !== undefined)
    assert.equal(valueOf(text, 'tether_proxy_haproxy_up'), 1)
    assert.equal(valueOf(text, 'tether_proxy_config_version'), 1)
    // Service names, not HAProxy's backend names.
    assert.doesNotMatch(text, /svc_|tether\.spare|tether\.notfound|tether\.metrics/)
    // HAProxy's own exporter is still at /metrics, with its backend names.
    assert.match(await scrape('/metrics'), /haproxy_backend_http_responses_total\{proxy="svc_shop_80",code="2xx"\} 30/)
  })

  it('counts across a reload (another route added with a rewrite): requests before and after, none lost', async () => {
    // Not scraped after these: only the read right before the reload can carry them over.
    await send('/shop/b', 10)
    await send('/shop/err', 1)
    const reloads = engine.counters.reloads
    routes.push(normalizeRoute({ serviceName: 'rw', destinations: [{ servicePath: ['/rw'], port: 80, pathRewrite: [{ search: '^/rw/(.*)', replace: '/\\1' }] }], endpoints: [app.address] }))
    await engine.apply({ version: ++version, routes: [...routes] })
    assert.equal(engine.counters.reloads, reloads + 1, 'the change went through a reload')
    // HAProxy's own counters started again at zero in the new worker ...
    const raw = await waitFor('the new worker serving', async () => {
      const text = await scrape('/metrics')
      return /haproxy_backend_http_responses_total\{proxy="svc_rw_80",code="2xx"\}/.test(text) ? text : undefined
    })
    assert.match(raw, /haproxy_backend_http_responses_total\{proxy="svc_shop_80",code="2xx"\} 0\n/)
    // ... Tether's did not go down and hold the requests sent before the reload.
    let text = await until('shop', { ok: 40, err: 5 })
    assert.equal(valueOf(text, 'tether_route_requests_total', { service: 'blog', code_class: '2xx' }), 3)
    assert.equal(valueOf(text, 'tether_proxy_reloads_total'), reloads + 1)
    // And the requests after it are added to them.
    await send('/shop/c', 5)
    await send('/rw/y', 2)
    text = await until('shop', { ok: 45, err: 5 })
    assert.equal(valueOf(text, 'tether_route_requests_total', { service: 'rw', code_class: '2xx' }), 2)
    assert.equal(valueOf(text, 'tether_proxy_config_version'), 2)
  })

  it('counts requests sent all through a reload, those the previous worker answered while the new one started included', async () => {
    const before = valueOf(await scrape(), 'tether_route_requests_total', { service: 'blog', code_class: '2xx' }) ?? 0
    let ok = 0
    let during = 0
    let applying = false
    let stop = false
    const loop = (async () => {
      for (let i = 0; i < 20_000 && !stop; i++) {
        const res = await request(`http://127.0.0.1:${port}/blog/loop`, { dispatcher, headers: { connection: 'close' } }).catch(() => undefined)
        if (res === undefined) continue
        await res.body.text()
        if (res.statusCode === 200) {
          ok++
          if (applying) during++
        }
      }
    })()
    await waitFor('traffic', async () => (ok >= 5 ? true : undefined))
    const reloads = engine.counters.reloads
    applying = true
    routes.push(normalizeRoute({ serviceName: 'rw2', destinations: [{ servicePath: ['/rw2'], port: 80, pathRewrite: [{ search: '^/rw2/(.*)', replace: '/\\1' }] }], endpoints: [app.address] }))
    await engine.apply({ version: ++version, routes: [...routes] })
    applying = false
    assert.equal(engine.counters.reloads, reloads + 1)
    const after = ok
    await waitFor('traffic after the reload', async () => (ok >= after + 5 ? true : undefined))
    stop = true
    await loop
    console.log(`MEASURED requests answered while the reload ran: ${during} of ${ok}`)
    await until('blog', { ok: before + ok, err: 0 })
  })

  it('counts across a restart of HAProxy (killed): what was read before it died is kept', async () => {
    const b0 = valueOf(await scrape(), 'tether_route_requests_total', { service: 'blog', code_class: '2xx' }) ?? 0
    await send('/blog/y', 4)
    await until('blog', { ok: b0 + 4, err: 0 })
    const master = engine.process!.pid!
    process.kill(master, 'SIGKILL')
    // Served again by the restarted HAProxy: a worker of the killed master can still answer for a
    // moment before it notices its master is gone, so the restart is waited for first.
    await waitFor('served again', async () => {
      if (engine.process!.restarts < 1) return undefined
      const res = await request(`http://127.0.0.1:${port}/rw/probe`, { dispatcher, headers: { connection: 'close' } }).catch(() => undefined)
      await res?.body.text()
      return res?.statusCode === 200 ? true : undefined
    }, 15_000, 100)
    assert.equal(engine.process!.restarts, 1)
    assert.notEqual(engine.process!.pid, master)
    await send('/blog/z', 2)
    const text = await until('blog', { ok: b0 + 6, err: 0 })
    blogTotal = b0 + 6
    assert.equal(valueOf(text, 'tether_route_requests_total', { service: 'shop', code_class: '2xx' }), 45, 'the other routes kept theirs too')
  })

  it('a removed route takes its series with it; the others stay', async () => {
    const shop = routes.shift()!
    assert.equal(shop.serviceName, 'shop')
    await engine.apply({ version: ++version, routes: [...routes] })
    const text = await waitFor('shop gone', async () => {
      const t = await scrape()
      return valueOf(t, 'tether_route_requests_total', { service: 'shop', code_class: '2xx' }) === undefined ? t : undefined
    })
    assert.equal(valueOf(text, 'tether_route_requests_total', { service: 'blog', code_class: '2xx' }), blogTotal)
  })
})

describe('per-route metrics when a spare backend changes hands (no reload)', () => {
  it('a route placed in a freed spare starts at its own zero, not at the previous route’s counts', async (t) => {
    const app = await startApp()
    t.after(() => {
      app.server.closeAllConnections()
      app.server.close()
    })
    const stateDir = await mkdtemp(join(tmpdir(), 'tether-route-metrics-'))
    const [port, adminPort] = [await freePort(), await freePort()]
    let metrics: (RouteMetrics & MetricsServer) | undefined
    const engine = await createHaproxyEngine(
      { stateDir, listen: `127.0.0.1:${port}`, adminListen: `127.0.0.1:${adminPort}`, resolvers: ['127.0.0.1:1'], cookieKey: TEST_COOKIE_KEY, hardStopAfterMs: 5_000, spareFromRoutes: 1, spareBackends: 1 },
      { beforeReload: async () => metrics?.capture() },
    )
    t.after(async () => {
      await metrics?.close()
      await engine.stop()
      await rm(stateDir, { recursive: true, force: true })
    })
    metrics = await startRouteMetrics(engine)
    const r = (serviceName: string): Route => normalizeRoute({ serviceName, destinations: [{ servicePath: [`/${serviceName}`], port: 80 }], endpoints: [app.address] })
    const get = async (path: string, n: number): Promise<void> => {
      for (let i = 0; i < n; i++) await (await request(`http://127.0.0.1:${port}${path}`, { headers: { connection: 'close' } })).body.text()
    }
    const read = async (): Promise<string> => (await request(`http://127.0.0.1:${adminPort}/metrics/tether`)).body.text()
    await engine.apply({ version: 1, routes: [r('base')] })
    const reloads = engine.counters.reloads
    await engine.apply({ version: 2, routes: [r('base'), r('web')] })
    await get('/web/a', 6)
    await waitFor('web at 6', async () => (valueOf(await read(), 'tether_route_requests_total', { service: 'web', code_class: '2xx' }) === 6 ? true : undefined))
    // web goes, shop takes its spare; not read in between.
    await engine.apply({ version: 3, routes: [r('base')] })
    await engine.apply({ version: 4, routes: [r('base'), r('shop')] })
    assert.equal(engine.counters.reloads, reloads, 'web and then shop were served from the spare, without a reload')
    assert.match([...engine.backendServices()].find(([, s]) => s === 'shop')![0], /spare/, 'shop is in the spare web had')
    await get('/shop/a', 2)
    const text = await waitFor('shop at 2', async () => {
      const t = await read()
      return valueOf(t, 'tether_route_requests_total', { service: 'shop', code_class: '2xx' }) === 2 ? t : undefined
    })
    assert.equal(valueOf(text, 'tether_route_requests_total', { service: 'web', code_class: '2xx' }), undefined, 'web is gone')
    assert.equal(valueOf(text, 'tether_route_requests_total', { service: 'base', code_class: '2xx' }), 0)
  })
})
