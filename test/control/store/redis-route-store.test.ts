import { after, before } from 'node:test'
import { createRedisRouteStore } from '../../../src/control/store/redis-route-store.ts'
import { startRedisServer, type RedisServer } from '../../helpers/redis-server.ts'
import { describeRouteStoreContract } from './route-store.contract.ts'

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
