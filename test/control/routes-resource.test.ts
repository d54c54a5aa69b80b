import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { api, startControl } from './harness.ts'

describe('GET /v1/routes', () => {
  it('lists every route sorted by service name, with who changed it, without a token', async (t) => {
    const { app } = await startControl(t)
    for (const name of ['zeta', 'alpha', 'mid']) await app.inject({ method: 'PUT', url: `/v1/reconfigure?serviceName=${name}&servicePath=/${name}&port=80`, headers: api })
    const res = await app.inject({ url: '/v1/routes' })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().version, 3)
    assert.deepEqual(res.json().routes.map((r: { route: { serviceName: string } }) => r.route.serviceName), ['alpha', 'mid', 'zeta'])
    assert.equal(res.json().routes[0].actor, 'ci')
  })
})

describe('GET /v1/routes/{serviceName}', () => {
  it('answers the route', async (t) => {
    const { app } = await startControl(t)
    await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&servicePath=/a&port=80', headers: api })
    const res = await app.inject({ url: '/v1/routes/a' })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().route.serviceName, 'a')
    assert.equal(res.json().version, 1)
  })

  it('answers 404 ROUTE_NOT_FOUND for an unknown service', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ url: '/v1/routes/nope' })
    assert.equal(res.statusCode, 404)
    assert.equal(res.json().code, 'ROUTE_NOT_FOUND')
  })

  it('refuses a malformed service name in the path with 400', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ url: '/v1/routes/-bad' })
    assert.equal(res.statusCode, 400)
    assert.match(res.json().message, /serviceName/)
  })
})

describe('PUT /v1/routes/{serviceName}', () => {
  it('creates the route, and answers changed:false the second time', async (t) => {
    const { app } = await startControl(t)
    const put = () => app.inject({ method: 'PUT', url: '/v1/routes/web', headers: api, payload: { servicePath: ['/web'], port: 80, sticky: true } })
    const first = await put()
    assert.equal(first.statusCode, 200, first.body)
    assert.equal(first.json().changed, true)
    const second = await put()
    assert.equal(second.json().changed, false)
    assert.equal(second.json().version, 1)
  })

  it('accepts the route as GET answered it (a round trip)', async (t) => {
    const { app } = await startControl(t)
    await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&servicePath=/a&port=80&sticky=true&stickyCookie=AFF', headers: api })
    const route = (await app.inject({ url: '/v1/routes/a' })).json().route
    const res = await app.inject({ method: 'PUT', url: '/v1/routes/a', headers: api, payload: route })
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(res.json().changed, false)
  })

  it('refuses a body whose serviceName differs from the path', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({ method: 'PUT', url: '/v1/routes/a', headers: api, payload: { serviceName: 'b', servicePath: ['/a'], port: 80 } })
    assert.equal(res.statusCode, 400)
    assert.match(res.json().message, /^serviceName:/)
    assert.equal(await store.version(), 0)
  })

  it('needs a token', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ method: 'PUT', url: '/v1/routes/a', payload: { servicePath: ['/a'], port: 80 } })
    assert.equal(res.statusCode, 401)
  })
})

describe('DELETE /v1/routes/{serviceName}', () => {
  it('removes the route', async (t) => {
    const { app } = await startControl(t)
    await app.inject({ method: 'PUT', url: '/v1/routes/a', headers: api, payload: { servicePath: ['/a'], port: 80 } })
    const res = await app.inject({ method: 'DELETE', url: '/v1/routes/a', headers: api })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().version, 2)
    assert.equal((await app.inject({ url: '/v1/routes/a' })).statusCode, 404)
  })

  it('answers 404 for an unknown service', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ method: 'DELETE', url: '/v1/routes/a', headers: api })
    assert.equal(res.statusCode, 404)
  })
})
