/**
 * Regression: with 32 server-template slots per route, 2,000 routes asked HAProxy for more file
 * descriptors than the limit; every reload failed from version ~228 on and a route added
 * afterwards answered 404 on every proxy. Servers now follow real tasks, and a route added to
 * a table this size is served from a spare backend, without a reload.
 */
import { describe, it } from 'node:test'
import { readFile } from 'node:fs/promises'
import assert from 'node:assert/strict'
import type { BackendReply } from '../helpers/backends.ts'
import { startBackends, closeBackends } from '../helpers/backends.ts'
import { startDnsServer } from '../helpers/dns-server.ts'
import { createClient, waitFor } from '../helpers/haproxy.ts'
import { freePort } from '../helpers/redis-server.ts'
import { proxyUrl, silentLog, startAgent, startControl } from './harness.ts'

const ROUTES = Number(process.env.TETHER_TEST_ROUTES ?? 2000)

describe('2,000 Swarm-style routes through the API, default settings', () => {
  it('are all applied, and a route added after them is served', async (t) => {
    const port = await freePort()
    const tasks = await startBackends(2, { hosts: ['127.0.0.2', '127.0.0.3'], port, prefix: 'task-' })
    t.after(() => closeBackends(tasks))
    // Docker's DNS: every service has one task (all on the same address: 2,000 checked servers).
    const dns = await startDnsServer()
    t.after(() => dns.close())
    for (let i = 0; i < ROUTES; i++) dns.set(`tasks.svc-${i}`, ['127.0.0.2'])
    const control = await startControl(t)
    const p = await startAgent(t, { id: 'proxy-a', controlUrls: [control.url], proxy: { resolvers: [dns.address], logger: silentLog } })
    const client = createClient({ reuse: false })
    t.after(() => client.close())

    // 16 clients at a time, as several CI pipelines would; every write is its own version.
    let next = 0
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < ROUTES) {
          const i = next++
          const res = await control.api('PUT', `/v1/routes/svc-${i}`, { destinations: [{ servicePath: [`/svc/${i}`], port }] })
          assert.equal(res.status, 200, JSON.stringify(res.body))
        }
      }),
    )
    // Once the proxy serves the whole table, a new route takes a spare backend: no reload.
    const table = (await control.api('GET', '/v1/config')).body.version
    await waitFor('the proxy on the last version of the 2,000', async () => ((await control.api('GET', '/v1/status')).body.proxies[0]?.version === table ? true : undefined), 120_000, 200)
    const reloads = p.proxy!.engine.counters.reloads
    dns.set('tasks.late', ['127.0.0.3'])
    const late = await control.api('PUT', '/v1/routes/late?wait=converged&timeout=120', { destinations: [{ servicePath: ['/late'], port }] })
    assert.equal(late.status, 200, JSON.stringify(late.body))
    // Routed at once; its task is there as soon as DNS answered (at once on an idle machine).
    const reply = await waitFor('the late route served by its task', async () => {
      const r = await client.get(`${proxyUrl(p)}/late/page`)
      return r.status === 200 ? r : undefined
    }, 30_000, 100)
    assert.equal((reply.body as BackendReply).instance, 'task-2')
    assert.equal(p.proxy!.engine.counters.reloads, reloads, 'the late route was served without a reload')
    assert.match(await readFile(p.proxy!.engine.paths.config, 'utf8'), /\nbackend tether\.spare\.plain\.1\n(?:    .*\n)*?    server /, 'from the first spare backend')
    await waitFor('the last of the 2,000 served', async () => ((await client.get(`${proxyUrl(p)}/svc/${ROUTES - 1}`)).status === 200 ? true : undefined), 30_000, 100)

    const status = await waitFor('the heartbeat of the last version', async () => {
      const s = (await control.api('GET', '/v1/status')).body
      return s.proxies[0]?.version === late.body.version ? s : undefined
    }, 20_000, 200)
    assert.equal(status.proxies[0].status, 'ok', status.proxies[0].lastError)
    assert.equal(status.proxies[0].applyFailure, undefined)
    await waitFor('every task resolved', async () => ((await control.api('GET', '/v1/status')).body.proxies[0]?.descriptors?.servers === ROUTES + 1 ? true : undefined), 30_000, 500)
    const final = (await control.api('GET', '/v1/status')).body
    assert.equal(final.proxies[0].descriptors.servers, ROUTES + 1)
    assert.equal(final.proxies[0].descriptors.checkedServers, ROUTES + 1)
    assert.equal(final.proxies[0].descriptors.problem, null)
  })
})
