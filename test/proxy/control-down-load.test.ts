/**
 * The data plane does not depend on the control plane being up: a real proxy (agent + HAProxy)
 * under steady load (16 concurrent clients, half sticky) while the control plane goes away for
 * a few seconds (the agent's long poll fails, it retries with backoff) and comes back: 0 failed
 * requests, sticky clients stay on their backend, and a change made once it is back is served.
 * The same on Swarm: test/swarm/swarm.test.ts ("the control-plane task killed").
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, it } from 'node:test'
import { Agent as HttpAgent, request } from 'undici'
import type { BackendReply } from '../helpers/backends.ts'
import { waitFor } from '../helpers/haproxy.ts'
import { backends, proxyUrl, reconfigureQuery, startAgent, startControl } from './harness.ts'

describe('a proxy under load while the control plane is down', () => {
  it('serves every request (0 failed), keeps stickiness, and takes a change once the control plane is back', async (t) => {
    const control = await startControl(t)
    const apps = await backends(t, 3, 'app-')
    const p = await startAgent(t, { id: 'proxy-a', controlUrls: [control.url] })
    const endpoints = apps.map((b) => b.address)
    const put = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'web', path: '/web', endpoints })}&sticky=true&wait=converged&timeout=10`)
    assert.equal(put.status, 200, JSON.stringify(put.body))

    const dispatcher = new HttpAgent({ connections: 32, keepAliveTimeout: 5_000 })
    t.after(() => dispatcher.close())
    const failures: string[] = []
    const moved: string[] = []
    let served = 0
    let servedWhileDown = 0
    let down = false
    let stop = false
    const deadline = Date.now() + 60_000
    const clients = Array.from({ length: 16 }, async (_, c) => {
      const jar = new Map<string, string>()
      let pinned: string | undefined
      for (let n = 0; n < 100_000 && !stop && Date.now() < deadline; n++) {
        try {
          const res = await request(`${proxyUrl(p)}/web/${c}/${n}`, { dispatcher, headers: c % 2 === 0 && jar.size > 0 ? { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } : {} })
          const text = await res.body.text()
          if (res.statusCode !== 200) {
            failures.push(`${res.statusCode} ${text.slice(0, 100)}`)
            continue
          }
          served++
          if (down) servedWhileDown++
          const instance = (JSON.parse(text) as BackendReply).instance
          const set = res.headers['set-cookie']
          if (c % 2 === 0) {
            if (pinned !== undefined && instance !== pinned) moved.push(`client ${c}: ${pinned} → ${instance}`)
            for (const line of set === undefined ? [] : Array.isArray(set) ? set : [set]) {
              const [pair = ''] = line.split(';')
              const eq = pair.indexOf('=')
              if (eq > 0) jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim())
            }
            pinned ??= instance
          }
        } catch (err) {
          failures.push(String((err as { code?: string }).code ?? err))
        }
        await sleep(2)
      }
    })

    await sleep(500)
    await control.stop()
    down = true
    await waitFor('the agent to notice the outage', async () => (p.agent.status().controlReachable ? undefined : true))
    await sleep(3_000)
    down = false
    await control.start()
    await waitFor('the agent to be back', async () => (p.agent.status().controlReachable ? true : undefined), 20_000)
    const more = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'late', path: '/late', endpoints: [apps[0]!.address] })}&wait=converged&timeout=10`)
    assert.equal(more.status, 200, JSON.stringify(more.body))
    await sleep(300)
    stop = true
    await Promise.all(clients)

    process.stdout.write(`# control plane down under load: ${served} requests served (${servedWhileDown} while it was down), ${failures.length} failed\n`)
    assert.ok(servedWhileDown > 100, `only ${servedWhileDown} requests while the control plane was down`)
    assert.deepEqual(failures, [], 'no request failed')
    assert.deepEqual(moved, [], 'sticky clients stayed on their backend')
    const late = await request(`${proxyUrl(p)}/late/x`, { headers: { connection: 'close' } })
    assert.equal(late.statusCode, 200)
    assert.equal(((await late.body.json()) as BackendReply).instance, 'app-1')
  })
})
