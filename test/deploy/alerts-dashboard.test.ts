/**
 * Alerts and dashboards as code (deploy/prometheus, deploy/grafana): the rules are valid for
 * Prometheus (promtool check rules) and fire as their tests say (promtool test rules), and every
 * metric the rules and the dashboard name is exported by a running Tether: a real control plane's
 * /metrics and a real proxy's /metrics/tether (agent + HAProxy, route metrics served on the admin
 * listener), after a request went through a route.
 *
 * promtool comes with Debian's `prometheus` package (.ci/run installs it). Without it the promtool
 * checks are skipped with the reason, except under CI=true, where they fail.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { request } from 'undici'
import { startRouteMetrics } from '../../src/proxy/route-metrics.ts'
import { startLogMetrics } from '../../src/proxy/log-metrics.ts'
import type { HaproxyEngine } from '../../src/proxy/haproxy/haproxy-engine.ts'
import { backends, proxyUrl, reconfigureQuery, startAgent, startControl } from '../proxy/harness.ts'
import { waitFor } from '../helpers/haproxy.ts'

const RULES = 'deploy/prometheus/alerts.yml'
const RULE_TESTS = 'deploy/prometheus/alerts.test.yml'
const DASHBOARD = 'deploy/grafana/tether.json'
const CI = process.env.CI === 'true'
const PROMTOOL = process.env.PROMTOOL ?? 'promtool'

const hasPromtool = spawnSync(PROMTOOL, ['--version'], { encoding: 'utf8' }).status === 0
const promtoolSkip = !hasPromtool && !CI ? `promtool not found (apt-get install prometheus, or PROMTOOL=<path>); with CI=true this fails` : false
if (promtoolSkip !== false) console.log(`SKIPPED promtool checks: ${promtoolSkip}`)

function promtool(...args: string[]): { status: number | null; output: string } {
  const r = spawnSync(PROMTOOL, args, { encoding: 'utf8', timeout: 60_000 })
  if (r.error !== undefined) throw new Error(`CI=true: promtool must run, but: ${r.error.message}`)
  return { status: r.status, output: `${r.stdout}${r.stderr}` }
}

/** Metric names (tether_*, haproxy_*) in a PromQL text. */
const namesIn = (text: string): string[] => [...text.matchAll(/\b(?:tether|haproxy)_[a-z0-9_]+\b/g)].map((m) => m[0])

/** Every expression of the dashboard's panels. */
function dashboardExprs(node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(dashboardExprs)
  if (node === null || typeof node !== 'object') return []
  return Object.entries(node).flatMap(([k, v]) => (k === 'expr' && typeof v === 'string' ? [v] : dashboardExprs(v)))
}

/** Names a Prometheus text exposition exports (from its # TYPE lines; a histogram's _bucket, _sum, _count too). */
function exported(text: string): Set<string> {
  const out = new Set<string>()
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    out.add(m[1]!)
    if (m[2] === 'histogram' || m[2] === 'summary') for (const s of ['_bucket', '_sum', '_count']) out.add(`${m[1]}${s}`)
  }
  return out
}

describe('alerts and dashboards as code', () => {
  it('promtool check rules: the alert rules are valid', { skip: promtoolSkip }, () => {
    const r = promtool('check', 'rules', RULES)
    assert.equal(r.status, 0, r.output)
    assert.match(r.output, /SUCCESS: \d+ rules found/)
  })

  it('promtool test rules: each alert fires on the series it is for, and not on healthy ones', { skip: promtoolSkip }, () => {
    const r = promtool('test', 'rules', RULE_TESTS)
    assert.equal(r.status, 0, r.output)
    assert.match(r.output, /SUCCESS/)
  })

  it('the dashboard is Grafana JSON whose panels each have a query', () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { title: string; panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }> }
    assert.equal(dashboard.title, 'Tether')
    const graphs = dashboard.panels.filter((p) => p.type !== 'row')
    assert.ok(graphs.length >= 10)
    for (const p of graphs) assert.ok((p.targets ?? []).length > 0 && p.targets!.every((t) => t.expr.length > 0), `panel '${p.title}' has a query`)
  })

  it('every metric the rules and the dashboard use is exported by a running Tether (control plane and proxy)', async (t) => {
    const control = await startControl(t)
    const proxy = await startAgent(t, { id: 'p1', controlUrls: [control.url] })
    const engine = proxy.proxy!.engine as HaproxyEngine
    // As `tether proxy` wires them: the metrics counted from the access log beside HAProxy's.
    const logMetrics = await startLogMetrics()
    t.after(() => logMetrics.close())
    const metrics = await startRouteMetrics(engine, () => proxy.agent.status(), logMetrics)
    t.after(() => metrics.close())
    const [b] = await backends(t, 1, 'obs')
    const put = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'web', path: '/web', endpoints: [b!.address] })}&wait=converged&timeout=20`)
    assert.equal(put.status, 200, JSON.stringify(put.body))
    await waitFor('the route served', async () => {
      const res = await request(`${proxyUrl(proxy)}/web/x`, { headers: { connection: 'close' } })
      await res.body.text()
      return res.statusCode === 200 ? true : undefined
    }, 20_000, 100)

    const controlText = (await control.api('GET', '/metrics')).body as string
    const proxyText = await waitFor('the route in /metrics/tether', async () => {
      const res = await request(`${proxy.proxy!.adminUrl}/metrics/tether`)
      const text = await res.body.text()
      return res.statusCode === 200 && /tether_route_requests_total\{service="web",code_class="2xx"\} [1-9]/.test(text) ? text : undefined
    }, 20_000, 100)
    const have = new Set([...exported(controlText), ...exported(proxyText)])

    const used = new Set([...namesIn(readFileSync(RULES, 'utf8')), ...dashboardExprs(JSON.parse(readFileSync(DASHBOARD, 'utf8'))).flatMap(namesIn)])
    // What the issue asks the alerts to watch is among them ...
    for (const name of ['tether_live_proxies', 'tether_proxy_config_version', 'tether_config_version', 'tether_certificate_expiry_seconds', 'tether_acme_failures', 'tether_route_requests_total', 'tether_store_errors_total', 'tether_proxy_dropped_log_lines_total', 'tether_route_request_duration_seconds_bucket', 'tether_proxy_metrics_log_dropped_lines_total']) {
      assert.ok(used.has(name), `the rules or the dashboard use ${name}`)
    }
    // ... and each name used is exported.
    const missing = [...used].filter((n) => !have.has(n))
    assert.deepEqual(missing, [], `used by ${RULES} or ${DASHBOARD} but exported by neither the control plane nor the proxy`)
    console.log(`MEASURED metric names used by the rules and the dashboard: ${used.size}, all exported`)
  })
})
