/**
 * The Redis fixtures of the store's failure tests (outage, write outcome, API answers while
 * Redis is down): a real redis-server, stores and raw clients on it, all stopped after each
 * test, paused servers resumed first. Call redisFixtures() at the top level of a test file.
 */
import { afterEach } from 'node:test'
import { Redis } from 'ioredis'
import { createRedisRouteStore, type RedisRouteStoreOptions } from '../../src/control/store/redis-route-store.ts'
import type { RouteStore } from '../../src/control/store/route-store.ts'
import { startRedisServer, type RedisServer, type RedisServerOptions } from './redis-server.ts'

export interface RedisFixtures {
  redisServer(options?: RedisServerOptions): Promise<RedisServer>
  store(url: string, options?: Partial<RedisRouteStoreOptions>): RouteStore
  /** A raw client, for what the store does not do (a slow script, reading keys). */
  raw(url: string): Promise<Redis>
  /** Anything else to undo after the test (run in reverse order). */
  cleanup(fn: () => Promise<void>): void
}

export function redisFixtures(): RedisFixtures {
  let cleanups: Array<() => Promise<void>> = []
  afterEach(async () => {
    const pending = cleanups.reverse()
    cleanups = []
    for (const fn of pending) await fn()
  })
  return {
    async redisServer(options) {
      const server = await startRedisServer(options)
      cleanups.push(() => server.dispose())
      return server
    },
    store(url, options = {}) {
      const s = createRedisRouteStore({ url, ...options })
      cleanups.push(() => s.close())
      return s
    },
    async raw(url) {
      const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 })
      cleanups.push(async () => void r.disconnect())
      await r.connect()
      return r
    },
    cleanup(fn) {
      cleanups.push(fn)
    },
  }
}
