/**
 * Releases of a sticky service through a real HAProxy (HAProxy 2.6 and 3.0) and real stateful
 * backends: a canary takes a share of NEW sessions by weight, pinned sessions stay on their side,
 * a new percentage is a runtime change (no reload) that moves nobody, a promotion with a drain
 * keeps old sessions on their old task until the drain ends, an abort sends the canary's sessions
 * back. A bounded load of new sessions runs during every step and none of its requests fails.
 *
 * The routes are what the control plane stores for each step (test/control/releases.test.ts
 * checks that): the canary and the promoted route carry the main route's cookie name.
 */
import { after, before, describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { normalizeRoute, type Route } from '../../src/contracts/route.ts'
import { closeBackends, startBackends, type Backend, type BackendReply } from '../helpers/backends.ts'
import { createClient, createTestProxy, route, waitFor, type TestProxy } from '../helpers/haproxy.ts'
import { statePaths } from '../../src/proxy/haproxy/render.ts'
import { showStat, type StatRow } from '../../src/proxy/haproxy/runtime.ts'
import { startLoad } from './harness.ts'

const COOKIE = 'TETHER_blue'

describe('canary and takeover with drain through HAProxy', () => {
  let blue: Backend[]
  let green: Backend[]
  let proxy: TestProxy
  let version = 0

  const main = (): Route => route({ serviceName: 'blue', paths: ['/app'], sticky: true, endpoints: blue.map((b) => b.address) })
  const canary = (percent: number): Route =>
    normalizeRoute({ serviceName: 'green', destinations: [{ servicePath: ['/app'], port: 80 }], sticky: true, stickyCookie: COOKIE, endpoints: green.map((b) => b.address), canary: percent })
  const promoted = (): Route => route({ serviceName: 'green', paths: ['/app'], sticky: true, stickyCookie: COOKIE, endpoints: green.map((b) => b.address) })
  const draining = (): Route => ({ ...main(), drain: { until: new Date(Date.now() + 10_000).toISOString(), to: 'green' } })
  const apply = (routes: Route[]) => proxy.engine.apply({ version: ++version, routes })

  before(async () => {
    blue = await startBackends(2, { prefix: 'blue-' })
    green = await startBackends(1, { prefix: 'green-' })
    proxy = await createTestProxy(undefined)
  })
  after(async () => {
    await proxy?.stop()
    await closeBackends([...(blue ?? []), ...(green ?? [])])
  })

  type Client = ReturnType<typeof createClient> & { instance: string; count: number }

  /** `n` new visitors' first request each; each keeps its cookie jar. */
  async function visitors(t: TestContext, n: number): Promise<Client[]> {
    const out: Client[] = []
    for (let i = 0; i < n; i++) {
      const c = createClient()
      t.after(() => c.close())
      const reply = await c.get(`${proxy.url}/app`)
      assert.equal(reply.status, 200)
      const body = reply.body as BackendReply
      out.push(Object.assign(c, { instance: body.instance, count: body.count }))
    }
    return out
  }

  /** Every client's next request reaches the task it is pinned to, its session going on. */
  async function stayPinned(clients: Client[], why: string): Promise<void> {
    for (const c of clients) {
      const body = (await c.get(`${proxy.url}/app`)).body as BackendReply
      assert.equal(body.instance, c.instance, `${why}: a client pinned to ${c.instance} reached ${body.instance}`)
      assert.equal(body.count, c.count + 1, `${why}: the session on ${c.instance} went on`)
      c.count = body.count
    }
  }

  /** New sessions (no cookie kept) sent back to back on 4 connections until stopped, or `maxMs`; stopped after the test at the latest. */
  function boundedLoad(t: TestContext, maxMs: number): { stop(): ReturnType<ReturnType<typeof startLoad>['stop']> } {
    const load = startLoad(`${proxy.url}/app`, { connections: 4, maxMs })
    let stopped: ReturnType<typeof load.stop> | undefined
    const stop = () => (stopped ??= load.stop())
    t.after(() => stop())
    return { stop }
  }

  const onGreen = (clients: Client[]): number => clients.filter((c) => c.instance.startsWith('green-')).length

  /** The canary's share of the weight HAProxy itself holds now in the shared backend (show stat): exact, whatever the traffic. */
  async function canaryWeightShare(): Promise<number> {
    const rows = await showStat(statePaths(proxy.stateDir).adminSocket)
    const greenAddrs = new Set(green.map((g) => g.address))
    const canaryRow = rows.find((r) => greenAddrs.has(r.addr))
    assert.ok(canaryRow !== undefined, 'the canary task is a server of the shared backend')
    const servers = rows.filter((r) => r.pxname === canaryRow.pxname && r.svname !== 'FRONTEND' && r.svname !== 'BACKEND' && !r.status.startsWith('MAINT'))
    const weight = (r: StatRow) => Number(r.weight)
    const total = servers.reduce((sum, r) => sum + weight(r), 0)
    return servers.filter((r) => greenAddrs.has(r.addr)).reduce((sum, r) => sum + weight(r), 0) / total
  }

  it('canary 30%, then 60% without a reload, promotion with a drain, drain end: nobody moved early, no request failed', async (t) => {
    await apply([main()])
    await waitFor('blue up', async () => ((await proxy.engine.health()).find((h) => h.serviceName === 'blue')?.up === 2 ? true : undefined))
    const before = await visitors(t, 10)
    assert.equal(onGreen(before), 0, 'before the canary every session is on blue')
    const load = boundedLoad(t, 120_000)

    // Canary start: about 30 of 100 new sessions on green; the sessions pinned before stay on blue.
    await apply([main(), canary(30)])
    const first = await visitors(t, 100)
    assert.ok(onGreen(first) >= 15 && onGreen(first) <= 45, `about 30 of 100 new sessions on the canary, got ${onGreen(first)}`)
    const share30 = await canaryWeightShare()
    assert.ok(share30 > 0.25 && share30 < 0.35, `the canary holds about 30 % of the weight, holds ${(share30 * 100).toFixed(1)} %`)
    await stayPinned(before, 'canary start')
    await stayPinned(first, 'canary clients')

    // Percentage change: a runtime weight change, no reload, nobody moved.
    const reloads = proxy.engine.counters.reloads
    const runtime = proxy.engine.counters.runtimeChanges
    await apply([main(), canary(60)])
    assert.equal(proxy.engine.counters.reloads, reloads, 'a new percentage is applied without a reload')
    assert.ok(proxy.engine.counters.runtimeChanges > runtime, 'it went through the runtime API')
    await stayPinned(before, 'percentage change')
    await stayPinned(first, 'percentage change')
    // What 60 % means in HAProxy: the canary's servers hold 60 % of the backend's weight (exact).
    const share = await canaryWeightShare()
    assert.ok(share > 0.55 && share < 0.65, `the canary holds about 60 % of the weight, holds ${(share * 100).toFixed(1)} %`)
    // The split new visitors see is measured, not asserted: they take turns with the load's 4
    // connections of new sessions on one weighted round robin, so a sample of 100 can fall in step
    // with it (35 of 100 once on a loaded CI machine, with the weights above in force).
    const second = await visitors(t, 100)
    process.stdout.write(`MEASURED canary 60 %: ${onGreen(second)} of 100 new sessions on the canary (weight share ${(share * 100).toFixed(1)} %)\n`)

    // Promotion (takeover with drain): every new session on green; blue's pinned sessions stay on blue.
    await apply([draining(), promoted()])
    const third = await visitors(t, 20)
    assert.equal(onGreen(third), 20, 'during the drain every new session goes to the new service')
    const pinnedBlue = [...before, ...first, ...second].filter((c) => c.instance.startsWith('blue-'))
    const pinnedGreen = [...first, ...second].filter((c) => c.instance.startsWith('green-'))
    assert.ok(pinnedBlue.length > 0 && pinnedGreen.length > 0)
    await stayPinned(pinnedBlue, 'during the drain')
    await stayPinned(pinnedGreen, 'during the drain')

    // Drain end: the old route is gone; blue's clients move to green (a new session there).
    await apply([promoted()])
    for (const c of pinnedBlue) {
      const reply = await c.get(`${proxy.url}/app`)
      const body = reply.body as BackendReply
      assert.equal(reply.status, 200)
      assert.match(body.instance, /^green-/, 'after the drain a blue client is served by green')
      assert.equal(body.count, 1, 'green has not seen its session: it moved now, not before')
    }
    await stayPinned(pinnedGreen, 'after the drain')
    const result = await load.stop()
    assert.equal(result.failed, 0, `failed requests: ${result.failures.join('; ')}`)
    assert.ok(result.ok > 0)
  })

  it('abort: removing the canary sends its sessions back to the main service, blue sessions untouched, no request failed', async (t) => {
    await apply([main()])
    const load = boundedLoad(t, 60_000)
    await apply([main(), canary(50)])
    const clients = await visitors(t, 40)
    const onCanary = clients.filter((c) => c.instance.startsWith('green-'))
    const onMain = clients.filter((c) => c.instance.startsWith('blue-'))
    assert.ok(onCanary.length > 0 && onMain.length > 0, `both sides have sessions (${onCanary.length} on green)`)
    await apply([main()])
    await stayPinned(onMain, 'abort')
    for (const c of onCanary) {
      const body = (await c.get(`${proxy.url}/app`)).body as BackendReply
      assert.match(body.instance, /^blue-/, 'an aborted canary session is served by blue')
    }
    const result = await load.stop()
    assert.equal(result.failed, 0, `failed requests: ${result.failures.join('; ')}`)
  })

  it('a route that is not sticky splits requests by weight', async (t) => {
    const plainMain = route({ serviceName: 'blue', paths: ['/app'], endpoints: blue.map((b) => b.address) })
    const plainCanary = normalizeRoute({ serviceName: 'green', destinations: [{ servicePath: ['/app'], port: 80 }], endpoints: green.map((b) => b.address), canary: 25 })
    await apply([plainMain, plainCanary])
    const client = createClient()
    t.after(() => client.close())
    let greenCount = 0
    for (let i = 0; i < 200; i++) {
      const body = (await client.get(`${proxy.url}/app`, { cookies: false })).body as BackendReply
      if (body.instance.startsWith('green-')) greenCount++
    }
    // Round robin with weights is deterministic: 25% of requests, within rounding.
    assert.ok(greenCount >= 35 && greenCount <= 65, `about 50 of 200 requests on the canary, got ${greenCount}`)
  })
})
