/**
 * What a Redis outage looks like from the route store: writes and reads fail fast with
 * STORE_UNAVAILABLE (the API answers 503), and everything comes back by itself, including the
 * pub/sub that wakes other replicas' long polls. Real redis-server, stopped and restarted.
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { createRouteStore, routeStoreKind } from '../../../src/control/store/create-route-store.ts'
import { redisFixtures } from '../../helpers/redis-fixtures.ts'
import { ci, nextVersion, route } from './route-store.contract.ts'

/** Generous bound on "fails fast": the store's own limits are 1 s; a hang would hit this. */
const FAIL_FAST_BOUND_MS = 3000

const { redisServer, store, cleanup } = redisFixtures()

/** Rejects with STORE_UNAVAILABLE (503), and does so without hanging. */
async function assertUnavailable(promise: Promise<unknown>, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} still pending after ${FAIL_FAST_BOUND_MS} ms`)), FAIL_FAST_BOUND_MS)
  })
  try {
    await assert.rejects(Promise.race([promise, hang]), (err: Error & { code?: string; statusCode?: number }) => {
      assert.equal(err.code, 'STORE_UNAVAILABLE', `${what}: ${err.message}`)
      assert.equal(err.statusCode, 503)
      assert.match(err.message, /Redis at 127\.0\.0\.1:\d+/)
      return true
    })
  } finally {
    clearTimeout(timer)
  }
}

/** Polls `fn` until it resolves; bounded in attempts and time. */
async function eventually<T>(fn: () => Promise<T>, attempts = 100, intervalMs = 50): Promise<T> {
  let last: unknown
  for (let i = 0; i < attempts; i++) {
    try {
      return await fn()
    } catch (err) {
      last = err
      await sleep(intervalMs)
    }
  }
  throw last
}

describe('Redis route store when Redis goes away', () => {
  it('refuses writes and reads with STORE_UNAVAILABLE while Redis is down', async () => {
    const redis = await redisServer()
    const s = store(redis.url)
    await s.put(route('go-demo'), ci)
    await redis.stop()
    await assertUnavailable(s.put(route('other'), ci), 'put')
    await assertUnavailable(s.remove('go-demo', ci), 'remove')
    await assertUnavailable(s.rollback(0, ci), 'rollback')
    await assertUnavailable(s.snapshot(), 'snapshot')
    await assertUnavailable(s.get('go-demo'), 'get')
    await assertUnavailable(s.ping(), 'ping')
    await assertUnavailable(s.putProxy({ id: 'p1', version: 1, status: 'ok', lastError: null, refusedRoutes: [], node: 'n', haproxyVersion: '2.6', startedAt: '2026-01-01T00:00:00.000Z', backends: [], receivedAt: '2026-01-01T00:00:00.000Z' }, 1000), 'putProxy')
    await assertUnavailable(s.acquireLease('discovery', 'me', 1000), 'acquireLease')
  })

  it('works again by itself when Redis is back, and other replicas hear the new versions again', async () => {
    const redis = await redisServer()
    const writer = store(redis.url)
    const replica = store(redis.url)
    await writer.put(route('go-demo'), ci)
    await replica.version()

    await redis.stop()
    await assertUnavailable(writer.ping(), 'ping while down')
    await redis.start() // same port, empty (no persistence)

    await eventually(() => writer.ping())
    await eventually(() => replica.ping())
    // The restarted Redis is empty, so versions start again from 1.
    assert.deepEqual(await writer.put(route('after-outage'), ci), { route: route('after-outage'), version: 1, changed: true })
    assert.deepEqual((await replica.snapshot()).routes, [route('after-outage')])
    // The replica's subscription comes back too (on its own connection, maybe a little later):
    // writes through the other store wake it again.
    let heard: number | undefined
    for (let i = 2; i < 40 && heard === undefined; i++) {
      const listening = nextVersion(replica, (v) => v === i, 250).catch(() => undefined)
      await writer.put(route(`after-outage-${i}`), ci)
      heard = await listening
    }
    assert.ok(heard !== undefined, 'the replica hears new versions again')
  })

  it('starts while Redis is down, refusing with STORE_UNAVAILABLE, and connects by itself once Redis is up', async () => {
    const redis = await redisServer()
    await redis.stop()
    const s = store(redis.url)
    await assertUnavailable(s.ping(), 'ping before Redis started')
    await assertUnavailable(s.put(route('go-demo'), ci), 'put before Redis started')
    await redis.start()
    await eventually(() => s.ping())
    assert.equal((await s.put(route('go-demo'), ci)).version, 1)
  })

  it('tells listeners about a version written while their subscription was cut, once it reconnects', async () => {
    const redis = await redisServer()
    const replica = store(redis.url)
    const writer = store(redis.url)
    await replica.version()
    const first = nextVersion(replica, (v) => v === 1)
    await writer.put(route('a'), ci)
    await first

    // Cut every subscriber connection and, in the same transaction (so before any reconnect),
    // move the version on without a publish: the announcement the replica missed.
    const raw = new Redis(redis.url, { lazyConnect: true })
    cleanup(async () => void raw.disconnect())
    await raw.connect()
    const heard = nextVersion(replica, (v) => v === 42)
    await raw.multi().client('KILL', 'TYPE', 'pubsub').set('tether:version', '42').exec()
    assert.equal(await heard, 42)
  })
})

describe('createRouteStore', () => {
  it('uses the in-memory store when no Redis URL is given', async () => {
    assert.equal(routeStoreKind({}), 'memory')
    assert.equal(routeStoreKind({ url: '' }), 'memory')
    const s = createRouteStore({})
    cleanup(() => s.close())
    await s.put(route('go-demo'), ci)
    assert.equal(await s.version(), 1)
  })

  it('uses Redis, under the given key prefix, when a URL is given', async () => {
    const redis = await redisServer()
    assert.equal(routeStoreKind({ url: redis.url }), 'redis')
    const a = createRouteStore({ url: redis.url, prefix: 'team-a:' })
    const a2 = createRouteStore({ url: redis.url, prefix: 'team-a:' })
    const b = createRouteStore({ url: redis.url, prefix: 'team-b:' })
    cleanup(async () => void (await Promise.all([a.close(), a2.close(), b.close()])))
    await a.put(route('go-demo'), ci)
    assert.deepEqual((await a2.snapshot()).routes, [route('go-demo')], 'same prefix, same data')
    assert.deepEqual(await b.snapshot(), { version: 0, routes: [] }, 'another prefix is another store')
  })
})
