import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { api, startControl } from './harness.ts'

describe('GET /v1/docker-flow-proxy/reconfigure', () => {
  it("accepts Docker Flow Proxy's parameters, sessionType=sticky-server meaning sticky", async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=go-demo&servicePath=/demo,/demo2&port=8080&serviceDomain=example.com&sessionType=sticky-server', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json().route, { serviceName: 'go-demo', destinations: [{ servicePath: ['/demo', '/demo2'], port: 8080 }], serviceDomain: ['example.com'], sticky: true, endpoints: [] })
    assert.equal(res.json().warnings, undefined, 'nothing was ignored')
    const [change] = await store.changes(0, 1)
    assert.equal(change?.source, 'dfp')
  })

  it('turns the indexed forms servicePath.N/port.N into one destination each', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=shop&servicePath.1=/shop&port.1=80&servicePath.2=/admin&port.2=8081', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json().route.destinations, [
      { servicePath: ['/shop'], port: 80 },
      { servicePath: ['/admin'], port: 8081 },
    ])
  })

  it('accepts distribute and replicas without a warning', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&distribute=true&replicas=3', headers: api })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().warnings, undefined)
  })

  it('lists every parameter it does not implement in warnings, and still stores the route', async (t) => {
    const { app, store } = await startControl(t)
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80&reqPathSearch=/a/&reqPathReplace=/&compressionAlgo=gzip&srcPort.1=443&madeUp=1', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    const warnings: string[] = res.json().warnings
    assert.equal(warnings.length, 5)
    for (const name of ['reqPathSearch', 'reqPathReplace', 'compressionAlgo', 'srcPort.1', 'madeUp']) assert.ok(warnings.some((w) => w.startsWith(`${name}:`)), `${name} not warned about: ${warnings.join(' | ')}`)
    assert.ok(warnings.find((w) => w.startsWith('madeUp:'))?.includes('not a parameter Tether knows'))
    assert.notEqual(await store.get('a'), null)
  })

  it('judges values as strictly as Tether’s own endpoint', async (t) => {
    const { app, store } = await startControl(t)
    for (const [q, field] of [
      ['servicePath=/a%20b&port=80', 'servicePath'],
      ['servicePath=/a&port=0', 'port'],
      ['servicePath.1=/a&port.1=x', 'port.1'],
      ['servicePath.1=/a%0Ab&port.1=80', 'servicePath.1'],
      ['servicePath.1=/a', 'port.1'],
      ['servicePath=/a&port=80&sessionType=cookie', 'sessionType'],
      ['servicePath=/a&port=80&serviceDomain=bad_domain', 'serviceDomain'],
    ] as const) {
      const res = await app.inject({ url: `/v1/docker-flow-proxy/reconfigure?serviceName=a&${q}`, headers: api })
      assert.equal(res.statusCode, 400, `${q}: ${res.body}`)
      assert.ok(res.json().message.startsWith(`${field}:`), `${q}: ${res.json().message}`)
    }
    assert.equal(await store.version(), 0)
  })

  it('needs a token', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80' })
    assert.equal(res.statusCode, 401)
  })
})

describe('GET /v1/docker-flow-proxy/remove', () => {
  it('removes the route, warning about ignored parameters', async (t) => {
    const { app, store } = await startControl(t)
    await app.inject({ url: '/v1/docker-flow-proxy/reconfigure?serviceName=a&servicePath=/a&port=80', headers: api })
    const res = await app.inject({ url: '/v1/docker-flow-proxy/remove?serviceName=a&distribute=true&aclName=x', headers: api })
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(res.json().version, 2)
    assert.deepEqual(res.json().warnings.length, 1)
    assert.match(res.json().warnings[0], /^aclName:/)
    assert.equal(await store.get('a'), null)
  })

  it('answers 404 for an unknown service', async (t) => {
    const { app } = await startControl(t)
    const res = await app.inject({ method: 'DELETE', url: '/v1/docker-flow-proxy/remove?serviceName=nope', headers: api })
    assert.equal(res.statusCode, 404)
    assert.equal(res.json().code, 'ROUTE_NOT_FOUND')
  })
})
