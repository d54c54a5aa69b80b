import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createMemoryRouteStore } from '../../src/control/store/memory-route-store.ts'
import { api, heartbeat, proxy, startControl, waitFor } from './harness.ts'
import { fakeClock } from './store/route-store.contract.ts'

const put = (name: string, query = '') => ({ method: 'PUT' as const, url: `/v1/reconfigure?serviceName=${name}&servicePath=/${name}&port=80${query}`, headers: api })
const beat = (id: string, version: number, extra: Record<string, unknown> = {}) => ({ method: 'PUT' as const, url: `/v1/proxies/${id}`, headers: proxy, payload: heartbeat(version, extra) })

describe('PUT /v1/proxies/{id}', () => {
  it('records a heartbeat (204) that GET /v1/proxies then shows, with the time it was received', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject(beat('proxy-1', 0, { node: 'worker-3' }))
    assert.equal(res.statusCode, 204)
    const list = (await app.inject({ url: '/v1/proxies' })).json().proxies
    assert.equal(list.length, 1)
    assert.equal(list[0].id, 'proxy-1')
    assert.equal(list[0].node, 'worker-3')
    assert.ok(!Number.isNaN(Date.parse(list[0].receivedAt)))
  })

  it('forgets a proxy whose heartbeats stop (after the TTL)', async (t) => {
    // The store's clock is injected: on a loaded machine 150 ms of wall time could pass before the first read.
    const clock = fakeClock()
    const store = createMemoryRouteStore({ now: clock.now })
    t.after(() => store.close())
    const { app } = await startControl(t, { store, proxyTtlMs: 150 })
    await app.inject(beat('proxy-1', 0))
    await app.inject(beat('proxy-2', 0))
    clock.advance(100)
    await app.inject(beat('proxy-2', 0))
    assert.deepEqual((await app.inject({ url: '/v1/proxies' })).json().proxies.map((p: { id: string }) => p.id), ['proxy-1', 'proxy-2'])
    clock.advance(60)
    assert.deepEqual((await app.inject({ url: '/v1/proxies' })).json().proxies.map((p: { id: string }) => p.id), ['proxy-2'], 'proxy-1 is past its TTL, proxy-2 heartbeated since')
  })

  it('needs the proxy token (or an API token)', async (t) => {
    const { app } = await startControl(t)
    assert.equal((await app.inject({ ...beat('p', 0), headers: {} })).statusCode, 401)
    assert.equal((await app.inject({ ...beat('p', 0), headers: api })).statusCode, 204)
  })

  it('refuses a malformed heartbeat or proxy id, naming the field', async (t) => {
    const { app } = await startControl(t)
    const bad = await app.inject({ ...beat('p', 0), payload: { ...heartbeat(0), version: -1 } })
    assert.equal(bad.statusCode, 400)
    assert.match(bad.json().message, /^version:/)
    const unknown = await app.inject({ ...beat('p', 0), payload: { ...heartbeat(0), colour: 'red' } })
    assert.equal(unknown.json().code, 'UNKNOWN_PARAMETER')
    const id = await app.inject(beat('-bad', 0))
    assert.equal(id.statusCode, 400)
    assert.match(id.json().message, /id/)
  })
})

describe('GET /v1/status', () => {
  it('shows the current version, live and converged proxies, laggards, and refused routes with their errors', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('a'))
    await app.inject(put('b'))
    await app.inject(beat('p1', 2))
    await app.inject(beat('p2', 1, { node: 'n2', status: 'degraded', refusedRoutes: [{ serviceName: 'b', error: "parsing [haproxy.cfg:42]: unknown keyword 'x'" }] }))
    const res = await app.inject({ url: '/v1/status' })
    assert.equal(res.statusCode, 200)
    const s = res.json()
    assert.equal(s.version, 2)
    assert.equal(s.live, 2)
    assert.equal(s.converged, 1)
    assert.deepEqual(s.laggards, [{ id: 'p2', version: 1, node: 'n2' }])
    assert.deepEqual(s.refusedRoutes, [{ serviceName: 'b', error: "parsing [haproxy.cfg:42]: unknown keyword 'x'", proxies: ['p2'] }])
  })

  it('lists a route with no task, or no healthy task, on a proxy as a route problem (it answers 503 there), next to what proxies report', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('shop'))
    await app.inject(put('cart'))
    await app.inject(put('empty'))
    const backend = (serviceName: string, servers: Array<[string, 'up' | 'down' | 'maint']>) => ({
      serviceName,
      port: 80,
      up: servers.filter(([, s]) => s === 'up').length,
      down: servers.filter(([, s]) => s !== 'up').length,
      servers: servers.map(([name, status]) => ({ name, status })),
    })
    await app.inject(beat('p1', 3, { backends: [backend('shop', [['shop.1', 'up']]), backend('cart', [['cart.1', 'down'], ['cart.2', 'down']]), backend('empty', [])] }))
    // On p2 the cart's task passes its check: the problem names p1 only.
    await app.inject(beat('p2', 3, { status: 'degraded', routeProblems: [{ serviceName: 'shop', problem: 'usersSecret shop-users is not mounted' }], backends: [backend('shop', [['shop.1', 'up']]), backend('cart', [['cart.1', 'up']]), backend('empty', [['empty.1', 'maint']])] }))
    const s = (await app.inject({ url: '/v1/status' })).json()
    assert.deepEqual(s.routeProblems, [
      { serviceName: 'cart', problem: 'no healthy task: 2 tasks failing the health check, requests answered 503', proxies: ['p1'] },
      { serviceName: 'empty', problem: 'no task: the service has no running task (or endpoint) to send requests to, requests answered 503', proxies: ['p1', 'p2'] },
      { serviceName: 'shop', problem: 'usersSecret shop-users is not mounted', proxies: ['p2'] },
    ])
    // Once a task runs and passes its check, the problem is gone.
    await app.inject(beat('p1', 3, { backends: [backend('shop', [['shop.1', 'up']]), backend('cart', [['cart.1', 'up']]), backend('empty', [['empty.1', 'up']])] }))
    await app.inject(beat('p2', 3, { backends: [backend('shop', [['shop.1', 'up']]), backend('cart', [['cart.1', 'up']]), backend('empty', [['empty.1', 'up']])] }))
    const after = (await app.inject({ url: '/v1/status' })).json()
    assert.deepEqual(after.routeProblems, [])
    assert.equal(after.routeHealth.length, 3)
  })
})

describe('reconfigure … &wait=converged', () => {
  it('does not call a route converged when a proxy that applied it cannot serve it: 502 ROUTE_NOT_SERVED naming the proxy and the problem, the change stored', async (t) => {
    const { app, store } = await startControl(t)
    await app.inject(beat('p2', 1, { status: 'degraded', routeProblems: [{ serviceName: 'other', problem: 'not ours to report' }] }))
    await app.inject(beat('p1', 1, { status: 'degraded', routeProblems: [{ serviceName: 'cache', problem: 'TCP port 6379 is not served by this proxy: it cannot be bound (EADDRINUSE: address already in use by another process); the proxy serves everything else' }] }))
    const res = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=cache&reqMode=tcp&srcPort=6379&port=6379&wait=converged&timeout=1', headers: api })
    assert.equal(res.statusCode, 502, res.body)
    assert.equal(res.json().code, 'ROUTE_NOT_SERVED')
    assert.equal(
      res.json().message,
      '1 of 2 live proxies applied version 1 but do not serve route "cache" as asked: proxy p1: TCP port 6379 is not served by this proxy: it cannot be bound (EADDRINUSE: address already in use by another process); the proxy serves everything else. ' +
        'The change itself is stored (version 1); GET /v1/status shows the problem until a version fixes it.',
    )
    assert.equal((await store.get('cache'))?.version, 1)
    // A route the problems do not concern converges as before.
    await app.inject(beat('p1', 2, { status: 'degraded', routeProblems: [{ serviceName: 'cache', problem: 'TCP port 6379 ...' }] }))
    await app.inject(beat('p2', 2))
    const fine = await app.inject(put('a', '&wait=converged&timeout=1'))
    assert.equal(fine.statusCode, 200, fine.body)
    assert.deepEqual(fine.json().convergence, { version: 2, live: 2, converged: 2, laggards: [] })
  })

  it("refuses a TCP route on a port live proxies report as their own listener: 409 LISTENER_CONFLICT naming the field, the port and the proxies; nothing stored", async (t) => {
    const { app, store } = await startControl(t)
    await app.inject(beat('p1', 0, { listeners: [{ kind: 'http', port: 8080 }, { kind: 'admin', port: 9404 }] }))
    await app.inject(beat('p2', 0, { listeners: [{ kind: 'http', port: 8080 }] }))
    const res = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=cache&reqMode=tcp&srcPort=8080&port=6379', headers: api })
    assert.equal(res.statusCode, 409, res.body)
    assert.equal(res.json().code, 'LISTENER_CONFLICT')
    assert.match(res.json().message, /^srcPort: TCP port 8080 is the HTTP listener \(TETHER_PROXY_LISTEN\) of live proxies p1, p2; /)
    const body = await app.inject({ method: 'PUT', url: '/v1/routes/cache', headers: api, payload: { tcp: [{ srcPort: 6379, port: 6379 }, { srcPort: 9404, port: 1 }] } })
    assert.equal(body.statusCode, 409, body.body)
    assert.match(body.json().message, /^srcPort: TCP port 9404 is the admin listener \(TETHER_ADMIN_LISTEN\) of live proxy p1; /)
    assert.equal(await store.get('cache'), null)
    assert.equal(await store.version(), 0)
    const ok = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=cache&reqMode=tcp&srcPort=6379&port=6379', headers: api })
    assert.equal(ok.statusCode, 200, ok.body)
  })

  it('does not call zero live proxies converged: 504 after the timeout saying no proxy is live, the change stored', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject(put('a', '&wait=converged&timeout=1'))
    assert.equal(res.statusCode, 504, res.body)
    assert.equal(res.json().code, 'CONVERGENCE_TIMEOUT')
    assert.match(res.json().message, /^no live proxy applied version 1 within 1s: no proxy has sent a heartbeat/)
    assert.match(res.json().message, /The change itself is stored \(version 1\)/)
    assert.equal((await store.get('a'))?.version, 1)
  })

  it('with no live proxy, answers converged once a proxy comes up and applies the version', async (t) => {
    const { app } = await startControl(t, { convergencePollMs: 10_000 })
    let answered = false
    const waiting = app.inject(put('a', '&wait=converged&timeout=30')).then((r) => ((answered = true), r))
    await waitFor(async () => (await app.store.version()) === 1)
    await app.inject(beat('p1', 0))
    await new Promise((r) => setTimeout(r, 50))
    assert.equal(answered, false, 'a proxy at the old version is not converged')
    await app.inject(beat('p1', 1))
    const res = await waiting
    assert.equal(res.statusCode, 200)
    assert.deepEqual(res.json().convergence, { version: 1, live: 1, converged: 1, laggards: [] })
  })

  it('answers once every live proxy reports the new version', async (t) => {
    const { app } = await startControl(t, { convergencePollMs: 10_000 })
    await app.inject(beat('p1', 0))
    await app.inject(beat('p2', 0))
    let answered = false
    const waiting = app.inject(put('a', '&wait=converged&timeout=30')).then((r) => ((answered = true), r))
    await waitFor(async () => (await app.store.version()) === 1)
    await app.inject(beat('p1', 1))
    await new Promise((r) => setTimeout(r, 50))
    assert.equal(answered, false, 'p2 has not applied version 1 yet')
    await app.inject(beat('p2', 1))
    const res = await waiting
    assert.equal(res.statusCode, 200)
    assert.deepEqual(res.json().convergence, { version: 1, live: 2, converged: 2, laggards: [] })
  })

  it('answers 504 CONVERGENCE_TIMEOUT naming the laggards, and keeps the change stored', async (t) => {
    const { app, store } = await startControl(t)
    await app.inject(beat('p1', 0))
    await app.inject(beat('stuck-proxy', 0, { node: 'worker-9' }))
    const waiting = app.inject(put('a', '&wait=converged&timeout=1s'))
    await waitFor(async () => (await store.version()) === 1)
    await app.inject(beat('p1', 1))
    const res = await waiting
    assert.equal(res.statusCode, 504)
    assert.equal(res.json().code, 'CONVERGENCE_TIMEOUT')
    assert.match(res.json().message, /stuck-proxy \(at version 0, node worker-9\)/)
    assert.doesNotMatch(res.json().message, /p1 /)
    assert.match(res.json().message, /stored/)
    assert.notEqual(await store.get('a'), null)
  })

  it('works on remove, on the resource style and on rollback too', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('a'))
    await app.inject(beat('p1', 1))
    const remove = app.inject({ method: 'DELETE', url: '/v1/remove?serviceName=a&wait=converged&timeout=1', headers: api })
    const removed = await remove
    assert.equal(removed.statusCode, 504)
    assert.match(removed.json().message, /version 2/)
    await app.inject(beat('p1', 2))
    const rollback = app.inject({ method: 'POST', url: '/v1/config/rollback?to=1&wait=converged&timeout=10', headers: api })
    await waitFor(async () => (await app.store.version()) === 3)
    await app.inject(beat('p1', 3))
    assert.equal((await rollback).statusCode, 200)
    const resource = app.inject({ method: 'PUT', url: '/v1/routes/b?wait=converged&timeout=10', headers: api, payload: { servicePath: ['/b'], port: 80 } })
    await waitFor(async () => (await app.store.version()) === 4)
    await app.inject(beat('p1', 4))
    const r = await resource
    assert.equal(r.statusCode, 200)
    assert.equal(r.json().convergence.converged, 1)
  })
})
