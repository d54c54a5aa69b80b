/**
 * Releases through the control plane's own forms (docs/releasing.md): a canary is stored beside
 * the main route with the main route's cookie, refused where it cannot work (no main service, a
 * second canary, a bad percent), a takeover with drain keeps the old route marked with its end
 * time, which outlives a restart of the control plane (Redis), and the drain reaper removes the
 * old route once, whichever replicas try, when the drain ends.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { createRedisRouteStore } from '../../src/control/store/redis-route-store.ts'
import { startDrainReaper } from '../../src/control/services/drain-reaper.ts'
import { routeFromLabels } from '../../src/control/discovery/swarm-labels.ts'
import { api, startControl, type TestControl } from './harness.ts'
import { startRedisFor } from '../helpers/redis-server.ts'

const silent = pino({ level: 'silent' })
// biome-ignore lint/suspicious/noExplicitAny: the answers' JSON is read field by field by the assertions below
type Answer = Record<string, any>

async function reconfigure(c: TestControl, query: string) {
  const res = await c.app.inject({ method: 'PUT', url: `/v1/reconfigure?${query}`, headers: api })
  return { status: res.statusCode, body: res.json() as Answer }
}

async function getRoute(c: TestControl, name: string) {
  const res = await c.app.inject({ method: 'GET', url: `/v1/routes/${name}`, headers: api })
  return { status: res.statusCode, body: res.json() as Answer }
}

const BLUE = 'serviceName=blue&servicePath=/app&port=80&sticky=true&endpoints=127.0.0.1:3001'

describe('releases: canary and takeover with drain', () => {
  it('stores a canary with the main route cookie, changes its percent, and refuses what cannot work', async (t) => {
    const c = await startControl(t)
    assert.equal((await reconfigure(c, BLUE)).status, 200)
    const canary = await reconfigure(c, 'serviceName=green&servicePath=/app&port=80&canary=30&endpoints=127.0.0.1:3002')
    assert.equal(canary.status, 200, JSON.stringify(canary.body))
    assert.equal(canary.body.route.canary, 30)
    assert.equal(canary.body.route.sticky, true, "a canary is served from the main route's backend: it is sticky like it")
    assert.equal(canary.body.route.stickyCookie, 'TETHER_blue', "and carries its cookie, so its sessions keep it when promoted")
    const version = canary.body.version as number

    const again = await reconfigure(c, 'serviceName=green&servicePath=/app&port=80&canary=60&endpoints=127.0.0.1:3002')
    assert.equal(again.status, 200)
    assert.equal(again.body.route.canary, 60)
    assert.equal(again.body.version, version + 1)

    const json = await c.app.inject({ method: 'PUT', url: '/v1/routes/green', headers: api, payload: { servicePath: ['/app'], port: 80, endpoints: ['127.0.0.1:3002'], canary: 45 } })
    assert.equal(json.statusCode, 200, json.body)
    assert.equal(json.json().route.canary, 45)

    const second = await reconfigure(c, 'serviceName=purple&servicePath=/app&port=80&canary=10&endpoints=127.0.0.1:3003')
    assert.equal(second.status, 409)
    assert.equal(second.body.code, 'ROUTE_CONFLICT')
    assert.match(second.body.message, /canary: "\/app" already has a canary, service "green" \(one canary per path\)/)

    const alone = await reconfigure(c, 'serviceName=orange&servicePath=/nobody&port=80&canary=10&endpoints=127.0.0.1:3004')
    assert.equal(alone.status, 400)
    assert.match(alone.body.message, /^canary: "\/nobody" is served by no other service/)
    for (const bad of ['0', '100', 'abc', '30.5']) {
      const res = await reconfigure(c, `serviceName=orange&servicePath=/app&port=80&canary=${bad}&endpoints=127.0.0.1:3004`)
      assert.equal(res.status, 400, `canary=${bad}`)
      assert.match(res.body.message, /canary/, `canary=${bad}: the message names the field`)
    }
    assert.equal((await getRoute(c, 'orange')).status, 404, 'nothing was stored')
    assert.equal((await getRoute(c, 'purple')).status, 404, 'nothing was stored')
    const table = await c.app.inject({ method: 'GET', url: '/v1/routes', headers: api })
    assert.deepEqual(
      (table.json() as { routes: Array<{ route: { serviceName: string } }> }).routes.map((r) => r.route.serviceName),
      ['blue', 'green'],
    )
  })

  it('reads com.df.canary from Swarm labels, and reports a bad percent naming the label', () => {
    const labels = { 'com.df.notify': 'true', 'com.df.servicePath': '/app', 'com.df.port': '80' }
    const ok = routeFromLabels('green', { ...labels, 'com.df.canary': '30' })
    assert.ok('route' in ok)
    assert.equal(ok.route.canary, 30)
    assert.deepEqual(ok.route.destinations[0]?.servicePath, ['/app'])
    const bad = routeFromLabels('green', { ...labels, 'com.df.canary': '100' })
    assert.ok('problems' in bad)
    assert.match(bad.problems.join(' '), /^com\.df\.canary: "100" must be a whole percent from 1 to 99/)
  })

  it('refuses drain without takeover=true, and a canary with takeover', async (t) => {
    const c = await startControl(t)
    await reconfigure(c, BLUE)
    const res = await reconfigure(c, 'serviceName=green&servicePath=/app&port=80&drain=10&endpoints=127.0.0.1:3002')
    assert.equal(res.status, 400)
    assert.match(res.body.message, /^drain: a drain is part of a takeover: give takeover=true/)
    const both = await reconfigure(c, 'serviceName=green&servicePath=/app&port=80&canary=10&takeover=true&endpoints=127.0.0.1:3002')
    assert.equal(both.status, 400)
    assert.match(both.body.message, /^canary: .*takeover=true/)
    for (const bad of ['0', '86401', 'ten']) {
      const r = await reconfigure(c, `serviceName=green&servicePath=/app&port=80&takeover=true&drain=${bad}&endpoints=127.0.0.1:3002`)
      assert.equal(r.status, 400, `drain=${bad}`)
      assert.match(r.body.message, /drain/)
    }
    assert.equal((await getRoute(c, 'green')).status, 404)
    assert.equal((await getRoute(c, 'blue')).body.route.drain, undefined)
  })

  it('GET /v1/status lists the canary with its percent and shared paths, then the drain with its end and seconds left', async (t) => {
    const c = await startControl(t)
    const status = async () => {
      const res = await c.app.inject({ method: 'GET', url: '/v1/status', headers: api })
      assert.equal(res.statusCode, 200, res.body)
      return (res.json() as Answer).releases as Answer
    }
    assert.deepEqual(await status(), { canaries: [], drains: [] }, 'no release: both lists are there, empty')
    await reconfigure(c, BLUE)
    await reconfigure(c, 'serviceName=red&servicePath=/other&port=80&endpoints=127.0.0.1:3005')
    assert.equal((await reconfigure(c, 'serviceName=green&servicePath=/app&port=80&canary=30&endpoints=127.0.0.1:3002')).status, 200)
    assert.deepEqual(await status(), { canaries: [{ serviceName: 'green', percent: 30, paths: [{ host: '', path: '/app', sharedWith: 'blue' }] }], drains: [] })

    const before = Date.now()
    const promoted = await reconfigure(c, 'serviceName=green&servicePath=/app&port=80&takeover=true&drain=600&endpoints=127.0.0.1:3002')
    assert.equal(promoted.status, 200, JSON.stringify(promoted.body))
    const releases = await status()
    assert.deepEqual(releases.canaries, [], 'promoted: no longer a canary')
    assert.equal(releases.drains.length, 1, JSON.stringify(releases))
    const [drain] = releases.drains
    assert.deepEqual({ ...drain, secondsLeft: undefined }, { serviceName: 'blue', to: 'green', until: promoted.body.takenOver[0].drainUntil, secondsLeft: undefined })
    const left = Date.parse(drain.until) - before
    assert.ok(Number.isInteger(drain.secondsLeft) && drain.secondsLeft > 0 && drain.secondsLeft <= Math.ceil(left / 1000), `secondsLeft ${drain.secondsLeft} counts down to ${drain.until}`)
  })

  it('takeover with drain keeps the old route until the end time, which survives a restart; the reaper removes it once', async (t) => {
    const redis = await startRedisFor(t)
    const prefix = `releases-${process.pid}:`
    let store = createRedisRouteStore({ url: redis.url, prefix })
    let c = await startControl(t, { store })
    await reconfigure(c, BLUE)
    await reconfigure(c, 'serviceName=green&servicePath=/app&port=80&canary=30&endpoints=127.0.0.1:3002')
    const before = Date.now()
    const promoted = await reconfigure(c, 'serviceName=green&servicePath=/app&port=80&takeover=true&drain=600&endpoints=127.0.0.1:3002')
    assert.equal(promoted.status, 200, JSON.stringify(promoted.body))
    assert.equal(promoted.body.route.canary, undefined, 'promoted: no longer a canary')
    assert.equal(promoted.body.route.stickyCookie, 'TETHER_blue', "blue's pinned clients' cookie is read by green's backend")
    const taken = promoted.body.takenOver[0]
    assert.equal(taken.serviceName, 'blue')
    assert.equal(taken.removed, false)
    const until = Date.parse(taken.drainUntil)
    assert.ok(until >= before + 600_000 && until <= Date.now() + 600_000, `drainUntil ${taken.drainUntil}`)
    const blue = await getRoute(c, 'blue')
    assert.equal(blue.status, 200)
    assert.deepEqual(blue.body.route.drain, { until: taken.drainUntil, to: 'green' })
    assert.deepEqual(blue.body.route.servicePath ?? blue.body.route.destinations[0].servicePath, ['/app'])
    const log = await c.app.inject({ method: 'GET', url: '/v1/changes?since=0', headers: api })
    const notes = (log.json() as { changes: Array<{ note?: string }> }).changes.map((e) => e.note ?? '')
    assert.ok(notes.some((n) => n.includes(`drain until ${taken.drainUntil}`)), `the change log says when the drain ends: ${JSON.stringify(notes)}`)

    // A control plane restarted mid-drain: the end time is the stored one.
    await c.app.close()
    await store.close()
    store = createRedisRouteStore({ url: redis.url, prefix })
    c = await startControl(t, { store })
    t.after(() => store.close())
    assert.equal((await getRoute(c, 'blue')).body.route.drain.until, taken.drainUntil)

    // Two replicas' reapers: before the end nothing is removed; after it, one removal in all.
    let now = until - 1_000
    const peer = createRedisRouteStore({ url: redis.url, prefix })
    t.after(() => peer.close())
    const a = startDrainReaper({ store, logger: silent, now: () => now, checkMs: 60_000 })
    const b = startDrainReaper({ store: peer, logger: silent, now: () => now, checkMs: 60_000 })
    t.after(() => Promise.all([a.stop(), b.stop()]))
    assert.deepEqual([...(await a.sweep()), ...(await b.sweep())], [])
    assert.equal((await getRoute(c, 'blue')).status, 200, 'still draining')
    now = until + 1
    const removed = (await Promise.all([a.sweep(), b.sweep()])).flat()
    assert.deepEqual(removed, ['blue'], 'removed once')
    assert.equal((await getRoute(c, 'blue')).status, 404)
    assert.equal((await getRoute(c, 'green')).body.route.destinations[0].servicePath[0], '/app')
  })
})
