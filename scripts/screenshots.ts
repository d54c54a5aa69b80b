/**
 * Takes the README's screenshots: docs/dashboard.png and docs/swagger-ui.png.
 *
 *   npx tsx scripts/screenshots.ts        (needs chromium and haproxy, like the browser tests)
 *
 * It sets up what the browser tests set up: a real control plane, two real proxy agents driving
 * real HAProxy, real backends, routes registered through the API, traffic through one proxy (the
 * page's live columns), the other stopped so the page shows it stale; then opens /ui/ and /docs in headless Chromium. Everything runs on loopback
 * and is removed at the end.
 */
import { mkdir } from 'node:fs/promises'
import type { TestContext } from 'node:test'
import { openBrowser } from '../test/browser/chromium.ts'
import { backends, reconfigureQuery, startAgent, startControl } from '../test/proxy/harness.ts'
import { createSecretBox } from '../src/control/secret-box.ts'
import { createCa, issue } from '../test/helpers/pki.ts'
import { randomBytes } from 'node:crypto'
import { closeSync, openSync } from 'node:fs'
import { request } from 'undici'
import { startLogMetrics } from '../src/proxy/log-metrics.ts'
import { startRouteMetrics, type RouteMetrics } from '../src/proxy/route-metrics.ts'
import type { HaproxyEngine } from '../src/proxy/haproxy/haproxy-engine.ts'

const cleanups: Array<() => unknown> = []
/** The harness registers its cleanups with t.after(); run them in reverse at the end. */
const t = { after: (fn: () => unknown) => cleanups.push(fn), diagnostic: () => {} } as unknown as TestContext

async function main(): Promise<void> {
  const out = new URL('../docs/', import.meta.url)
  await mkdir(out, { recursive: true })
  const control = await startControl(t, { proxyTtlMs: 3000, statsUrl: 'http://{node}:8404/stats', secretBox: createSecretBox(randomBytes(32)) })
  const shop = await backends(t, 3, 'shop')
  const cart = await backends(t, 2, 'cart')
  const put = async (q: string): Promise<void> => {
    const res = await control.api('PUT', `/v1/reconfigure?${q}`)
    if (res.status !== 200) throw new Error(`reconfigure: ${res.status} ${JSON.stringify(res.body)}`)
  }
  await put(`${reconfigureQuery({ serviceName: 'shop', path: '/shop', endpoints: shop.map((b) => b.address), sticky: true, port: 8080 })}&serviceDomain=shop.example.com`)
  const leaf = await issue(await createCa('Example CA'), ['shop.example.com'], { notAfter: new Date(Date.now() + 60 * 86_400_000) })
  const uploaded = await control.api('PUT', '/v1/certificates/shop', { certificate: leaf.chain, key: leaf.key })
  if (uploaded.status !== 200) throw new Error(`certificate: ${uploaded.status} ${JSON.stringify(uploaded.body)}`)
  await put(reconfigureQuery({ serviceName: 'cart', path: '/cart', endpoints: cart.map((b) => b.address), port: 8080 }))
  await put(reconfigureQuery({ serviceName: 'cart', path: '/cart,/basket', endpoints: cart.map((b) => b.address), port: 8080 }))
  // edge-1 as `tether proxy` wires it: the JSON access log feeds the latency counts, and the
  // heartbeats carry the traffic the page shows.
  const logMetrics = await startLogMetrics()
  cleanups.push(() => logMetrics.close())
  const devNull = openSync('/dev/null', 'w')
  cleanups.push(() => closeSync(devNull))
  let metrics: RouteMetrics | undefined
  const edge = await startAgent(t, {
    id: 'edge-1',
    controlUrls: [control.url],
    proxy: { accessLog: { format: 'json', metricsAddress: logMetrics.address }, accessLogOutput: devNull },
    agent: { heartbeatMs: 1000, traffic: async () => (metrics === undefined ? null : metrics.traffic()) },
  })
  const started = await startRouteMetrics(edge.proxy!.engine as HaproxyEngine, () => edge.agent.status(), logMetrics)
  cleanups.push(() => started.close())
  metrics = started
  // Some traffic on both routes (bounded), with a few 404s from the shop's tasks' unknown paths.
  let sending = true
  const load = (async () => {
    for (let i = 0; sending && i < 50_000; i++) {
      const path = i % 3 === 0 ? '/cart/items' : '/shop/page'
      const res = await request(`${edge.proxy!.url}${path}`, { headers: { host: 'shop.example.com' } }).catch(() => null)
      await res?.body.dump()
    }
  })()
  cleanups.push(async () => {
    sending = false
    await load
  })
  const gone = await startAgent(t, { id: 'edge-2', controlUrls: [control.url] })

  const { page } = await openBrowser(t, { width: 1560, height: 800 })
  await page.goto(`${control.url}/ui/`)
  await page.locator('tr[data-service="shop"] .badge', { hasText: 'edge-2: 3↑' }).waitFor({ timeout: 15_000 })
  await page.locator('tr[data-service="cart"] .badge', { hasText: 'edge-1: 2↑' }).waitFor({ timeout: 15_000 })
  await page.locator('tr[data-certificate="shop"]').waitFor({ timeout: 15_000 })
  await gone.stop()
  await page.locator('tr.stale[data-proxy="edge-2"]').waitFor({ timeout: 15_000 })
  await page.locator('tr[data-service="shop"] td[data-metric="rate"]', { hasText: /^[1-9]/ }).waitFor({ timeout: 30_000 })
  await page.locator('tr[data-service="cart"] td[data-metric="p95"]', { hasText: '≤' }).waitFor({ timeout: 30_000 })
  await page.screenshot({ path: new URL('dashboard.png', out).pathname, fullPage: true })

  await page.goto(`${control.url}/docs`)
  const op = page.locator('#operations-routes-putReconfigure')
  await op.locator('.opblock-summary').first().click()
  await op.locator('button.try-out__btn').click()
  await op.locator('tr[data-param-name="endpoints"]').waitFor()
  await op.locator('.parameters-container').screenshot({ path: new URL('swagger-ui.png', out).pathname })
  process.stdout.write(`wrote ${new URL('dashboard.png', out).pathname} and swagger-ui.png\n`)
}

try {
  await main()
} finally {
  for (const fn of cleanups.reverse()) await fn()
}
