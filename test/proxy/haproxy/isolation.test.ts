import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { closeBackends, startBackends, type BackendReply } from '../../helpers/backends.ts'
import { createClient, createTestProxy, route, waitFor } from '../../helpers/haproxy.ts'

/*
 * The control plane validates every field strictly, so a route HAProxy refuses has to be one
 * that is well-formed but wrong for this proxy. The realistic case: explicit endpoints naming
 * a host outside the swarm by a name this node cannot resolve (a typo, or a name that only
 * resolves in another network). HAProxy resolves endpoint host names once, when it loads the
 * configuration, and refuses the whole file when one does not resolve. '.invalid' is reserved
 * (RFC 2606) and never resolves.
 */
const unresolvable = 'legacy-billing.invalid:8080'

describe('a route HAProxy refuses', () => {
  it('is left out and reported, and every other route keeps working', async (t) => {
    const backends = await startBackends(2)
    t.after(() => closeBackends(backends))
    const proxy = await createTestProxy(t)
    const client = createClient()
    t.after(() => client.close())

    const first = await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'web', paths: ['/'], endpoints: [backends[0]!.address] })] })
    assert.deepEqual(first.refused, [])

    const result = await proxy.engine.apply({
      version: 2,
      routes: [
        route({ serviceName: 'web', paths: ['/'], endpoints: [backends[0]!.address] }),
        route({ serviceName: 'billing', paths: ['/billing'], endpoints: [unresolvable] }),
        route({ serviceName: 'shop', paths: ['/shop'], endpoints: [backends[1]!.address] }),
      ],
    })
    assert.equal(result.refused.length, 1)
    assert.equal(result.refused[0]!.serviceName, 'billing')
    assert.match(result.refused[0]!.error, /could not resolve address 'legacy-billing\.invalid'/)

    // The routes applied with it work; the refused one is absent, so its path falls to the catch-all.
    const shop = await client.get(`${proxy.url}/shop/cart`)
    assert.equal((shop.body as BackendReply).instance, 'app-2')
    const billing = await client.get(`${proxy.url}/billing`)
    assert.equal((billing.body as BackendReply).instance, 'app-1', "the refused route's path falls through to the catch-all")
  })

  it('when every route is refused, the proxy still applies the rest: an empty table answering 404', async (t) => {
    const proxy = await createTestProxy(t)
    const result = await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'billing', paths: ['/billing'], endpoints: [unresolvable] })] })
    assert.deepEqual(result.refused.map((r) => r.serviceName), ['billing'])
    const client = createClient()
    t.after(() => client.close())
    assert.equal((await client.get(`${proxy.url}/billing`)).status, 404)
  })
})

describe('health()', () => {
  it('reports servers up and down per backend', async (t) => {
    const backends = await startBackends(3)
    t.after(() => closeBackends(backends))
    const proxy = await createTestProxy(t)
    assert.deepEqual(await proxy.engine.health(), [], 'nothing applied yet')
    await proxy.engine.apply({
      version: 1,
      routes: [
        route({ serviceName: 'two', paths: ['/two'], endpoints: [backends[0]!.address, backends[1]!.address] }),
        route({ serviceName: 'one', paths: ['/one'], port: 81, endpoints: [backends[2]!.address] }),
      ],
    })
    await waitFor('all up', async () => {
      const h = await proxy.engine.health()
      return h.length === 2 && h.every((b) => b.down === 0 && b.up === (b.serviceName === 'two' ? 2 : 1)) ? h : undefined
    })
    await backends[1]!.close()
    // fall 2 × inter 2 s: marked down within a few seconds.
    const health = await waitFor('one server down', async () => {
      const h = await proxy.engine.health()
      return h.find((b) => b.serviceName === 'two')?.down === 1 ? h : undefined
    }, 10_000, 200)
    const name = (i: number): string => backends[i]!.address
    assert.deepEqual(health, [
      { serviceName: 'one', port: 81, up: 1, down: 0, servers: [{ name: name(2), status: 'up' }] },
      {
        serviceName: 'two',
        port: 80,
        up: 1,
        down: 1,
        // Servers are named after their endpoint, in name order.
        servers: [
          { name: name(0), status: 'up' },
          { name: name(1), status: 'down' },
        ].sort((x, y) => (x.name < y.name ? -1 : 1)),
      },
    ])
  })
})
