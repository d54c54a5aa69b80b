/**
 * What the API answers while Redis is down, real redis-server stopped: the fleet view stays
 * (the last status read, marked stale), and a write that was stored before Redis went away is
 * never answered as "nothing was changed".
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { RouteStore } from '../../../src/control/store/route-store.ts'
import { redisFixtures } from '../../helpers/redis-fixtures.ts'
import type { RedisServer } from '../../helpers/redis-server.ts'
import { api, heartbeat, proxy, startControl, waitFor } from '../harness.ts'

const fixtures = redisFixtures()

/** A store on a real redis-server, connected: it refuses commands while it is not (no offline queue), which a loaded machine made the first request of a test meet. */
async function redisStore(): Promise<{ redis: RedisServer; store: RouteStore }> {
  const redis = await fixtures.redisServer()
  const store = fixtures.store(redis.url)
  await waitFor(() => store.version().then(() => true, () => false), 'the store to connect to Redis')
  return { redis, store }
}

describe('GET /v1/status while Redis is down', () => {
  it('answers the last status read, marked stale (x-tether-stale and a stale field), instead of 503', async (t) => {
    const { redis, store } = await redisStore()
    const { app } = await startControl(t, { store })
    assert.equal((await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&servicePath=/a&port=80', headers: api })).statusCode, 200)
    assert.equal((await app.inject({ method: 'PUT', url: '/v1/proxies/p1', headers: proxy, payload: heartbeat(1) })).statusCode, 204)
    const fresh = await app.inject({ method: 'GET', url: '/v1/status' })
    assert.equal(fresh.statusCode, 200)
    assert.equal(fresh.headers['x-tether-stale'], undefined)
    assert.equal(fresh.json().stale, undefined)
    await redis.stop()
    const stale = await app.inject({ method: 'GET', url: '/v1/status' })
    assert.equal(stale.statusCode, 200, stale.body)
    assert.equal(stale.headers['x-tether-stale'], 'true')
    const body = stale.json()
    assert.equal(body.version, 1)
    assert.equal(body.live, 1)
    assert.deepEqual(body.proxies.map((p: { id: string }) => p.id), ['p1'])
    assert.match(body.stale.reason, /route store is unavailable: this is the last status this replica read/)
    assert.ok(Date.parse(body.stale.asOf) <= Date.now())
  })

  it('answers 503 STORE_UNAVAILABLE when this replica never read a status', async (t) => {
    const { redis, store } = await redisStore()
    const { app } = await startControl(t, { store })
    await redis.stop()
    const res = await app.inject({ method: 'GET', url: '/v1/status' })
    assert.equal(res.statusCode, 503)
    assert.equal(res.json().code, 'STORE_UNAVAILABLE')
  })
})

describe('reconfigure?wait=converged when Redis goes away after the write', () => {
  it('answers 503 CONVERGENCE_UNKNOWN saying the change is stored, never "nothing was changed"', async (t) => {
    const { redis, store } = await redisStore()
    const { app } = await startControl(t, { store, convergencePollMs: 50 })
    assert.equal((await app.inject({ method: 'PUT', url: '/v1/proxies/p1', headers: proxy, payload: heartbeat(0) })).statusCode, 204)
    const answer = app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=a&servicePath=/a&port=80&wait=converged&timeout=30', headers: api })
    await waitFor(async () => (await store.version().catch(() => 0)) === 1, 'the write to be stored')
    await redis.stop()
    const res = await answer
    assert.equal(res.statusCode, 503, res.body)
    assert.equal(res.json().code, 'CONVERGENCE_UNKNOWN')
    assert.match(res.json().message, /^The change is stored \(version 1\)/)
    assert.doesNotMatch(res.json().message, /Nothing was changed/i)
  })
})
