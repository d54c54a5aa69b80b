import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { closeBackends, startBackends, type Backend, type BackendReply } from '../../helpers/backends.ts'
import { createClient, createTestProxy, route, type TestProxy } from '../../helpers/haproxy.ts'

describe('routing through HAProxy', () => {
  let proxy: TestProxy
  let backends: Backend[]
  const client = createClient()
  const instance = async (path: string, host?: string): Promise<string> => {
    const reply = await client.get(`${proxy.url}${path}`, host === undefined ? { cookies: false } : { host, cookies: false })
    assert.equal(reply.status, 200, `${host ?? ''}${path} answered ${reply.status}: ${JSON.stringify(reply.body)}`)
    return (reply.body as BackendReply).instance
  }

  before(async () => {
    backends = await startBackends(6, { prefix: 'b' })
    proxy = await createTestProxy(undefined)
    const at = (i: number): string[] => [backends[i]!.address]
    await proxy.engine.apply({
      version: 1,
      routes: [
        route({ serviceName: 'web', paths: ['/'], endpoints: at(0) }),
        route({ serviceName: 'demo', paths: ['/demo'], endpoints: at(1) }),
        route({ serviceName: 'api', paths: ['/api'], endpoints: at(2) }),
        route({ serviceName: 'api-v2', paths: ['/api/v2'], endpoints: at(3) }),
        route({ serviceName: 'shop', paths: ['/'], domains: ['shop.example.com', '*.shop.example.com'], endpoints: at(4) }),
        route({ serviceName: 'shop-admin', paths: ['/admin'], domains: ['shop.example.com'], endpoints: at(5) }),
      ],
    })
  })
  after(async () => {
    await client.close()
    await proxy?.stop()
    await closeBackends(backends ?? [])
  })

  it('matches a path prefix on whole segments: /demo serves /demo, /demo/, /demo/x and /demo?q, never /demonstration', async () => {
    for (const path of ['/demo', '/demo/', '/demo/x', '/demo/x/y', '/demo?q=1']) assert.equal(await instance(path), 'b2', path)
    assert.equal(await instance('/demonstration'), 'b1')
    assert.equal(await instance('/demo-x'), 'b1')
  })

  it('prefers the longest prefix', async () => {
    assert.equal(await instance('/api/v2/users'), 'b4')
    assert.equal(await instance('/api/v2'), 'b4')
    assert.equal(await instance('/api/v20'), 'b3')
    assert.equal(await instance('/api/v1/users'), 'b3')
    assert.equal(await instance('/'), 'b1')
  })

  it('matches the Host header (case and port ignored) and wildcard domains', async () => {
    assert.equal(await instance('/', 'shop.example.com'), 'b5')
    assert.equal(await instance('/cart', 'SHOP.Example.com:8080'), 'b5')
    assert.equal(await instance('/', 'eu.shop.example.com'), 'b5')
    assert.equal(await instance('/', 'a.b.shop.example.com'), 'b5')
    assert.equal(await instance('/admin/users', 'shop.example.com'), 'b6')
    // Not a subdomain of shop.example.com, and other hosts: the domain-less routes.
    assert.equal(await instance('/', 'evilshop.example.com'), 'b1')
    assert.equal(await instance('/admin', 'other.example.com'), 'b1')
    assert.equal(await instance('/admin', 'eu.shop.example.com'), 'b5')
  })

  it('lets a longer domain-less prefix win over a shorter one with a domain', async () => {
    assert.equal(await instance('/demo/x', 'shop.example.com'), 'b2')
  })

  it('passes the path and query through and adds X-Forwarded-For/-Proto', async () => {
    const reply = await client.get(`${proxy.url}/demo/x?q=1&r=2`, { cookies: false })
    const body = reply.body as BackendReply
    assert.equal(body.path, '/demo/x?q=1&r=2')
    assert.equal(body.forwardedFor, '127.0.0.1')
    assert.equal(body.forwardedProto, 'http')
  })

  it('answers 404 with a JSON body when no route matches', async (t) => {
    await proxy.engine.apply({ version: 2, routes: [route({ serviceName: 'demo', paths: ['/demo'], endpoints: [backends[1]!.address] })] })
    // A new connection: an idle keep-alive one gets one last answer from the old worker (by
    // design, option idle-close-on-response: a reload fails no request).
    const fresh = createClient()
    t.after(() => fresh.close())
    const reply = await fresh.get(`${proxy.url}/demonstration`, { cookies: false })
    assert.equal(reply.status, 404)
    assert.match(String(reply.headers['content-type']), /application\/json/)
    assert.deepEqual(reply.body, { statusCode: 404, code: 'NO_ROUTE', error: 'Not Found', message: 'No route matches this host and path' })
    assert.equal(await instance('/demo/still'), 'b2')
  })
})
