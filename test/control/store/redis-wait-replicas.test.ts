/**
 * REDIS_WAIT_REPLICAS (opt-in durability across a failover): a route write is acknowledged only
 * once that many replicas confirmed it (Redis WAIT). When they do not in time, the answer says
 * what is true: stored on the primary, not confirmed on the replicas (WRITE_NOT_REPLICATED,
 * repeating is safe), never "nothing was changed" and never a plain success. Real primary and
 * replica on loopback; the replica is paused (kill -STOP) to withhold its confirmation. The
 * failover half of the promise (an acknowledged write is on the promoted replica) is in
 * redis-sentinel.test.ts.
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { createRedisRouteStore } from '../../../src/control/store/redis-route-store.ts'
import { startRedisFor } from '../../helpers/redis-server.ts'
import { ci, route } from './route-store.contract.ts'

describe('REDIS_WAIT_REPLICAS', () => {
  it('acknowledges a write once the replica has it, and answers WRITE_NOT_REPLICATED (stored on the primary) when the replica does not confirm', async (t) => {
    const primary = await startRedisFor(t)
    const replica = await startRedisFor(t, { args: ['--replicaof', '127.0.0.1', String(primary.port)] })
    const replicaClient = new Redis(replica.url, { maxRetriesPerRequest: 0, lazyConnect: true })
    replicaClient.on('error', () => {})
    t.after(() => replicaClient.disconnect())
    await replicaClient.connect()
    for (let i = 0; i < 200 && !(await replicaClient.info('replication')).includes('master_link_status:up'); i++) await sleep(50)

    const store = createRedisRouteStore({ url: primary.url, waitReplicas: 1, waitTimeoutMs: 300 })
    t.after(() => store.close())
    const first = await store.put(route('go-demo', 8080), ci)
    assert.equal(first.version, 1)
    // Acknowledged means the replica has it.
    assert.ok((await replicaClient.hget('tether:routes', 'go-demo'))?.includes('8080'), 'the acknowledged write is on the replica')

    replica.pause()
    try {
      await assert.rejects(store.put(route('go-demo', 9090), ci), (err: Error & { code?: string; statusCode?: number }) => {
        assert.equal(err.code, 'WRITE_NOT_REPLICATED')
        assert.equal(err.statusCode, 503)
        assert.match(err.message, /stored on the Redis primary, but 0 of the 1 replica\(s\) asked for \(REDIS_WAIT_REPLICAS\) confirmed it within 300 ms \(version 2\).*Repeating the same request is safe/)
        return true
      })
      // What the answer said: the primary has it.
      assert.equal((await store.get('go-demo'))?.route.destinations[0]?.port, 9090)
    } finally {
      replica.resume()
    }
    // Once the replica is back, repeating the request is acknowledged (nothing to change), and the replica has it.
    const again = await store.put(route('go-demo', 9090), ci)
    assert.deepEqual([again.version, again.changed], [2, false])
    assert.ok((await replicaClient.hget('tether:routes', 'go-demo'))?.includes('9090'))
  })

  it('refuses a wait as long as the command timeout at start', () => {
    assert.throws(() => createRedisRouteStore({ url: 'redis://127.0.0.1:1', waitReplicas: 1, waitTimeoutMs: 1000 }), /waitTimeoutMs must be an integer from 1 to below the command timeout \(1000 ms\)/)
  })
})
