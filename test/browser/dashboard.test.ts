/**
 * The operator dashboard at /ui, in a real headless Chromium, against a real control plane and
 * a real proxy agent driving a real HAProxy in front of real backends: the page shows the
 * proxy, a route registered through the API appears without a reload (the version long poll),
 * with its health on the proxy; a restore from the change log needs the API token and changes
 * the table; a proxy whose heartbeats stop turns stale; a canary and then its drain show under
 * Releases.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { backends, reconfigureQuery, startAgent, startControl, API_TOKEN } from '../proxy/harness.ts'
import { openBrowser, skipWithoutChromium as skip } from './chromium.ts'
import { createSecretBox } from '../../src/control/secret-box.ts'
import { createCa, issue } from '../helpers/pki.ts'
import { closeSync, openSync } from 'node:fs'
import { request } from 'undici'
import { startLogMetrics } from '../../src/proxy/log-metrics.ts'
import { startRouteMetrics, type RouteMetrics } from '../../src/proxy/route-metrics.ts'
import type { HaproxyEngine } from '../../src/proxy/haproxy/haproxy-engine.ts'
import { proxyUrl } from '../proxy/harness.ts'

describe('dashboard at /ui', { skip }, () => {
  it('shows the fleet live: a new route and its health, a restore from the change log, a proxy gone stale', async (t) => {
    const control = await startControl(t, { proxyTtlMs: 2000, statsUrl: 'http://{node}:8404/stats' })
    const edge = await startAgent(t, { id: 'edge-1', controlUrls: [control.url] })
    const shop = await backends(t, 2, 'shop')
    const { page } = await openBrowser(t)
    const dialogs: string[] = []
    page.on('dialog', (d) => {
      dialogs.push(d.message())
      void d.accept()
    })

    // `/` leads to the dashboard; reading needs no token.
    await page.goto(`${control.url}/`)
    assert.equal(new URL(page.url()).pathname, '/ui/')
    const proxyRow = page.locator('tr[data-proxy="edge-1"]')
    await proxyRow.filter({ hasText: 'ok' }).waitFor()
    assert.match(await proxyRow.innerText(), /node-of-edge-1/)
    assert.equal(await proxyRow.locator('a').getAttribute('href'), 'http://node-of-edge-1:8404/stats', 'links the proxy stats page')
    assert.equal(await page.locator('#routes tbody tr').count(), 0)

    // A route registered through the API shows without a reload: only the version long poll
    // re-reads the routes (the periodic refresh reads proxies and status only).
    const registered = Date.now()
    const put = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'shop', path: '/shop', endpoints: shop.map((b) => b.address), sticky: true })}`)
    assert.equal(put.status, 200)
    const shopRow = page.locator('tr[data-service="shop"]')
    await shopRow.waitFor({ timeout: 5000 })
    t.diagnostic(`route shown ${Date.now() - registered} ms after the API answered`)
    assert.match(await shopRow.innerText(), /\/shop → 80/)
    assert.match(await shopRow.innerText(), /2 endpoints/)
    // Its health on the proxy, once the proxy applied it and HAProxy checked the servers.
    await shopRow.locator('.badge', { hasText: 'edge-1: 2↑ 0↓' }).waitFor({ timeout: 10_000 })
    await page.locator('#changes tr[data-version="1"]').waitFor()

    const cart = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'cart', path: '/cart', endpoints: shop.map((b) => b.address) })}`)
    assert.equal(cart.body.version, 2)
    await page.locator('tr[data-service="cart"]').waitFor()

    // Restore v1 without a token: the page asks for one, nothing changes.
    await page.locator('#changes button[data-restore="1"]').click()
    await page.locator('#message', { hasText: 'needs an API token' }).waitFor()
    assert.equal((await control.api('GET', '/v1/routes')).body.routes.length, 2)
    assert.equal(dialogs.length, 0, 'no confirmation asked before the token is there')

    // With the token: confirmed, and the table is version 1's again (cart gone, shop kept).
    await page.locator('#token').fill(API_TOKEN)
    await page.locator('#changes button[data-restore="1"]').click()
    await page.locator('#message', { hasText: 'Restored the table of version 1 as version 3' }).waitFor()
    assert.equal(dialogs.length, 1)
    await page.locator('tr[data-service="cart"]').waitFor({ state: 'detached' })
    assert.equal(await page.locator('tr[data-service="shop"]').count(), 1)
    const routes = (await control.api('GET', '/v1/routes')).body
    assert.deepEqual(
      routes.routes.map((r: { route: { serviceName: string } }) => r.route.serviceName),
      ['shop'],
    )
    const change = (await control.api('GET', '/v1/changes?since=2')).body.changes[0]
    assert.equal(change.actor, 'tests', "the page's rollback carried the operator's token")
    assert.equal(change.source, 'rollback')

    // A route whose service has no task (no endpoint, no DNS answer): the proxy answers 503 for it,
    // and Problems says so, as GET /v1/status does; the Tasks column counts what the proxy serves.
    const ghost = await control.api('PUT', '/v1/reconfigure?serviceName=ghost&servicePath=/ghost&port=80')
    assert.equal(ghost.status, 200, JSON.stringify(ghost.body))
    const ghostProblem = page.locator('#problems li', { hasText: 'ghost: no task' })
    await ghostProblem.waitFor({ timeout: 15_000 })
    assert.match(await ghostProblem.innerText(), /answered 503 \(on edge-1\)/)
    const listed = (await control.api('GET', '/v1/status')).body.routeProblems as Array<{ serviceName: string; problem: string }>
    assert.deepEqual(listed.map((p) => p.serviceName), ['ghost'], '/v1/status agrees with the page')
    await page.locator('tr[data-service="ghost"] td', { hasText: 'none running' }).waitFor()
    assert.match(await shopRow.innerText(), /2 endpoints/)
    assert.equal(await page.locator('#problems li', { hasText: 'Swarm discovery' }).count(), 0, 'not a problem')

    // The proxy stops (no more heartbeats): once its TTL passes it is shown stale, not dropped.
    assert.equal(await proxyRow.getAttribute('class'), null)
    await edge.stop()
    await page.locator('tr.stale[data-proxy="edge-1"]').waitFor({ timeout: 15_000 })
    assert.match(await proxyRow.innerText(), /stale: no heartbeat/)
    assert.match(await page.locator('#summary').innerText(), /0 live proxies/)
    assert.equal(await page.locator('tr[data-service="shop"]').count(), 1, 'the routes are still shown')

    // A path shared through the Docker Flow Proxy form: the shadowed route is a problem on the page.
    const shared = await control.api('GET', `/v1/docker-flow-proxy/reconfigure?serviceName=shop-old&servicePath=/shop&port=80&endpoints=${shop[0]!.address}`)
    assert.equal(shared.status, 200)
    await page.locator('#problems li', { hasText: '/shop (port 80) of "shop-old" is shadowed: "shop" serves it' }).waitFor({ timeout: 15_000 })
  })

  it('lists the stored certificates with their expiry, and the domains no certificate covers', async (t) => {
    const control = await startControl(t, { secretBox: createSecretBox(Buffer.alloc(32, 7)) })
    const shop = await backends(t, 1, 'shop')
    const { page } = await openBrowser(t)
    await page.goto(`${control.url}/ui/`)
    await page.locator('#certificates-empty').waitFor()
    assert.match(await page.locator('#certificates-empty').innerText(), /No certificate stored/)

    const put = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'shop', path: '/', endpoints: [shop[0]!.address] })}&serviceDomain=shop.test,other.test`)
    assert.equal(put.status, 200, JSON.stringify(put.body))
    const leaf = await issue(await createCa(), ['shop.test'], { notAfter: new Date(Date.now() + 40 * 86_400_000) })
    const uploaded = await control.api('PUT', '/v1/certificates/shop', { certificate: leaf.chain, key: leaf.key })
    assert.equal(uploaded.status, 200, JSON.stringify(uploaded.body))

    // The page re-reads /v1/status every couple of seconds: the certificate appears with its domains and expiry.
    const row = page.locator('tr[data-certificate="shop"]')
    await row.waitFor({ timeout: 10_000 })
    const text = await row.innerText()
    assert.match(text, /shop\.test/)
    assert.match(text, /\bapi\b/)
    assert.match(text, /in (39|40) days/)
    assert.equal(await page.locator('#certificates-empty').isHidden(), true)
    // other.test has no certificate: HTTPS would answer it with the default one.
    await page.locator('#uncovered', { hasText: 'other.test (shop)' }).waitFor({ timeout: 10_000 })
    assert.doesNotMatch(await page.locator('#uncovered').innerText(), /shop\.test/, 'shop.test is covered')
    // The change log shows every version: the route's (1) and the certificate's (2).
    await page.reload()
    const certChange = page.locator('#changes tr[data-kind="certificate"][data-version="2"]')
    await certChange.waitFor({ timeout: 10_000 })
    assert.match(await certChange.innerText(), /shop\s+certificate stored/)
    assert.match(await page.locator('#changes tr[data-kind="route"][data-version="1"]').innerText(), /created \/→80/)
  })

  it('shows the releases in progress: a canary with its share and the path it shares, then the drain with its end', async (t) => {
    const control = await startControl(t)
    const [blue, green] = await backends(t, 2, 'release')
    const { page } = await openBrowser(t)
    await page.goto(`${control.url}/ui/`)
    await page.locator('#releases-empty').waitFor()
    assert.match(await page.locator('#releases-empty').innerText(), /No release in progress/)

    const main = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'blue', path: '/app', endpoints: [blue!.address], sticky: true })}`)
    assert.equal(main.status, 200, JSON.stringify(main.body))
    const canary = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'green', path: '/app', endpoints: [green!.address] })}&canary=30`)
    assert.equal(canary.status, 200, JSON.stringify(canary.body))
    // The page re-reads /v1/status every couple of seconds: the canary appears with its share.
    const canaryRow = page.locator('#releases tr[data-release="canary"][data-release-service="green"]')
    await canaryRow.waitFor({ timeout: 10_000 })
    assert.match(await canaryRow.innerText(), /green\s+canary\s+\/app \(with blue\)\s+30 %/)
    assert.equal(await page.locator('#releases-empty').isHidden(), true)

    const promoted = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'green', path: '/app', endpoints: [green!.address] })}&takeover=true&drain=600`)
    assert.equal(promoted.status, 200, JSON.stringify(promoted.body))
    const drainRow = page.locator('#releases tr[data-release="drain"][data-release-service="blue"]')
    await drainRow.waitFor({ timeout: 10_000 })
    assert.match(await drainRow.innerText(), /blue\s+draining → green\s+taken by green\s+none \(pinned clients only\)\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+ min left\)/)
    assert.equal(await drainRow.locator('td').last().getAttribute('title'), promoted.body.takenOver[0].drainUntil, 'the exact end time is in the cell title')
    await canaryRow.waitFor({ state: 'detached', timeout: 10_000 })
    assert.equal(await page.locator('#releases tbody tr').count(), 1, 'promoted: the canary is gone, the drain is the only release')
  })

  it('shows each route\'s traffic live (requests a second, errors, p95, sessions per task) and each proxy\'s connections, reloads and dropped log lines', async (t) => {
    const control = await startControl(t)
    // As `tether proxy` wires it: HAProxy's JSON access log (its standard output copy not read here)
    // also goes to the agent's latency counts; the route metrics ride on every heartbeat.
    const logMetrics = await startLogMetrics()
    t.after(() => logMetrics.close())
    const devNull = openSync('/dev/null', 'w')
    t.after(() => closeSync(devNull))
    let metrics: RouteMetrics | undefined
    const edge = await startAgent(t, {
      id: 'edge-1',
      controlUrls: [control.url],
      proxy: { accessLog: { format: 'json', metricsAddress: logMetrics.address }, accessLogOutput: devNull },
      agent: { heartbeatMs: 1000, traffic: async () => (metrics === undefined ? null : metrics.traffic()) },
    })
    const started = await startRouteMetrics(edge.proxy!.engine as HaproxyEngine, () => edge.agent.status(), logMetrics)
    t.after(() => started.close())
    metrics = started
    const shop = await backends(t, 2, 'shop')
    const put = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'shop', path: '/shop', endpoints: shop.map((b) => b.address) })}&wait=converged&timeout=20`)
    assert.equal(put.status, 200, JSON.stringify(put.body))

    // Traffic all along (bounded), so that two heartbeats in a row see requests.
    let sending = true
    const failures: string[] = []
    const load = (async () => {
      for (let i = 0; sending && i < 20_000; i++) {
        const res = await request(`${proxyUrl(edge)}/shop/${i}`).catch((err: unknown) => err as Error)
        if (res instanceof Error) {
          failures.push(res.message)
          await new Promise((r) => setTimeout(r, 50))
        } else await res.body.dump()
      }
    })()
    t.after(async () => {
      sending = false
      await load
    })

    const { page } = await openBrowser(t)
    await page.goto(`${control.url}/ui/`)
    const row = page.locator('tr[data-service="shop"]')
    // Live data: a rate above zero (it needs two heartbeats with traffic), then the rest of the row.
    await row.locator('td[data-metric="rate"]', { hasText: /^(0\.[1-9]|[1-9])/ }).waitFor({ timeout: 30_000 })
    assert.equal(await row.locator('td[data-metric="errors"]').innerText(), '0 %')
    assert.match(await row.locator('td[data-metric="p95"]').innerText(), /^≤ \d+ (ms|s)$/)
    assert.match(await row.locator('td[data-metric="sessions"]').innerText(), /^\d+ · \d+$/, 'one count per task')
    const proxyRow = page.locator('tr[data-proxy="edge-1"]')
    assert.match(await proxyRow.locator('td[data-metric="connections"]').innerText(), /^\d+$/)
    assert.equal(await proxyRow.locator('td[data-metric="reloads"]').innerText(), String((edge.proxy!.engine as HaproxyEngine).counters.reloads))
    assert.equal(await proxyRow.locator('td[data-metric="dropped"]').innerText(), '0')
    // The page shows what the proxy reported: its heartbeat carries the same counters.
    const reported = (await control.api('GET', '/v1/proxies')).body.proxies[0].traffic
    assert.ok(reported.routes[0].requests > 0)
    assert.equal(reported.routes[0].serviceName, 'shop')
    assert.equal(reported.routes[0].tasks.length, 2)
    t.diagnostic(`requests that failed while the page was read: ${failures.length}${failures.length > 0 ? ` (${failures[0]})` : ''}`)
  })
})

