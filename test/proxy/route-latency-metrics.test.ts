/**
 * The per-route metrics counted from the access log (log-metrics.ts) through a real HAProxy: the
 * latency histogram, upgraded (WebSocket) connections and affinity outcomes (new, kept, re-pinned
 * when the cookie's task is gone), read on the admin listener's /metrics/tether, and again after a
 * reload; a route removed takes its series with it.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, openSync } from 'node:fs'
import { connect } from 'node:net'
import { Agent, request } from 'undici'
import { normalizeRoute } from '../../src/contracts/route.ts'
import { DURATION_BUCKETS, affinityOf, startLogMetrics } from '../../src/proxy/log-metrics.ts'
import { startRouteMetrics } from '../../src/proxy/route-metrics.ts'
import { startBackend, startWebSocketTask, type BackendReply } from '../helpers/backends.ts'
import { createTestProxy, waitFor } from '../helpers/haproxy.ts'
import { valueOf } from '../helpers/prometheus-text.ts'

describe('affinityOf (the cookie characters of the termination state)', () => {
  it('tells new, kept and re-pinned apart, and nothing for a route without affinity', () => {
    assert.equal(affinityOf('--NI'), 'new')
    assert.equal(affinityOf('--VN'), 'kept')
    assert.equal(affinityOf('--DI'), 'repinned')
    assert.equal(affinityOf('--II'), 'repinned')
    assert.equal(affinityOf('--EI'), 'new')
    assert.equal(affinityOf('----'), null)
    assert.equal(affinityOf('SC--'), null)
    assert.equal(affinityOf(''), null)
  })
})

describe('latency, upgrades and affinity per route from the access log, through a real HAProxy', () => {
  it('counts them, carries them over a reload, and drops a removed route’s series', async (t) => {
    const logMetrics = await startLogMetrics()
    t.after(() => logMetrics.close())
    // The standard-output copy of the log is not read here (access-log.test.ts reads it).
    const devNull = openSync('/dev/null', 'w')
    t.after(() => closeSync(devNull))
    const proxy = await createTestProxy(t, { accessLog: { format: 'json', metricsAddress: logMetrics.address }, accessLogOutput: devNull })
    t.after(() => proxy.stop())
    const metrics = await startRouteMetrics(proxy.engine, undefined, logMetrics)
    t.after(() => metrics.close())
    const a = await startBackend({ name: 'a' })
    const b = await startBackend({ name: 'b' })
    t.after(() => Promise.all([a.close(), b.close()]))
    const wsAddress = await startWebSocketTask(t)

    const web = (endpoints: string[]) => normalizeRoute({ serviceName: 'web', destinations: [{ servicePath: ['/app'], port: 80 }], sticky: true, endpoints })
    const chat = normalizeRoute({ serviceName: 'chat', destinations: [{ servicePath: ['/ws'], port: 80 }], endpoints: [wsAddress] })
    await proxy.engine.apply({ version: 1, routes: [web([a.address, b.address]), chat] })

    const scrape = async (): Promise<string> => {
      const res = await request(`${proxy.adminUrl}/metrics/tether`)
      assert.equal(res.statusCode, 200)
      return res.body.text()
    }
    const until = (what: string, ok: (text: string) => boolean): Promise<string> =>
      waitFor(what, async () => {
        const text = await scrape()
        return ok(text) ? text : undefined
      }, 15_000, 100)
    const count = (text: string, service: string) => valueOf(text, 'tether_route_request_duration_seconds_count', { service })
    const affinity = (text: string, outcome: string) => valueOf(text, 'tether_route_affinity_total', { service: 'web', outcome })

    // Five new visitors: five new affinity cookies. The first one comes back three times: kept.
    let cookie = ''
    let pinnedTo = ''
    for (let i = 0; i < 5; i++) {
      const res = await request(`${proxy.url}/app/${i}`)
      const reply = (await res.body.json()) as BackendReply
      if (i === 0) {
        cookie = ([] as string[]).concat(res.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]!).find((c) => !c.startsWith('sid=')) ?? ''
        pinnedTo = reply.instance
      }
    }
    assert.notEqual(cookie, '', 'an affinity cookie')
    for (let i = 0; i < 3; i++) {
      const res = await request(`${proxy.url}/app/again`, { headers: { cookie } })
      assert.equal(((await res.body.json()) as BackendReply).instance, pinnedTo)
    }
    // One WebSocket: upgraded, a message each way, closed (HAProxy logs it when it ends).
    const upgraded = await new Promise<string>((resolve, reject) => {
      let data = ''
      const s = connect(proxy.port, '127.0.0.1', () =>
        s.write('GET /ws/room HTTP/1.1\r\nHost: chat.local\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'),
      )
      s.setTimeout(10_000, () => s.destroy(new Error('timeout')))
      s.on('data', (d) => {
        data += d.toString('latin1')
        if (data.includes('\r\n\r\n') && !data.includes('ping')) s.write('ping')
        if (data.endsWith('ping')) s.destroy()
      })
      s.on('close', () => resolve(data))
      s.on('error', reject)
    })
    assert.match(upgraded, /^HTTP\/1\.1 101/)

    let text = await until('8 web requests and 1 upgrade counted', (x) => count(x, 'web') === 8 && valueOf(x, 'tether_route_upgraded_connections_total', { service: 'chat' }) === 1)
    assert.equal(affinity(text, 'new'), 5)
    assert.equal(affinity(text, 'kept'), 3)
    assert.equal(affinity(text, 'repinned'), undefined, 'no task went away yet')
    assert.equal(valueOf(text, 'tether_route_affinity_total', { service: 'chat' }), undefined, 'chat has no affinity')
    // The histogram: every bucket documented, cumulative, all 8 within +Inf; the upgrade is not a latency.
    const buckets = DURATION_BUCKETS.map((le) => valueOf(text, 'tether_route_request_duration_seconds_bucket', { service: 'web', le: String(le) }))
    assert.ok(buckets.every((v) => typeof v === 'number'), 'a series per bucket')
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]! >= buckets[i - 1]!, 'cumulative')
    assert.equal(valueOf(text, 'tether_route_request_duration_seconds_bucket', { service: 'web', le: '+Inf' }), 8)
    assert.ok((valueOf(text, 'tether_route_request_duration_seconds_sum', { service: 'web' }) ?? -1) >= 0)
    assert.equal(count(text, 'chat'), undefined, 'an upgraded connection is not counted as a request duration')

    // A reload (a route with a rewrite) that also takes the cookie's task away: the counts go on,
    // and the returning visitor is re-pinned to the task left.
    const left = pinnedTo === 'a' ? b : a
    const reloads = proxy.engine.counters.reloads
    const rw = normalizeRoute({ serviceName: 'rw', destinations: [{ servicePath: ['/rw'], port: 80, pathRewrite: [{ search: '^/rw/(.*)', replace: '/\\1' }] }], endpoints: [a.address] })
    await proxy.engine.apply({ version: 2, routes: [web([left.address]), chat, rw] })
    assert.equal(proxy.engine.counters.reloads, reloads + 1, 'the change went through a reload')
    // On a new connection: one kept alive from before would still reach the previous worker, draining.
    const fresh = new Agent()
    t.after(() => fresh.close())
    const moved = await request(`${proxy.url}/app/back`, { headers: { cookie }, dispatcher: fresh })
    assert.equal(((await moved.body.json()) as BackendReply).instance, left.name)
    text = await until('the re-pinned request counted', (x) => count(x, 'web') === 9)
    assert.equal(affinity(text, 'repinned'), 1)
    assert.equal(affinity(text, 'new'), 5, 'kept over the reload')
    assert.equal(affinity(text, 'kept'), 3, 'kept over the reload')
    assert.equal(valueOf(text, 'tether_route_upgraded_connections_total', { service: 'chat' }), 1)
    assert.equal(valueOf(text, 'tether_proxy_metrics_log_dropped_lines_total'), 0)

    // The chat route removed: its series go, web's stay.
    await proxy.engine.apply({ version: 3, routes: [web([left.address]), rw] })
    text = await until('chat gone', (x) => valueOf(x, 'tether_route_upgraded_connections_total', { service: 'chat' }) === undefined)
    assert.equal(count(text, 'web'), 9)
  })
})
