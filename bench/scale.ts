/**
 * Scale benchmark for the HAProxy engine at default settings: N routes (default 1,000 and
 * 10,000), each its own service with 3 endpoints (IP addresses on loopback: the same servers,
 * names and runtime-API path as tasks found through DNS, without 30,000 DNS answers a second
 * from a test DNS server competing for the CPU), all domain-less. Measures:
 *   - first apply (render, `haproxy -c`, start);
 *   - one route added, and one with a host (a new service: from 1,000 routes on, served from a spare backend over the
 *     runtime API; below, or with --spares 0, a reload);
 *   - one endpoint added to an existing service (runtime API, no reload);
 *   - one path added to an existing service (runtime API: add map);
 *   - agent and HAProxy RSS, HAProxy's open descriptors, and the engine's descriptor report.
 *
 *   npx tsx bench/scale.ts [--routes 1000,10000] [--spares 8,0] [--nbthread N]
 *
 * Each size runs once per --spares value (spare backends of each kind; 8 is the default, 0 the
 * baseline: every new route reloads), so the two ways of adding a route are measured in the
 * same run. Every change is checked served: the new route's servers are in HAProxy. --nbthread
 * sets HAProxy's threads (default: one per CPU): a reload at 10,000 routes grows with them.
 *
 * The endpoints point at closed loopback ports: health checks fail fast (connection refused),
 * which is what HAProxy would see for tasks that do not listen; this measures configuration
 * handling, not forwarding (bench/endpoint-change.ts measures serving).
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { normalizeRoute, type Route } from '../src/contracts/route.ts'
import { createHaproxyEngine } from '../src/proxy/haproxy/haproxy-engine.ts'
import { freePort } from '../src/shared/free-port.ts'

const { values } = parseArgs({ options: { routes: { type: 'string', default: '1000,10000' }, spares: { type: 'string', default: '8,0' }, nbthread: { type: 'string' } } })
const sizes = values.routes.split(',').map(Number)
const spareCounts = values.spares.split(',').map(Number)

/** Endpoint j of route i: 127.<i>.<j> spread over the 127/8 loopback net, port 9 (discard: closed). */
function endpoints(i: number, count = 3): string[] {
  return Array.from({ length: count }, (_, j) => `127.${1 + (i >> 8)}.${i & 255}.${1 + j}:9`)
}

function route(i: number, options: { endpoints?: number; paths?: string[]; salt?: string; domain?: string } = {}): Route {
  return normalizeRoute({
    serviceName: `svc-${String(i).padStart(5, '0')}${options.salt ?? ''}`,
    ...(options.domain === undefined ? {} : { serviceDomain: [options.domain] }),
    destinations: [{ servicePath: options.paths ?? [`/team-${i % 50}/app-${i}`], port: 8080 }],
    sticky: i % 2 === 0,
    endpoints: endpoints(i, options.endpoints ?? 3),
  })
}

async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
}

async function openFds(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`).catch(() => [])).length
}

const ms = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e6
const mb = (kb: number): string => (kb / 1024).toFixed(0)
const f = (x: number): string => x.toFixed(0)

type Applied = { renderMs?: number; checkMs?: number; reloadMs?: number; runtimeMs?: number; syncMs?: number; servedMs?: number }
/** How a change was applied: from a spare over the runtime API, or through a reload. */
const how = (a: Applied): string =>
  a.reloadMs === undefined ? `spare: render ${f(a.renderMs ?? -1)}, runtime API ${f(a.syncMs ?? -1)}, served at ${f(a.servedMs ?? -1)}` : `reload: ${f(a.renderMs ?? 0)} / ${f(a.checkMs ?? 0)} / ${f(a.reloadMs)}`
const rows: string[] = []
const notes: string[] = []
for (const n of sizes) for (const spares of spareCounts) {
  const stateDir = await mkdtemp(join(tmpdir(), 'tether-scale-'))
  let last: Applied = {}
  const quiet = (): void => {}
  const engine = await createHaproxyEngine({
    stateDir,
    listen: `127.0.0.1:${await freePort()}`,
    adminListen: `127.0.0.1:${await freePort()}`,
    resolvers: ['127.0.0.1:1'],
    cookieKey: 'bench-cookie-key',
    spareBackends: spares,
    ...(values.nbthread === undefined ? {} : { nbthread: Number(values.nbthread) }),
    logger: {
      debug: quiet,
      warn: (_obj, msg) => {
        if (msg !== 'haproxy') notes.push(`${n}: ${msg ?? ''}`)
      },
      error: quiet,
      info: (obj, msg) => {
        if (msg === 'configuration applied' || msg === 'configuration applied without a reload') last = obj as Applied
      },
    },
  })
  try {
    const base = Array.from({ length: n }, (_, i) => route(i))
    let t = process.hrtime.bigint()
    await engine.apply({ version: 1, routes: base })
    const startMs = ms(t)
    const first = last
    // The endpoints do not listen: every health check fails, and for the first two rounds of checks
    // (inter 2s, fall 2) HAProxy logs one line per server going down, tens of thousands at this
    // size, which the agent reads. Measure the changes once that has settled, as a fleet in service would be.
    await new Promise((resolve) => setTimeout(resolve, 6_000))

    const added = [...base, route(n, { salt: '-new' })]
    t = process.hrtime.bigint()
    await engine.apply({ version: 2, routes: added })
    const routeMs = ms(t)
    const second = last
    // Served: HAProxy holds the new route's three servers (whichever backend they are in).
    const newRoute = (await engine.health()).find((h) => h.serviceName === route(n, { salt: '-new' }).serviceName)
    if (newRoute?.servers?.length !== 3) throw new Error(`the route added is not in HAProxy: ${JSON.stringify(newRoute)}`)

    const hostRoute = route(n + 1, { salt: '-host', domain: `shop-${n}.example.com` })
    const withHost = [...added, hostRoute]
    t = process.hrtime.bigint()
    await engine.apply({ version: 3, routes: withHost })
    const hostMs = ms(t)
    const hostApplied = last
    if ((await engine.health()).find((h) => h.serviceName === hostRoute.serviceName)?.servers?.length !== 3) throw new Error('the route with a host added is not in HAProxy')

    const withEndpoint = withHost.map((r, i) => (i === 0 ? route(0, { endpoints: 4 }) : r))
    t = process.hrtime.bigint()
    await engine.apply({ version: 4, routes: withEndpoint })
    const endpointMs = ms(t)
    const third = last

    const withPath = withEndpoint.map((r, i) => (i === 1 ? route(1, { paths: ['/team-1/app-1', '/team-1/app-1-extra'] }) : r))
    t = process.hrtime.bigint()
    await engine.apply({ version: 5, routes: withPath })
    const pathMs = ms(t)
    const fourth = last

    const info = await engine.process!.proc()
    const haproxyKb = (await rssKb(info.master.pid)) + (await Promise.all(info.workers.map((w) => rssKb(w.pid)))).reduce((a, b) => a + b, 0)
    const fds = (await Promise.all(info.workers.map((w) => openFds(w.pid)))).reduce((a, b) => a + b, 0)
    const agentKb = process.memoryUsage().rss / 1024
    const d = engine.descriptors?.()
    rows.push(
      `| ${n.toLocaleString('en')} × 3, ${spares} spares | ${f(first.renderMs ?? 0)} / ${f(first.checkMs ?? 0)} / ${f(first.reloadMs ?? 0)} / **${f(startMs)}** | ${how(second)} / **${f(routeMs)}** | ${how(hostApplied)} / **${f(hostMs)}** | ${f(third.runtimeMs ?? -1)} / **${f(endpointMs)}** | ${f(fourth.runtimeMs ?? -1)} / **${f(pathMs)}** | ${engine.counters.reloads} | ${mb(agentKb)} | ${mb(haproxyKb)} | ${fds} | ${d === null || d === undefined ? '' : `${d.needed} / ${d.limit}, maxconn ${d.maxconn}, ${d.checkedServers} of ${d.servers} checked`} |`,
    )
    process.stderr.write(`${rows.at(-1)}\n`)
  } finally {
    await engine.stop()
    await rm(stateDir, { recursive: true, force: true })
  }
}

console.log('| routes × endpoints | first apply ms: render / haproxy -c / start / total | one route added ms: how (spare, or reload: render / haproxy -c / reload) / total | one route with a host added ms: how / total | one endpoint added ms: runtime API / total | one path added ms: runtime API / total | reloads (of 5 applies) | agent RSS MB | HAProxy RSS MB | HAProxy worker fds | descriptors needed / limit |')
console.log('|---|---|---|---|---|---|---|---|---|---|---|')
for (const row of rows) console.log(row)
for (const note of [...new Set(notes)]) console.log(`\n- ${note}`)
