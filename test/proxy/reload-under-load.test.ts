/**
 * Reload under load through the whole path: requests through HAProxy while 50 reconfigures
 * land through the control plane's API, each one waited for (wait=converged), so each is a
 * new version and a reload of HAProxy. No request may fail — not even on a keep-alive
 * connection that an old HAProxy worker was holding when the reload happened.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { backends, proxyUrl, reconfigureQuery, startAgent, startControl, startLoad } from './harness.ts'


describe('reload under load, through the control plane', () => {
  // Regression: an old HAProxy worker used to close idle keep-alive connections during its soft
  // stop, failing a few requests in 50 reloads; `option idle-close-on-response` fixed it.
  it('drops no request while 50 reconfigures land through the API under load', async (t) => {
    const control = await startControl(t)
    const web = await backends(t, 2, 'web-')
    const p = await startAgent(t, { id: 'proxy-a', controlUrls: [control.url] })
    const put = async (query: string): Promise<void> => {
      const res = await control.api('PUT', `/v1/reconfigure?${query}&wait=converged&timeout=10`)
      assert.equal(res.status, 200, JSON.stringify(res.body))
    }
    await put(reconfigureQuery({ serviceName: 'web', path: '/web', endpoints: web.map((b) => b.address), sticky: true }))

    const load = startLoad(`${proxyUrl(p)}/web/load`, { connections: 4, maxMs: 60_000 })
    for (let i = 0; i < 50; i++) {
      // Every reconfigure is a new version, and so a reload of HAProxy.
      await put(reconfigureQuery({ serviceName: 'churn', path: `/churn-${i}`, endpoints: [web[i % 2]!.address] }))
    }
    const result = await load.stop()
    assert.equal(p.agent.status().version, 51)
    assert.ok(result.ok > 0, 'the load generator sent requests')
    assert.deepEqual({ failed: result.failed, failures: result.failures }, { failed: 0, failures: [] })
  })

})
