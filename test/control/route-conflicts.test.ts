/**
 * Conflicts are caught when they are made: Tether's own forms refuse a path another service
 * holds (409 ROUTE_CONFLICT) unless takeover=true moves it; the Docker Flow Proxy form shares
 * it the way DFP does and says who is shadowed.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { api, startControl } from './harness.ts'

const put = (url: string) => ({ method: 'PUT' as const, url, headers: api })

describe('409 ROUTE_CONFLICT through Tether forms', () => {
  const forms = [
    { name: 'query form', second: () => put('/v1/reconfigure?serviceName=alpha&servicePath=/x,/demo&port=80') },
    {
      name: 'JSON form',
      second: () => ({ method: 'POST' as const, url: '/v1/reconfigure', headers: api, payload: { serviceName: 'alpha', servicePath: ['/x', '/demo'], port: 80 } }),
    },
    { name: 'resource form', second: () => ({ method: 'PUT' as const, url: '/v1/routes/alpha', headers: api, payload: { servicePath: ['/x', '/demo'], port: 80 } }) },
  ]
  for (const form of forms) {
    it(`refuses through the ${form.name} a path go-demo holds, naming the field, the value and the holder, and stores nothing`, async (t) => {
      const { app, store } = await startControl(t)
      assert.equal((await app.inject(put('/v1/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080'))).statusCode, 200)
      const res = await app.inject(form.second())
      assert.equal(res.statusCode, 409)
      const body = res.json()
      assert.equal(body.code, 'ROUTE_CONFLICT')
      assert.equal(body.error, 'Conflict')
      assert.match(body.message, /^servicePath: "\/demo" is already served by service "go-demo" \(for any host\); nothing was stored\. .*takeover=true/)
      assert.equal(await store.version(), 1)
      assert.equal(await store.get('alpha'), null)
      assert.deepEqual((await store.get('go-demo'))?.route.destinations, [{ servicePath: ['/demo'], port: 8080 }])
    })
  }

  it('names the host when the conflict is on a domain, and lets another domain or a host-less route have the same path', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('/v1/reconfigure?serviceName=a&servicePath=/demo&port=80&serviceDomain=a.example.com'))
    assert.equal((await app.inject(put('/v1/reconfigure?serviceName=b&servicePath=/demo&port=80&serviceDomain=b.example.com'))).statusCode, 200)
    assert.equal((await app.inject(put('/v1/reconfigure?serviceName=c&servicePath=/demo&port=80'))).statusCode, 200)
    const res = await app.inject(put('/v1/reconfigure?serviceName=d&servicePath=/demo/&port=80&serviceDomain=A.example.com'))
    assert.equal(res.statusCode, 409)
    assert.match(res.json().message, /^serviceDomain \+ servicePath: "a\.example\.com\/demo" is already served by service "a" \(for host a\.example\.com\)/)
  })

  it('lets the holder change its own route (another port, more paths)', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('/v1/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080'))
    const res = await app.inject(put('/v1/reconfigure?serviceName=go-demo&servicePath=/demo,/more&port=9090'))
    assert.equal(res.statusCode, 200)
    assert.deepEqual(res.json().route.destinations, [{ servicePath: ['/demo', '/more'], port: 9090 }])
  })
})

describe('takeover=true: the blue-green switch', () => {
  it('moves the path to the new service in one version, keeps the holder\'s other paths, and notes it in the change log', async (t) => {
    const { app, store } = await startControl(t)
    await app.inject(put('/v1/reconfigure?serviceName=app-blue&servicePath=/app,/blue-admin&port=80'))
    const res = await app.inject(put('/v1/reconfigure?serviceName=app-green&servicePath=/app&port=80&takeover=true'))
    assert.equal(res.statusCode, 200)
    const body = res.json()
    assert.deepEqual([body.version, body.changed], [2, true])
    assert.deepEqual(body.takenOver, [{ serviceName: 'app-blue', servicePath: ['/app'], removed: false }])
    assert.deepEqual((await store.get('app-blue'))?.route.destinations, [{ servicePath: ['/blue-admin'], port: 80 }])
    assert.deepEqual((await store.get('app-green'))?.route.destinations, [{ servicePath: ['/app'], port: 80 }])
    const log = (await app.inject({ method: 'GET', url: '/v1/changes?since=1' })).json().changes
    assert.deepEqual(
      log.map((c: { version: number; serviceName: string; note?: string }) => [c.version, c.serviceName, c.note]),
      [
        [2, 'app-blue', 'takeover by "app-green": /app from "app-blue"'],
        [2, 'app-green', 'takeover by "app-green": /app from "app-blue"'],
      ],
    )
  })

  it('removes a holder left with no path, and switches back the same way (JSON form)', async (t) => {
    const { app, store } = await startControl(t)
    await app.inject(put('/v1/reconfigure?serviceName=app-blue&servicePath=/app&port=80'))
    await app.inject(put('/v1/reconfigure?serviceName=app-green&servicePath=/app&port=80&takeover=true'))
    assert.equal(await store.get('app-blue'), null)
    const back = await app.inject({ method: 'POST', url: '/v1/reconfigure?takeover=true', headers: api, payload: { serviceName: 'app-blue', servicePath: ['/app'], port: 80 } })
    assert.equal(back.statusCode, 200)
    assert.deepEqual(back.json().takenOver, [{ serviceName: 'app-green', servicePath: ['/app'], removed: true }])
    assert.deepEqual((await store.snapshot()).routes.map((r) => r.serviceName), ['app-blue'])
  })

  it('refuses a takeover that would split a holder serving the path on several hosts, and stores nothing', async (t) => {
    const { app, store } = await startControl(t)
    await app.inject(put('/v1/reconfigure?serviceName=blue&servicePath=/app&port=80&serviceDomain=a.example.com,b.example.com'))
    const res = await app.inject(put('/v1/reconfigure?serviceName=green&servicePath=/app&port=80&serviceDomain=a.example.com&takeover=true'))
    assert.equal(res.statusCode, 409)
    assert.equal(res.json().code, 'ROUTE_CONFLICT')
    assert.match(res.json().message, /takeover: "blue" serves "\/app" for hosts a\.example\.com, b\.example\.com/)
    assert.equal(await store.version(), 1)
    assert.equal(await store.get('green'), null)
  })

  it('allows a rollback to a version from before the switch', async (t) => {
    const { app, store } = await startControl(t)
    await app.inject(put('/v1/reconfigure?serviceName=app-blue&servicePath=/app&port=80'))
    await app.inject(put('/v1/reconfigure?serviceName=app-green&servicePath=/app&port=80&takeover=true'))
    const res = await app.inject({ method: 'POST', url: '/v1/config/rollback?to=1', headers: api })
    assert.equal(res.statusCode, 200)
    assert.deepEqual((await store.snapshot()).routes.map((r) => r.serviceName), ['app-blue'])
  })
})

describe('Docker Flow Proxy form: shared paths, reported', () => {
  it('stores both routes, lets aclName order decide, and reports the shadowed one in warnings, GET /v1/routes/{serviceName} and /v1/status', async (t) => {
    const { app, store } = await startControl(t)
    const first = await app.inject(put('/v1/docker-flow-proxy/reconfigure?serviceName=alpha&servicePath=/demo&port=80'))
    assert.equal(first.statusCode, 200)
    assert.equal(first.json().warnings, undefined)
    const second = await app.inject(put('/v1/docker-flow-proxy/reconfigure?serviceName=beta&servicePath=/demo&port=80&aclName=00-beta'))
    assert.equal(second.statusCode, 200)
    assert.equal(second.json().changed, true)
    assert.deepEqual(second.json().warnings, ['/demo (port 80) of "alpha" is shadowed: "beta" serves it (Docker Flow Proxy order: aclName, else service name)'])
    assert.deepEqual((await store.snapshot()).routes.map((r) => [r.serviceName, r.aclName]), [
      ['alpha', undefined],
      ['beta', '00-beta'],
    ])

    const alpha = (await app.inject({ method: 'GET', url: '/v1/routes/alpha' })).json()
    assert.deepEqual(alpha.shadowed, [
      { serviceName: 'alpha', host: '', path: '/demo', port: 80, shadowedBy: 'beta', message: '/demo (port 80) of "alpha" is shadowed: "beta" serves it (Docker Flow Proxy order: aclName, else service name)' },
    ])
    const status = (await app.inject({ method: 'GET', url: '/v1/status' })).json()
    assert.deepEqual(
      status.shadowed.map((s: { serviceName: string; shadowedBy: string }) => [s.serviceName, s.shadowedBy]),
      [['alpha', 'beta']],
    )
  })

  it('keeps the service name order without aclName, and a Tether-form write then conflicts with the path', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('/v1/docker-flow-proxy/reconfigure?serviceName=zeta&servicePath=/shop&port=80'))
    const res = await app.inject(put('/v1/docker-flow-proxy/reconfigure?serviceName=eta&servicePath=/shop&port=80'))
    assert.deepEqual(res.json().warnings, ['/shop (port 80) of "zeta" is shadowed: "eta" serves it (Docker Flow Proxy order: aclName, else service name)'])
    const own = await app.inject(put('/v1/reconfigure?serviceName=theta&servicePath=/shop&port=80'))
    assert.equal(own.statusCode, 409)
    assert.match(own.json().message, /already served by service "eta"/)
  })

  it('reports nothing shadowed for a route that shares no path', async (t) => {
    const { app } = await startControl(t)
    await app.inject(put('/v1/docker-flow-proxy/reconfigure?serviceName=alpha&servicePath=/a&port=80'))
    const route = (await app.inject({ method: 'GET', url: '/v1/routes/alpha' })).json()
    assert.equal(route.route.serviceName, 'alpha')
    assert.equal(route.shadowed, undefined)
    const status = (await app.inject({ method: 'GET', url: '/v1/status' })).json()
    assert.equal(status.version, 1)
    assert.deepEqual(status.shadowed, [])
  })
})

describe('the default backend and host redirects are held by one service', () => {
  it('refuses a second isDefaultBackend or a redirect of a held host through Tether forms (409 naming the field and the holder); takeover=true moves them', async (t) => {
    const { app, store } = await startControl(t)
    assert.equal((await app.inject(put('/v1/reconfigure?serviceName=blue&servicePath=/blue&port=80&isDefaultBackend=true&serviceDomain=new.example&redirectFromDomain=old.example'))).statusCode, 200)

    const second = await app.inject(put('/v1/reconfigure?serviceName=green&servicePath=/green&port=80&isDefaultBackend=true'))
    assert.equal(second.statusCode, 409, second.body)
    assert.match(second.json().message, /^isDefaultBackend: service "blue" is already the default backend .*nothing was stored.*takeover=true/)
    const redirect = await app.inject({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 'green', servicePath: ['/green'], port: 80, serviceDomain: ['green.example'], redirectFromDomain: ['old.example'] } })
    assert.equal(redirect.statusCode, 409, redirect.body)
    assert.match(redirect.json().message, /^redirectFromDomain: "old\.example" is already redirected by service "blue"; nothing was stored/)
    assert.equal(await store.version(), 1)
    assert.equal(await store.get('green'), null)

    // The blue-green switch of the default backend and the redirect: one version, blue keeps its path.
    const moved = await app.inject(put('/v1/reconfigure?serviceName=green&servicePath=/green&port=80&isDefaultBackend=true&serviceDomain=green.example&redirectFromDomain=old.example&takeover=true'))
    assert.equal(moved.statusCode, 200, moved.body)
    assert.deepEqual(moved.json().takenOver, [{ serviceName: 'blue', servicePath: [], removed: false, redirectFromDomain: ['old.example'], isDefaultBackend: true }])
    assert.equal(moved.json().version, 2)
    const blue = (await store.get('blue'))?.route
    assert.equal(blue?.isDefaultBackend, undefined)
    assert.deepEqual(blue?.destinations, [{ servicePath: ['/blue'], port: 80 }])
    const log = await store.changes(0, 10)
    assert.match(log.at(-1)?.note ?? '', /takeover by "green": the redirect from old\.example,the default backend from "blue"/)
  })

  it('through the DFP form both are stored; DFP order holds each, and the other is reported in warnings, GET /v1/routes/{serviceName} and /v1/status', async (t) => {
    const { app } = await startControl(t)
    const dfp = (q: string) => app.inject({ method: 'GET', url: `/v1/docker-flow-proxy/reconfigure?${q}`, headers: api })
    assert.equal((await dfp('serviceName=zeta&servicePath=/z&port=80&isDefaultBackend=true')).statusCode, 200)
    const second = await dfp('serviceName=alpha&servicePath=/a&port=80&isDefaultBackend=true')
    assert.equal(second.statusCode, 200, second.body)
    assert.deepEqual(second.json().warnings, ['the default backend (isDefaultBackend) asked by "zeta" is shadowed: "alpha" holds it (Docker Flow Proxy order: aclName, else service name)'])
    const route = (await app.inject({ url: '/v1/routes/zeta' })).json()
    assert.deepEqual(route.shadowedExtras, [{ serviceName: 'zeta', what: 'the default backend (isDefaultBackend)', shadowedBy: 'alpha', message: second.json().warnings[0] }])
    const status = (await app.inject({ url: '/v1/status' })).json()
    assert.deepEqual(status.shadowedExtras, route.shadowedExtras)
    assert.deepEqual(status.shadowed, [])
  })
})
