/**
 * The whole path, as an operator sees it: a real control plane (buildApp on loopback), proxy
 * agents driving real HAProxy, real backends. Changes go through the HTTP API; requests go
 * through HAProxy.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { normalizeRoute } from '../../src/contracts/route.ts'
import { createMemoryRouteStore } from '../../src/control/store/memory-route-store.ts'
import type { BackendReply } from '../helpers/backends.ts'
import { createClient, waitFor } from '../helpers/haproxy.ts'
import { backends, proxyUrl, reconfigureQuery, startAgent, startControl, type TestAgent } from './harness.ts'


/** GET through the proxy without cookies: status and, on 200, the backend that answered. */
async function through(client: ReturnType<typeof createClient>, p: TestAgent, path: string): Promise<{ status: number; instance: string | null }> {
  const reply = await client.get(`${proxyUrl(p)}${path}`, { cookies: false })
  return { status: reply.status, instance: reply.status === 200 ? (reply.body as BackendReply).instance : null }
}

describe('proxy agent with HAProxy and the control plane', () => {
  it('serves a route registered through the API by the time reconfigure?wait=converged answers', async (t) => {
    const control = await startControl(t)
    const [web] = await backends(t, 1, 'web-')
    const p = await startAgent(t, { id: 'proxy-a', controlUrls: [control.url] })
    const client = createClient({ reuse: false })
    t.after(() => client.close())

    const res = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'web', path: '/web', endpoints: [web!.address] })}&wait=converged&timeout=10`)
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.deepEqual(await through(client, p, '/web/page'), { status: 200, instance: 'web-1' })
    assert.equal((await through(client, p, '/other')).status, 404)
    assert.equal(p.agent.status().version, res.body.version)
  })

  it('keeps serving while the control plane is down, serves from disk after a restart, and catches up when it is back', async (t) => {
    const control = await startControl(t)
    const [web, late] = await backends(t, 2, 'app-')
    const stateDir = await mkdtemp(join(tmpdir(), 'tether-lkg-'))
    // Both agents write their last known good here: stop them before removing it.
    const agents: TestAgent[] = []
    t.after(async () => {
      await Promise.all(agents.map((a) => a.stop()))
      await rm(stateDir, { recursive: true, force: true })
    })
    const client = createClient({ reuse: false })
    t.after(() => client.close())

    const first = await startAgent(t, { id: 'proxy-a', controlUrls: [control.url], stateDir })
    agents.push(first)
    const put = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'web', path: '/web', endpoints: [web!.address] })}&wait=converged&timeout=10`)
    assert.equal(put.status, 200)

    await control.stop()
    await waitFor('the agent to notice the outage', async () => (first.agent.status().controlReachable ? undefined : true))
    assert.deepEqual(await through(client, first, '/web'), { status: 200, instance: 'app-1' })

    // The proxy restarts while the control plane is still down: it serves the last known good.
    await first.stop()
    const second = await startAgent(t, { id: 'proxy-a', controlUrls: [control.url], stateDir })
    agents.push(second)
    assert.equal(second.agent.ready, true)
    assert.deepEqual(await through(client, second, '/web'), { status: 200, instance: 'app-1' })

    // A change made meanwhile (straight into the store) reaches the proxy once the control plane is back.
    await control.store.put(normalizeRoute({ serviceName: 'late', destinations: [{ servicePath: ['/late'], port: 80 }], endpoints: [late!.address] }), { actor: 'test', source: 'api' })
    await control.start()
    await waitFor('the proxy to serve /late', async () => ((await through(client, second, '/late')).instance === 'app-2' ? true : undefined))
    assert.deepEqual(await through(client, second, '/web'), { status: 200, instance: 'app-1' })
  })

  it('isolates a route HAProxy refuses, answers wait=converged with 502 ROUTE_NOT_SERVED, reports it on /v1/status and /v1/proxies, and keeps serving the others', async (t) => {
    const control = await startControl(t)
    const [web] = await backends(t, 1, 'web-')
    const p = await startAgent(t, { id: 'proxy-a', controlUrls: [control.url] })
    const client = createClient({ reuse: false })
    t.after(() => client.close())

    assert.equal((await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'web', path: '/web', endpoints: [web!.address] })}`)).status, 200)
    // Valid for the API (a host name is a fine endpoint), refused by HAProxy: it cannot resolve it.
    const bad = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'broken', path: '/broken', endpoints: ['no-such-host.invalid:8080'] })}&wait=converged&timeout=10`)
    // Applied is not served: wait=converged says so (the change is stored).
    assert.equal(bad.status, 502, JSON.stringify(bad.body))
    assert.equal(bad.body.code, 'ROUTE_NOT_SERVED')
    assert.match(bad.body.message, /proxy proxy-a: HAProxy refused the route: .*no-such-host\.invalid/)

    assert.deepEqual(await through(client, p, '/web'), { status: 200, instance: 'web-1' })
    assert.equal((await through(client, p, '/broken')).status, 404)

    const status = await control.api('GET', '/v1/status')
    assert.equal(status.status, 200)
    const refused = status.body.refusedRoutes as Array<{ serviceName: string; error: string; proxies: string[] }>
    assert.deepEqual(refused.map((r) => [r.serviceName, r.proxies]), [['broken', ['proxy-a']]])
    assert.match(refused[0]?.error ?? '', /no-such-host\.invalid/)

    const proxies = await control.api('GET', '/v1/proxies')
    const me = (proxies.body.proxies as Array<{ id: string; status: string; refusedRoutes: Array<{ serviceName: string; error: string }>; lastError: string | null }>).find((x) => x.id === 'proxy-a')
    assert.equal(me?.status, 'degraded')
    assert.deepEqual(me?.refusedRoutes.map((r) => r.serviceName), ['broken'])
    assert.match(me?.lastError ?? '', /broken/)

    // Fixing the route clears the report.
    const fixed = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'broken', path: '/broken', endpoints: [web!.address] })}&wait=converged&timeout=10`)
    assert.equal(fixed.status, 200, JSON.stringify(fixed.body))
    assert.equal((await through(client, p, '/broken')).status, 200)
    await waitFor('the report to clear', async () => ((await control.api('GET', '/v1/status')).body.refusedRoutes.length === 0 ? true : undefined))
  })

  it('resyncs fully when the control plane comes back with a fresh store at a lower version', async (t) => {
    const control = await startControl(t)
    const [a, x] = await backends(t, 2, 'app-')
    const p = await startAgent(t, { id: 'proxy-a', controlUrls: [control.url] })
    const client = createClient({ reuse: false })
    t.after(() => client.close())
    for (const name of ['a', 'b', 'c']) {
      assert.equal((await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: name, path: `/${name}`, endpoints: [a!.address] })}&wait=converged&timeout=10`)).status, 200)
    }
    assert.equal(p.agent.status().version, 3)

    // The store is restored from an older backup: version 1, a different table.
    const restored = createMemoryRouteStore()
    await restored.put(normalizeRoute({ serviceName: 'x', destinations: [{ servicePath: ['/x'], port: 80 }], endpoints: [x!.address] }), { actor: 'restore', source: 'api' })
    await control.stop()
    await control.start(restored)

    await waitFor('the proxy to apply version 1', async () => (p.agent.status().version === 1 ? true : undefined))
    assert.deepEqual(await through(client, p, '/x'), { status: 200, instance: 'app-2' })
    assert.equal((await through(client, p, '/a')).status, 404)
  })

  it('wait=converged answers 504 naming the proxy that stopped, while the live one converged', async (t) => {
    const control = await startControl(t, { proxyTtlMs: 60_000 })
    const [web] = await backends(t, 1, 'web-')
    const alive = await startAgent(t, { id: 'proxy-alive', controlUrls: [control.url] })
    const gone = await startAgent(t, { id: 'proxy-gone', controlUrls: [control.url] })
    await waitFor('both proxies to report', async () => ((await control.api('GET', '/v1/status')).body.live === 2 ? true : undefined))
    await gone.stop() // its last heartbeat stays live for the TTL, but it applies nothing more

    const res = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'web', path: '/web', endpoints: [web!.address] })}&wait=converged&timeout=10`)
    // The stopped proxy never applies it, so this is a 504 whatever the timeout; 10 s leaves the live
    // one time to reload HAProxy on a loaded machine (at 2 s it was still reloading at load 15).
    assert.equal(res.status, 504, JSON.stringify(res.body))
    assert.equal(res.body.code, 'CONVERGENCE_TIMEOUT')
    assert.match(res.body.message, /proxy-gone/)
    assert.doesNotMatch(res.body.message, /proxy-alive/)
    assert.equal(alive.agent.status().version, 1)
  })
})
