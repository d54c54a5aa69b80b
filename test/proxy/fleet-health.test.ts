import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { waitFor } from '../helpers/haproxy.ts'
import { freePort } from '../helpers/redis-server.ts'
import { backends, startAgent, startControl } from './harness.ts'

describe('route health in /v1/status and /v1/proxies', () => {
  it('comes from the health checks: a route on a port nothing listens on shows down, with its server names', async (t) => {
    const control = await startControl(t)
    const [web] = await backends(t, 1, 'web-')
    const wrong = `127.0.0.1:${await freePort()}`
    await startAgent(t, { id: 'proxy-a', controlUrls: [control.url] })
    for (const [name, endpoint] of [['good', web!.address], ['wrong-port', wrong]] as const) {
      const res = await control.api('PUT', `/v1/routes/${name}?wait=converged&timeout=10`, { destinations: [{ servicePath: [`/${name}`], port: 80 }], endpoints: [endpoint] })
      assert.equal(res.status, 200, JSON.stringify(res.body))
    }
    // fall 2 × inter 2 s: the wrong port is marked down within a few seconds.
    const health = await waitFor('the wrong port down', async () => {
      const status = (await control.api('GET', '/v1/status')).body
      const h = status.routeHealth as Array<{ serviceName: string; down: number }>
      return h.find((r) => r.serviceName === 'wrong-port')?.down === 1 ? h : undefined
    }, 15_000, 250)
    assert.deepEqual(health, [
      { serviceName: 'good', up: 1, down: 0, proxies: 1, servers: [web!.address] },
      { serviceName: 'wrong-port', up: 0, down: 1, proxies: 1, servers: [wrong] },
    ])
    const proxy = (await control.api('GET', '/v1/proxies')).body.proxies[0]
    assert.deepEqual(
      proxy.backends.find((b: { serviceName: string }) => b.serviceName === 'wrong-port'),
      { serviceName: 'wrong-port', port: 80, up: 0, down: 1, servers: [{ name: wrong, status: 'down' }] },
    )
  })
})
