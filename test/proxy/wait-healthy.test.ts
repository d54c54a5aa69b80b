/**
 * `wait=healthy` end to end: a real control plane, real proxy agents each driving its own
 * HAProxy, and a task whose health path fails until the test lets it pass. The reconfigure
 * answers once every live proxy has a task of the route passing its check (proxies report the
 * change within their health watch, not at their next heartbeat, here a minute away), and 504
 * naming the proxies without one otherwise; the route is stored either way.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'undici'
import { startCheckedTask } from '../helpers/backends.ts'
import { waitFor } from '../helpers/haproxy.ts'
import { proxyUrl, startAgent, startControl } from './harness.ts'

const agentOptions = { heartbeatMs: 60_000, healthWatchMs: 200 }

describe('reconfigure … &wait=healthy', () => {
  it('answers once every live proxy has a task passing its health check, and the route then serves at once', async (t) => {
    const task = await startCheckedTask(t, { name: 'v1', healthy: false })
    const control = await startControl(t)
    const proxies = [await startAgent(t, { id: 'p1', controlUrls: [control.url], agent: agentOptions }), await startAgent(t, { id: 'p2', controlUrls: [control.url], agent: agentOptions })]

    let answered = false
    const query = `serviceName=shop&servicePath=/shop&port=80&endpoints=${task.address}&healthCheckPath=/healthz&healthCheckInterval=1&wait=healthy&timeout=60`
    const answer = control.api('PUT', `/v1/reconfigure?${query}`).then((r) => ((answered = true), r))

    // Both proxies applied the route and report its task down: still no answer.
    await waitFor('both proxies reporting the task down', async () => {
      const s = (await control.api('GET', '/v1/status')).body as { routeHealth: Array<{ serviceName: string; up: number; down: number; proxies: number }> }
      const shop = s.routeHealth.find((r) => r.serviceName === 'shop')
      return shop !== undefined && shop.proxies === 2 && shop.down === 1 && shop.up === 0 ? true : undefined
    }, 60_000)
    assert.equal(answered, false, 'no answer while no proxy has a passing task')
    for (const p of proxies) assert.equal((await request(`${proxyUrl(p)}/shop`)).statusCode, 503, 'meanwhile the route says 503 (Retry-After), not a refused connection')

    task.healthy = true
    const res = await answer
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.equal(res.body.route.healthCheckPath, '/healthz')
    assert.deepEqual(
      [...res.body.convergence.healthy].sort((a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : 1)),
      [
        { id: 'p1', up: 1 },
        { id: 'p2', up: 1 },
      ],
    )
    for (const p of proxies) {
      const served = await request(`${proxyUrl(p)}/shop`)
      assert.equal(served.statusCode, 200, `proxy ${p.id} serves the route as soon as wait=healthy answered`)
      assert.equal(await served.body.text(), 'v1')
    }
  })

  it('answers 504 naming the proxies with no passing task when none passes in time; the route stays stored', async (t) => {
    const task = await startCheckedTask(t, { name: 'never', healthy: false })
    const control = await startControl(t)
    await startAgent(t, { id: 'edge-1', controlUrls: [control.url], agent: agentOptions })
    const route = `serviceName=slow&servicePath=/slow&port=80&endpoints=${task.address}&healthCheckPath=/healthz&healthCheckInterval=1`
    // Applied first (however long a loaded machine takes), so that the 3 s below are the health wait's alone.
    assert.equal((await control.api('PUT', `/v1/reconfigure?${route}&wait=converged&timeout=120`)).status, 200)
    const res = await control.api('PUT', `/v1/reconfigure?${route}&wait=healthy&timeout=3`)
    assert.equal(res.status, 504, JSON.stringify(res.body))
    assert.equal(res.body.code, 'CONVERGENCE_TIMEOUT')
    assert.match(res.body.message, /1 of 1 live proxies have no task of "slow" passing its health check after 3s: edge-1 \(node node-of-edge-1\): 0 of 1 tasks pass the health check/)
    assert.match(res.body.message, /The change itself is stored \(version \d+\)/)
    const stored = await control.api('GET', '/v1/routes/slow')
    assert.equal(stored.status, 200)
    assert.equal(task.served, 0, 'the failing task never got a request')
  })

  it('is refused where it means nothing: a certificate or a removal takes only wait=converged', async (t) => {
    const control = await startControl(t)
    const res = await control.api('DELETE', '/v1/remove?serviceName=x&wait=healthy')
    assert.equal(res.status, 400)
    assert.match(JSON.stringify(res.body), /wait/)
  })
})
