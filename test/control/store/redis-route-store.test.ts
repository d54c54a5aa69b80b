import assert from 'node:assert/strict'
import { normalizeRoute } from '../../../src/contracts/route.ts'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { createRedisRouteStore } from '../../../src/control/store/redis-route-store.ts'
import { startRedisServer, type RedisServer } from '../../helpers/redis-server.ts'
import { ci, describeRouteStoreContract, route } from './route-store.contract.ts'

let redis: RedisServer
before(async () => {
  redis = await startRedisServer()
})
after(async () => {
  await redis?.stop()
})

let n = 0
describeRouteStoreContract('redis', async (options) => {
  // A fresh prefix per test: an empty store on the shared server.
  const prefix = `contract-${++n}:`
  const store = createRedisRouteStore({ url: redis.url, prefix, ...options })
  const peer = createRedisRouteStore({ url: redis.url, prefix, ...options })
  return { store, peer, close: async () => void (await Promise.all([store.close(), peer.close()])) }
})

describe('redis route store: routes written by a Tether without the conflict index', () => {
  it('indexes them on the first write, so an exclusive put still conflicts with a path they hold', async () => {
    const prefix = `upgrade-${++n}:`
    const older = createRedisRouteStore({ url: redis.url, prefix })
    try {
      await older.put(route('go-demo', 8080, { servicePath: ['/demo'] }), ci)
      // What an older version left: routes and version, no index.
      const raw = new Redis(redis.url)
      await raw.del(`${prefix}bindings`, `${prefix}route-keys`, `${prefix}bindings-ready-v2`)
      await raw.quit()
      await assert.rejects(older.put(route('alpha', 80, { servicePath: ['/demo'] }), ci, { claim: 'exclusive' }), /already served by service "go-demo"/)
      const ok = await older.put(route('alpha', 80, { servicePath: ['/alpha'] }), ci, { claim: 'exclusive' })
      assert.deepEqual([ok.changed, ok.version], [true, 2])
    } finally {
      await older.close()
    }
  })

  it('re-indexes a store indexed before default-backend and redirect keys existed (only the first ready flag), so a second isDefaultBackend conflicts', async () => {
    const prefix = `upgrade-${++n}:`
    const store = createRedisRouteStore({ url: redis.url, prefix })
    try {
      const blue = normalizeRoute({ serviceName: 'blue', destinations: [{ servicePath: ['/blue'], port: 80 }], isDefaultBackend: true })
      await store.put(blue, ci)
      // What the previous Tether left: an index of (host, path) keys only, flagged ready.
      const raw = new Redis(redis.url)
      await raw.del(`${prefix}bindings`, `${prefix}route-keys`, `${prefix}bindings-ready-v2`)
      await raw.hset(`${prefix}bindings`, 'http||/blue', 'blue')
      await raw.hset(`${prefix}route-keys`, 'blue', 'http||/blue')
      await raw.set(`${prefix}bindings-ready`, '1')
      await raw.quit()
      const green = normalizeRoute({ serviceName: 'green', destinations: [{ servicePath: ['/green'], port: 80 }], isDefaultBackend: true })
      await assert.rejects(store.put(green, ci, { claim: 'exclusive' }), /isDefaultBackend: service "blue" is already the default backend/)
    } finally {
      await store.close()
    }
  })
})
