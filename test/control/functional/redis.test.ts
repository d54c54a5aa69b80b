/**
 * The control plane on a real redis-server: several replicas sharing one Redis, concurrency,
 * and an outage with recovery.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it, type TestContext } from 'node:test'
import { createRouteStore } from '../../../src/control/store/create-route-store.ts'
import { startRedisServer, type RedisServer } from '../../helpers/redis-server.ts'
import { api, proxy, startControl, waitFor, type TestControl } from '../harness.ts'

let redis: RedisServer
let prefixes = 0

before(async () => {
  redis = await startRedisServer()
})
after(async () => {
  await redis.stop()
})

/** `count` control-plane replicas, each with its own Redis connection, sharing one key prefix. */
async function replicas(t: TestContext, count: number): Promise<TestControl[]> {
  const prefix = `test${++prefixes}:`
  const out: TestControl[] = []
  for (let i = 0; i < count; i++) {
    const store = createRouteStore({ url: redis.url, prefix })
    t.after(() => store.close())
    out.push(await startControl(t, { store }))
  }
  return out
}

describe('control plane on Redis', () => {
  it('wakes a long poll on replica A when a route is written through replica B', async (t) => {
    const [a, b] = await replicas(t, 2)
    assert.ok(a !== undefined && b !== undefined)
    await b.app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=one&servicePath=/one&port=80', headers: api })
    const waiting = a.app.inject({ url: '/v1/config?since=1&wait=30', headers: proxy })
    await waitFor(() => a.app.feed.waiters() === 1)
    const write = await b.app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=two&servicePath=/two&port=80', headers: api })
    assert.equal(write.json().version, 2)
    const res = await waiting
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().version, 2)
    assert.deepEqual(res.json().routes.map((r: { serviceName: string }) => r.serviceName), ['one', 'two'])
  })

  it('gives 50 concurrent reconfigures of different services through two replicas 50 distinct versions and keeps all 50 routes', async (t) => {
    const [a, b] = await replicas(t, 2)
    assert.ok(a !== undefined && b !== undefined)
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? a : b).app.inject({ method: 'PUT', url: `/v1/reconfigure?serviceName=svc-${i}&servicePath=/svc-${i}&port=${8000 + i}`, headers: api })),
    )
    assert.ok(answers.every((r) => r.statusCode === 200))
    const versions = answers.map((r) => r.json().version as number)
    assert.equal(new Set(versions).size, 50)
    assert.deepEqual([...versions].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i + 1))
    for (const replica of [a, b]) {
      const config = (await replica.app.inject({ url: '/v1/config', headers: proxy })).json()
      assert.equal(config.version, 50)
      assert.equal(config.routes.length, 50)
    }
  })

  it('sees heartbeats sent to one replica on every replica', async (t) => {
    const [a, b] = await replicas(t, 2)
    assert.ok(a !== undefined && b !== undefined)
    await a.app.inject({ method: 'PUT', url: '/v1/proxies/p1', headers: proxy, payload: { version: 0, status: 'ok', lastError: null, refusedRoutes: [], node: 'n1', haproxyVersion: '2.6', startedAt: '2024-01-01T00:00:00Z', backends: [] } })
    const status = (await b.app.inject({ url: '/v1/status' })).json()
    assert.equal(status.live, 1)
    assert.equal(status.proxies[0].id, 'p1')
  })

  it('answers 503 STORE_UNAVAILABLE and readyz 503 while Redis is down, and recovers by itself when it returns', async (t) => {
    const [a, b] = await replicas(t, 2)
    assert.ok(a !== undefined && b !== undefined)
    await a.app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=before&servicePath=/before&port=80', headers: api })
    assert.equal((await a.app.inject({ url: '/v1/config', headers: proxy })).statusCode, 200) // a proxy read it
    await redis.stop()
    let restarted = false
    t.after(async () => {
      if (!restarted) await redis.start()
    })

    const write = await a.app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=during&servicePath=/during&port=80', headers: api })
    assert.equal(write.statusCode, 503)
    assert.equal(write.json().code, 'STORE_UNAVAILABLE')
    // The answer says where Redis is and why it cannot be used (the operator's first question), as readyz does.
    // (Just after the stop the cause is the closed connection; once ioredis retried, ECONNREFUSED.)
    const unavailable = new RegExp(`^The route store is unavailable: Redis at ${new URL(redis.url).host.replaceAll('.', '\\.')} (is not connected \\(ECONNREFUSED\\)|did not answer \\(connection lost: (connection closed|ECONNREFUSED)\\))\\. Nothing was changed; retry later\\.$`)
    assert.match(write.json().message, unavailable)
    const notReady = await a.app.inject({ url: '/readyz' })
    assert.equal(notReady.statusCode, 503)
    assert.match(notReady.json().message, unavailable)
    assert.equal((await b.app.inject({ method: 'DELETE', url: '/v1/remove?serviceName=before', headers: api })).statusCode, 503)
    // A proxy starting now still gets the last table this replica saw, marked stale; a long poll cannot wait on a dead store.
    const stale = await a.app.inject({ url: '/v1/config', headers: proxy })
    assert.equal(stale.statusCode, 200)
    assert.equal(stale.headers['x-tether-stale'], 'true')
    assert.deepEqual(stale.json().routes.map((r: { serviceName: string }) => r.serviceName), ['before'])
    assert.equal((await a.app.inject({ url: '/v1/config?since=0&wait=1', headers: proxy })).statusCode, 503)

    // Redis comes back empty (no persistence in the test server): the replicas reconnect by themselves.
    await redis.start()
    restarted = true
    await waitFor(async () => (await a.app.inject({ url: '/readyz' })).statusCode === 200, 'replica A ready again')
    await waitFor(async () => (await b.app.inject({ url: '/readyz' })).statusCode === 200, 'replica B ready again')
    // A long poll on B is woken by a write on A again: pub/sub resubscribed too, even though
    // Redis came back empty and the write reuses a version number heard before the outage.
    const since = (await b.app.inject({ url: '/v1/config', headers: proxy })).json().version as number
    const waiting = b.app.inject({ url: `/v1/config?since=${since}&wait=30`, headers: proxy })
    await waitFor(() => b.app.feed.waiters() === 1)
    const answer = await a.app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=after&servicePath=/after&port=80', headers: api })
    assert.equal(answer.statusCode, 200)
    const woken = await waiting
    assert.equal(woken.statusCode, 200)
    assert.ok(woken.json().routes.some((r: { serviceName: string }) => r.serviceName === 'after'))
  })
})

describe('readiness of a control plane whose Redis cannot be used', () => {
  it('readyz answers 503 naming the Redis host and the error code, never the password of REDIS_URL', async (t) => {
    // A port nothing listens on (the test server's, stopped): a real refused connection.
    const closed = await startRedisServer()
    const port = new URL(closed.url).port
    await closed.stop()
    const store = createRouteStore({ url: `redis://:hunter2-secret@127.0.0.1:${port}`, prefix: 'unreachable:' })
    t.after(() => store.close())
    const { app } = await startControl(t, { store })
    const ready = await app.inject({ url: '/readyz' })
    assert.equal(ready.statusCode, 503)
    assert.equal(ready.json().code, 'STORE_UNAVAILABLE')
    assert.match(ready.json().message, new RegExp(`^The route store is unavailable: Redis at 127\\.0\\.0\\.1:${port} is not (reachable|connected) \\(ECONNREFUSED\\)\\. Nothing was changed; retry later\\.$`))
    assert.doesNotMatch(ready.body, /hunter2/)
    const write = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&servicePath=/a&port=80', headers: api })
    assert.equal(write.statusCode, 503)
    assert.match(write.json().message, new RegExp(`Redis at 127\\.0\\.0\\.1:${port} is not (reachable|connected) \\(ECONNREFUSED\\)`))
    assert.doesNotMatch(write.body, /hunter2/)
  })

  it('names a host that does not resolve by its DNS error', async (t) => {
    const store = createRouteStore({ url: 'redis://redis.invalid:6379', prefix: 'unresolved:' })
    t.after(() => store.close())
    const { app } = await startControl(t, { store })
    const ready = await app.inject({ url: '/readyz' })
    assert.equal(ready.statusCode, 503)
    assert.match(ready.json().message, /^The route store is unavailable: Redis at redis\.invalid:6379 is not (reachable|connected) \((ENOTFOUND|EAI_AGAIN)\)\. Nothing was changed; retry later\.$/)
  })
})
