/**
 * A reload that fails for a reason other than a route: HAProxy's descriptor limit. The limit is
 * lowered for this HAProxy with its own `fd-hard-limit` (the same check and message as a low
 * `ulimit -n`), and maxconn is set explicitly, so the proxy may not lower it to fit.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { BackendReply } from '../helpers/backends.ts'
import { createClient, waitFor } from '../helpers/haproxy.ts'
import { backends, proxyUrl, startAgent, startControl } from './harness.ts'

describe('a reload HAProxy refuses for lack of file descriptors', () => {
  it('is reported with HAProxy’s own message, backs off instead of reloading for every version, keeps serving, and applies once the table fits again', async (t) => {
    const control = await startControl(t)
    const [web] = await backends(t, 1, 'web-')
    // 2 × 1000 connections + ~20 fixed: room for about 80 health-checked servers.
    const p = await startAgent(t, { id: 'proxy-a', controlUrls: [control.url], proxy: { maxconn: 1000, descriptorLimit: 2100 }, agent: { backoff: { baseMs: 1000, maxMs: 4000 } } })
    const client = createClient({ reuse: false })
    t.after(() => client.close())
    const put = (serviceName: string, path: string, wait = false) =>
      control.api('PUT', `/v1/routes/${serviceName}${wait ? '?wait=converged&timeout=10' : ''}`, { destinations: [{ servicePath: [path], port: 80 }], endpoints: [web!.address] })

    assert.equal((await put('web', '/web', true)).status, 200)
    assert.equal((await client.get(`${proxyUrl(p)}/web`)).status, 200)
    const failedBefore = (await p.proxy!.engine.process!.proc()).master.failedReloads

    // 150 more routes, one version each: 150 more checked servers do not fit.
    for (let i = 0; i < 150; i++) assert.equal((await put(`extra-${i}`, `/extra/${i}`)).status, 200)
    const last = (await control.api('GET', '/v1/status')).body.version as number
    const failing = await waitFor('the failure in /v1/status', async () => {
      const status = (await control.api('GET', '/v1/status')).body
      const proxy = status.proxies.find((x: { id: string }) => x.id === 'proxy-a')
      return proxy?.applyFailure !== undefined && proxy.applyFailure.version === last ? proxy : undefined
    }, 20_000, 100)
    assert.equal(failing.status, 'error')
    assert.match(failing.applyFailure.message, /Cannot raise FD limit to \d+, limit is 2100/)
    assert.match(failing.lastError, /Cannot raise FD limit to \d+, limit is 2100/)
    assert.ok(failing.applyFailure.attempts >= 1)
    assert.ok(Date.parse(failing.applyFailure.nextAttemptAt) > Date.parse(failing.receivedAt) - 1000)
    assert.ok(failing.version >= 2 && failing.version < last, `still reports the version it serves (${failing.version}), applied while the table fitted`)
    // The same failure is in /v1/proxies, with the descriptors of what is served.
    const listed = (await control.api('GET', '/v1/proxies')).body.proxies.find((x: { id: string }) => x.id === 'proxy-a')
    assert.match(listed.applyFailure.message, /Cannot raise FD limit/)
    assert.deepEqual([listed.descriptors.limit, listed.descriptors.maxconn], [2100, 1000])
    assert.ok(listed.descriptors.servers > 1 && listed.descriptors.servers < 151, `the descriptors of what is served: ${JSON.stringify(listed.descriptors)}`)

    // Serving goes on with what it has.
    const reply = await client.get(`${proxyUrl(p)}/web`)
    assert.equal((reply.body as BackendReply).instance, 'web-1')
    assert.equal((await client.get(`${proxyUrl(p)}/extra/149`)).status, 404)
    // 150 versions arrived; HAProxy was asked to reload a handful of times, not once per version.
    await new Promise((resolve) => setTimeout(resolve, 3000))
    const failedReloads = (await p.proxy!.engine.process!.proc()).master.failedReloads - failedBefore
    assert.ok(failedReloads >= 1 && failedReloads <= 8, `${failedReloads} failed reloads for 150 versions`)

    // The cause goes away with a later version: fewer routes fit (with the proxy's own margin).
    for (let i = 20; i < 150; i++) assert.equal((await control.api('DELETE', `/v1/routes/extra-${i}`)).status, 200)
    await waitFor('the smaller table applied', async () => ((await client.get(`${proxyUrl(p)}/extra/19`)).status === 200 ? true : undefined), 20_000, 200)
    const recovered = await waitFor('status ok', async () => {
      const proxy = (await control.api('GET', '/v1/status')).body.proxies.find((x: { id: string }) => x.id === 'proxy-a')
      return proxy?.status === 'ok' ? proxy : undefined
    }, 10_000, 100)
    assert.equal(recovered.applyFailure, undefined)
    assert.equal(recovered.lastError, null)
    assert.equal(recovered.descriptors.servers, 21)
    assert.equal((await client.get(`${proxyUrl(p)}/extra/100`)).status, 404)
  })
})
