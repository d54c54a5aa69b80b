/**
 * The version going backwards for real: the control plane runs on a real redis-server that
 * comes back empty (restarted without persistence) or is flushed. The proxy must end up
 * serving the table the control plane now holds, not keep the newer-numbered old one.
 */
import { describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { Redis } from 'ioredis'
import { createRedisRouteStore } from '../../src/control/store/redis-route-store.ts'
import { closeBackends, startBackends, type BackendReply } from '../helpers/backends.ts'
import { createClient, waitFor } from '../helpers/haproxy.ts'
import { startRedisServer } from '../helpers/redis-server.ts'
import { reconfigureQuery, startAgent, startControl, type TestAgent } from './harness.ts'

async function setup(t: TestContext) {
  const redis = await startRedisServer()
  t.after(() => redis.stop())
  const store = createRedisRouteStore({ url: redis.url })
  t.after(() => store.close())
  const control = await startControl(t, { store })
  const backends = await startBackends(2, { prefix: 'app-' })
  t.after(() => closeBackends(backends))
  // A short long poll: should a control plane only wake long polls for newer versions, the
  // agent's own "is my version still current?" check after each poll still comes quickly.
  const proxy = await startAgent(t, { id: 'proxy-a', controlUrls: [control.url], agent: { waitSeconds: 1 } })
  const client = createClient({ reuse: false })
  t.after(() => client.close())
  const serve = async (path: string): Promise<string | number> => {
    assert.ok(proxy.proxy !== null)
    const reply = await client.get(`${proxy.proxy.url}${path}`, { cookies: false })
    return reply.status === 200 ? (reply.body as BackendReply).instance : reply.status
  }
  for (const name of ['a', 'b', 'c']) {
    const res = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: name, path: `/${name}`, endpoints: [backends[0]!.address] })}&wait=converged&timeout=10`)
    assert.equal(res.status, 200, JSON.stringify(res.body))
  }
  assert.equal(await serve('/a'), 'app-1')
  return { redis, control, backends, proxy, serve }
}

async function afterRestore(ctx: Awaited<ReturnType<typeof setup>>, proxy: TestAgent): Promise<void> {
  // The first write after the loss: version 1, a table without a, b, c.
  const res = await ctx.control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'x', path: '/x', endpoints: [ctx.backends[1]!.address] })}`)
  assert.equal(res.status, 200, JSON.stringify(res.body))
  assert.equal(res.body.version, 1)
  await waitFor('the proxy to apply the restored table (version 1)', async () => (proxy.agent.status().version === 1 ? true : undefined), 15_000)
  assert.equal(await ctx.serve('/x'), 'app-2')
  assert.equal(await ctx.serve('/a'), 404)
}

describe('proxy agent when Redis loses the routing table', () => {
  it('serves the new table after Redis restarts empty', async (t) => {
    const ctx = await setup(t)
    await ctx.redis.stop()
    await ctx.redis.start()
    await waitFor('the control plane to reach Redis again', async () => ((await ctx.control.api('GET', '/readyz')).status === 200 ? true : undefined), 15_000)
    await afterRestore(ctx, ctx.proxy)
  })

  it('serves the new table after FLUSHALL', async (t) => {
    const ctx = await setup(t)
    const redis = new Redis(ctx.redis.url)
    await redis.flushall()
    redis.disconnect()
    await afterRestore(ctx, ctx.proxy)
  })
})
