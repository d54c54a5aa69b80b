import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { api, OTHER_API_TOKEN, startControl } from './harness.ts'

const demo = '/v1/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080&sticky=true'

describe('PUT /v1/reconfigure', () => {
  it('stores the route and answers it with the new version', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({ method: 'PUT', url: demo, headers: api })
    assert.equal(res.statusCode, 200)
    assert.deepEqual(res.json(), {
      route: { serviceName: 'go-demo', destinations: [{ servicePath: ['/demo'], port: 8080 }], serviceDomain: [], sticky: true, endpoints: [] },
      version: 1,
      changed: true,
    })
    assert.equal((await store.get('go-demo'))?.route.sticky, true)
  })

  it('answers changed:false and keeps the version when the same request comes twice (CI reruns)', async (t) => {
    const { app, store } = await startControl(t)
    await app.inject({ method: 'PUT', url: demo, headers: api })
    const again = await app.inject({ method: 'PUT', url: demo, headers: api })
    assert.equal(again.statusCode, 200)
    assert.equal(again.json().changed, false)
    assert.equal(again.json().version, 1)
    assert.equal(await store.version(), 1)
  })

  it('treats /demo/ and /demo, and domains in any case, as the same route', async (t) => {
    const { app } = await startControl(t)
    await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&servicePath=/demo/&port=80&serviceDomain=App.Example.com', headers: api })
    const again = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&servicePath=/demo&port=80&serviceDomain=app.example.com', headers: api })
    assert.equal(again.json().changed, false)
    assert.deepEqual(again.json().route.serviceDomain, ['app.example.com'])
  })

  it('replaces the route of a service and bumps the version', async (t) => {
    const { app } = await startControl(t)
    await app.inject({ method: 'PUT', url: demo, headers: api })
    const res = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=go-demo&servicePath=/demo,/api&port=9090', headers: api })
    assert.equal(res.json().version, 2)
    assert.deepEqual(res.json().route.destinations, [{ servicePath: ['/demo', '/api'], port: 9090 }])
    assert.equal(res.json().route.sticky, false)
  })

  it('accepts comma-separated serviceDomain (with *.wildcards), a stickyCookie and explicit endpoints', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({
      method: 'PUT',
      url: '/v1/reconfigure?serviceName=web&servicePath=/&port=80&serviceDomain=example.com,*.example.org&sticky=true&stickyCookie=SESSION_AFF&endpoints=127.0.0.1:3001,backend.local:3002,[::1]:3003',
      headers: api,
    })
    assert.equal(res.statusCode, 200, res.body)
    const route = res.json().route
    assert.deepEqual(route.serviceDomain, ['*.example.org', 'example.com'])
    assert.equal(route.stickyCookie, 'SESSION_AFF')
    assert.deepEqual(route.endpoints, ['127.0.0.1:3001', 'backend.local:3002', '[::1]:3003'])
  })

  it('works as GET too (Docker Flow Proxy pipelines use GET)', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ method: 'GET', url: demo, headers: api })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().version, 1)
  })

  it('records the name of the token as the actor in the change log', async (t) => {
    const { app, store } = await startControl(t)
    await app.inject({ method: 'PUT', url: demo, headers: { authorization: `Bearer ${OTHER_API_TOKEN}` } })
    const [change] = await store.changes(0, 10)
    assert.equal(change?.actor, 'ops')
    assert.equal(change?.source, 'api')
  })

  it('refuses unknown parameters with 400 UNKNOWN_PARAMETER naming all of them, and stores nothing', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({ method: 'PUT', url: `${demo}&colour=blue&outboundHostname=x`, headers: api })
    assert.equal(res.statusCode, 400)
    assert.equal(res.json().code, 'UNKNOWN_PARAMETER')
    assert.match(res.json().message, /"colour"/)
    assert.match(res.json().message, /"outboundHostname"/)
    assert.equal(await store.version(), 0)
  })

  it('refuses a request without servicePath, naming the field', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&port=80', headers: api })
    assert.equal(res.statusCode, 400)
    assert.deepEqual(Object.keys(res.json()).sort(), ['code', 'error', 'message', 'statusCode'])
    assert.equal(res.json().code, 'VALIDATION_FAILED')
    assert.match(res.json().message, /^servicePath: is required/)
  })

  it('refuses a repeated parameter instead of picking one', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({ method: 'PUT', url: `${demo}&port=9090`, headers: api })
    assert.equal(res.statusCode, 400)
    assert.match(res.json().message, /^port:/)
    assert.equal(await store.version(), 0)
  })
})

describe('POST /v1/reconfigure', () => {
  it('takes the same fields as JSON', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 'go-demo', servicePath: ['/demo'], port: 8080, sticky: true } })
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json().route.destinations, [{ servicePath: ['/demo'], port: 8080 }])
    const same = await app.inject({ method: 'PUT', url: demo, headers: api })
    assert.equal(same.json().changed, false, 'the query form and the JSON form describe the same route')
  })

  it('takes several destinations', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({
      method: 'POST',
      url: '/v1/reconfigure',
      headers: api,
      payload: { serviceName: 'shop', destinations: [{ servicePath: ['/shop'], port: 80 }, { servicePath: ['/shop/admin'], port: 8081 }] },
    })
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(res.json().route.destinations.length, 2)
  })

  it('refuses servicePath+port together with destinations', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 's', servicePath: ['/a'], port: 80, destinations: [{ servicePath: ['/b'], port: 81 }] } })
    assert.equal(res.statusCode, 400)
    assert.match(res.json().message, /^destinations:/)
  })

  it('does not coerce JSON types: a port sent as a string is refused', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 's', servicePath: ['/a'], port: '80' } })
    assert.equal(res.statusCode, 400)
    assert.match(res.json().message, /^port: "80" must be an integer from 1 to 65535/)
  })

  it('refuses an unknown field with UNKNOWN_PARAMETER', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ method: 'POST', url: '/v1/reconfigure', headers: api, payload: { serviceName: 's', servicePath: ['/a'], port: 80, colour: 'blue' } })
    assert.equal(res.statusCode, 400)
    assert.equal(res.json().code, 'UNKNOWN_PARAMETER')
    assert.match(res.json().message, /"colour"/)
  })

  it('refuses a body over 1 MiB with 413', async (t) => {
    const { app, store } = await startControl(t)
    const payload = JSON.stringify({ serviceName: 's', servicePath: ['/a'], port: 80, pad: 'x'.repeat(1024 * 1024) })
    const res = await app.inject({ method: 'POST', url: '/v1/reconfigure', headers: { ...api, 'content-type': 'application/json' }, payload })
    assert.equal(res.statusCode, 413)
    assert.equal(res.json().code, 'BODY_TOO_LARGE')
    assert.equal(await store.version(), 0)
  })

  it('refuses a body that is not JSON with 400', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ method: 'POST', url: '/v1/reconfigure', headers: { ...api, 'content-type': 'application/json' }, payload: '{"serviceName":' })
    assert.equal(res.statusCode, 400)
    assert.equal(res.json().code, 'INVALID_BODY')
  })
})

describe('GET|DELETE /v1/remove', () => {
  it('removes the route and answers the new version and the removed route', async (t) => {
    const { app, store } = await startControl(t)
    await app.inject({ method: 'PUT', url: demo, headers: api })
    const res = await app.inject({ method: 'DELETE', url: '/v1/remove?serviceName=go-demo', headers: api })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().version, 2)
    assert.equal(res.json().removed.serviceName, 'go-demo')
    assert.equal(await store.get('go-demo'), null)
  })

  it('works as GET too', async (t) => {
    const { app } = await startControl(t)
    await app.inject({ method: 'PUT', url: demo, headers: api })
    const res = await app.inject({ method: 'GET', url: '/v1/remove?serviceName=go-demo', headers: api })
    assert.equal(res.statusCode, 200)
  })

  it('answers 404 ROUTE_NOT_FOUND for an unknown service, and changes no version', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({ method: 'DELETE', url: '/v1/remove?serviceName=nothing', headers: api })
    assert.equal(res.statusCode, 404)
    assert.equal(res.json().code, 'ROUTE_NOT_FOUND')
    assert.match(res.json().message, /nothing/)
    assert.equal(await store.version(), 0)
  })
})
