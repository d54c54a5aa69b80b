import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { closeBackends, startBackends, type Backend, type BackendReply } from '../../helpers/backends.ts'
import { createClient, createTestProxy, route, waitFor, type TestProxy } from '../../helpers/haproxy.ts'

const COOKIE = 'TETHER_app'

describe('sticky sessions through HAProxy', () => {
  let backends: Backend[]
  let proxy: TestProxy
  let replica: TestProxy
  let stranger: TestProxy
  const snapshot = () => ({
    version: 1,
    routes: [
      route({ serviceName: 'app', paths: ['/app'], sticky: true, endpoints: backends.map((b) => b.address) }),
      route({ serviceName: 'plain', paths: ['/plain'], endpoints: backends.map((b) => b.address) }),
    ],
  })

  before(async () => {
    backends = await startBackends(3)
    proxy = await createTestProxy(undefined)
    replica = await createTestProxy(undefined) // same cookie key: another proxy replica
    stranger = await createTestProxy(undefined, { cookieKey: 'some-other-fleet-key' })
    await Promise.all([proxy.engine.apply(snapshot()), replica.engine.apply(snapshot()), stranger.engine.apply(snapshot())])
    // Health checks have seen every backend up on every proxy.
    for (const p of [proxy, replica, stranger]) {
      await waitFor('backends up', async () => ((await p.engine.health()).every((h) => h.up === 3) ? true : undefined))
    }
  })
  after(async () => {
    await Promise.all([proxy?.stop(), replica?.stop(), stranger?.stop()])
    await closeBackends(backends ?? [])
  })

  /** A fresh client's first request: the backend it landed on and the affinity cookie it got. */
  async function pin(p: TestProxy): Promise<{ instance: string; cookie: string }> {
    const client = createClient()
    try {
      const reply = await client.get(`${p.url}/app`)
      assert.equal(reply.status, 200)
      const cookie = client.jar.get(COOKIE)
      assert.ok(cookie !== undefined, `no ${COOKIE} cookie in ${JSON.stringify(reply.setCookies)}`)
      return { instance: (reply.body as BackendReply).instance, cookie }
    } finally {
      await client.close()
    }
  }

  it('keeps a client with a cookie jar on one backend for 200 requests, its session intact', async () => {
    const client = createClient()
    try {
      const first = await client.get(`${proxy.url}/app`)
      const pinned = (first.body as BackendReply).instance
      const issued = first.setCookies.find((c) => c.startsWith(`${COOKIE}=`))
      assert.ok(issued !== undefined)
      assert.match(issued, /HttpOnly/i)
      assert.match(issued, /SameSite=Lax/i)
      let last: BackendReply | undefined
      for (let i = 1; i < 200; i++) {
        const reply = await client.get(`${proxy.url}/app/page/${i}`)
        assert.equal(reply.status, 200)
        last = reply.body as BackendReply
        assert.equal(last.instance, pinned, `request ${i} moved to another backend`)
        assert.equal(reply.setCookies.filter((c) => c.startsWith(`${COOKIE}=`)).length, 0, 'cookie re-issued while pinned')
      }
      // The stateful app saw one session, 200 requests long.
      assert.equal(last?.count, 200)
    } finally {
      await client.close()
    }
  })

  it('spreads clients without cookies over all backends', async () => {
    const client = createClient()
    try {
      const seen = new Set<string>()
      for (let i = 0; i < 30; i++) {
        const reply = await client.get(`${proxy.url}/app`, { cookies: false })
        seen.add((reply.body as BackendReply).instance)
      }
      assert.deepEqual([...seen].sort(), ['app-1', 'app-2', 'app-3'])
    } finally {
      await client.close()
    }
  })

  it('balances a non-sticky route round-robin and sets no affinity cookie', async () => {
    const client = createClient()
    try {
      const order: string[] = []
      for (let i = 0; i < 6; i++) {
        const reply = await client.get(`${proxy.url}/plain`)
        order.push((reply.body as BackendReply).instance)
        assert.equal(reply.setCookies.filter((c) => c.startsWith('TETHER_')).length, 0)
      }
      assert.equal(new Set(order).size, 3)
      assert.deepEqual(order.slice(3), order.slice(0, 3), 'round-robin repeats the same order')
    } finally {
      await client.close()
    }
  })

  it('honours a cookie issued by another replica with the same key', async () => {
    const pins = new Map<string, string>()
    for (let i = 0; i < 30 && pins.size < 3; i++) {
      const { instance, cookie } = await pin(proxy)
      pins.set(instance, cookie)
    }
    assert.equal(pins.size, 3)
    for (const [instance, cookie] of pins) {
      const client = createClient()
      client.jar.set(COOKIE, cookie)
      try {
        for (let i = 0; i < 5; i++) {
          const reply = await client.get(`${replica.url}/app`)
          assert.equal((reply.body as BackendReply).instance, instance)
          assert.equal(client.jar.get(COOKIE), cookie, 'the replica issued a different cookie for the same backend')
        }
      } finally {
        await client.close()
      }
    }
  })

  it('rebalances a tampered or foreign cookie: 200 and a fresh cookie', async () => {
    const foreign = (await pin(stranger)).cookie
    for (const bad of ['0123456789abcdef', 'not-a-cookie', foreign]) {
      const client = createClient()
      client.jar.set(COOKIE, bad)
      try {
        const reply = await client.get(`${proxy.url}/app`)
        assert.equal(reply.status, 200)
        const fresh = client.jar.get(COOKIE)
        assert.ok(fresh !== undefined && fresh !== bad, `cookie ${bad} was not replaced`)
        // The fresh cookie pins like any other.
        const again = await client.get(`${proxy.url}/app`)
        assert.equal((again.body as BackendReply).instance, (reply.body as BackendReply).instance)
      } finally {
        await client.close()
      }
    }
  })

  it('never reveals a backend address or port in the cookie', async () => {
    for (let i = 0; i < 6; i++) {
      const { cookie } = await pin(proxy)
      assert.match(cookie, /^[0-9a-f]{16}$/i, 'a sticky answer carries an opaque cookie')
      for (const b of backends) {
        const hexIp = b.host.split('.').map((x) => Number(x).toString(16).padStart(2, '0')).join('')
        for (const leak of [b.host, String(b.port), b.port.toString(16), hexIp]) {
          assert.ok(!cookie.toLowerCase().includes(leak.toLowerCase()), `cookie ${cookie} contains ${leak}`)
        }
      }
    }
  })
})

describe('a sticky backend that dies', () => {
  it('moves the next request carrying its cookie to a live backend with a new cookie, without an error', async (t) => {
    const backends = await startBackends(3, { prefix: 'k' })
    t.after(() => closeBackends(backends))
    const proxy = await createTestProxy(t)
    await proxy.engine.apply({ version: 1, routes: [route({ serviceName: 'app', paths: ['/'], sticky: true, endpoints: backends.map((b) => b.address) })] })
    await waitFor('backends up', async () => ((await proxy.engine.health())[0]?.up === 3 ? true : undefined))
    const client = createClient()
    t.after(() => client.close())
    const first = await client.get(`${proxy.url}/`)
    const pinned = (first.body as BackendReply).instance
    const cookie = client.jar.get(COOKIE)
    await backends.find((b) => b.name === pinned)!.close()

    const reply = await client.get(`${proxy.url}/`)
    assert.equal(reply.status, 200)
    const moved = (reply.body as BackendReply).instance
    assert.notEqual(moved, pinned)
    assert.notEqual(client.jar.get(COOKIE), cookie, 'the cookie was not re-issued')
    // And it stays on its new backend.
    for (let i = 0; i < 5; i++) assert.equal(((await client.get(`${proxy.url}/`)).body as BackendReply).instance, moved)
  })
})
