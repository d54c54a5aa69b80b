/**
 * Access-log benchmark, one run, three proxies side by side (the order alternates each round):
 *   hand      — a hand-written HAProxy configuration doing the same sticky routing, no logging;
 *   hand-log  — the same, writing the same access log line (the lines of access-log.ts);
 *   tether    — the configuration Tether's engine renders, access log on (json, the default), each
 *               line also sent to the latency / affinity counts over UDP (log-metrics.ts), as
 *               `tether proxy` runs by default; this process counts them, as the agent does.
 * Every log goes to /dev/null (the cost of making and writing the line, not of a reader).
 * Backends: a separate HAProxy answering `http-request return` on 3 ports. wrk sends the
 * affinity cookie. Proxies run nbthread 1; the machine has 2 cores shared by all of it.
 *
 *   npx tsx bench/access-log.ts [--seconds 5] [--rounds 4] [--connections 32]
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { normalizeRoute } from '../src/contracts/route.ts'
import { createHaproxyEngine } from '../src/proxy/haproxy/haproxy-engine.ts'
import { frontendLines, frontendLogLines, globalLogLines, logRoutesMap, type AccessLogSettings } from '../src/proxy/haproxy/access-log.ts'
import { openSync } from 'node:fs'
import { freePort } from '../test/helpers/redis-server.ts'
import { startLogMetrics } from '../src/proxy/log-metrics.ts'
import { Registry } from 'prom-client'
import { benchArgs, handConfig, KEY, roundLine, startHaproxyBench, startReturnBackends, summarize, waitOk, wrk, type WrkResult } from './lib/haproxy-bench.ts'

const { seconds, rounds, connections } = benchArgs({ seconds: 5, rounds: 4 })

const bench = await startHaproxyBench()
const { dir, haproxy } = bench

try {
  const endpoints = await startReturnBackends(bench, 3)

  const handPort = await freePort()
  const handLogPort = await freePort()
  const LOG: AccessLogSettings = { format: 'json', proxyId: 'bench', node: 'bench' }
  const map = logRoutesMap(dir, [{ name: 'app', serviceName: 'app', paths: ['/app'] }])
  await writeFile(map.path, map.text)
  const hand = (port: number, log: boolean): string =>
    handConfig({ port, endpoints, ...(log ? { global: globalLogLines(LOG), frontend: [...frontendLogLines(LOG, 'http', map.path), ...frontendLines(LOG)] } : {}) })
  await haproxy('hand', hand(handPort, false))
  await haproxy('hand-log', hand(handLogPort, true))

  const tetherPort = await freePort()
  const stateDir = join(dir, 'tether')
  const logMetrics = await startLogMetrics()
  bench.onClose(() => logMetrics.close())
  const registry = new Registry()
  logMetrics.register(registry, () => new Set(['app']))
  const engine = await createHaproxyEngine({
    stateDir,
    listen: `127.0.0.1:${tetherPort}`,
    adminListen: `127.0.0.1:${await freePort()}`,
    resolvers: ['127.0.0.1:1'],
    cookieKey: KEY,
    nbthread: 1,
    // Per-client limits off: wrk is one client sending far more than 1,000 requests a second.
    clientMaxConnections: 0,
    clientMaxRequestRate: 0,
    accessLog: { ...LOG, metricsAddress: logMetrics.address },
    accessLogOutput: openSync('/dev/null', 'w'),
  })
  bench.onClose(() => engine.stop())
  await engine.apply({
    version: 1,
    routes: [normalizeRoute({ serviceName: 'app', destinations: [{ servicePath: ['/app'], port: 80 }], sticky: true, endpoints })],
  })

  const targets = {
    'hand-log': { url: `http://127.0.0.1:${handLogPort}/app/x`, cookie: undefined as string | undefined },
    hand: { url: `http://127.0.0.1:${handPort}/app/x`, cookie: undefined as string | undefined },
    tether: { url: `http://127.0.0.1:${tetherPort}/app/x`, cookie: undefined as string | undefined },
  }
  for (const name of ['hand', 'hand-log', 'tether'] as const) {
    const { setCookie } = await waitOk(targets[name].url)
    targets[name].cookie = setCookie?.split(';')[0]
  }
  if (targets.hand.cookie === undefined || targets['hand-log'].cookie === undefined || targets.tether.cookie === undefined) throw new Error('no affinity cookie issued')
  process.stderr.write(`cookies: hand ${targets.hand.cookie}, tether ${targets.tether.cookie}\n`)

  const results: Record<keyof typeof targets, WrkResult[]> = { 'hand-log': [], hand: [], tether: [] }
  const order = ['hand', 'hand-log', 'tether'] as const
  for (let r = 0; r < rounds; r++) {
    for (const name of r % 2 === 0 ? order : [...order].reverse()) {
      const res = await wrk(targets[name].url, { connections, seconds, cookie: targets[name].cookie })
      results[name].push(res)
      process.stderr.write(roundLine(`round ${r + 1} ${name}`, res))
    }
  }
  const summary = Object.fromEntries(Object.entries(results).map(([name, rs]) => [name, summarize(rs)])) as Record<keyof typeof targets, WrkResult>
  const load = (await import('node:os')).loadavg().map((l) => l.toFixed(2)).join(' ')
  console.log(`wrk -t1 -c${connections} -d${seconds}s --latency, ${rounds} rounds (order alternating), medians; load average at the end ${load}`)
  console.log('| target | req/s | p50 ms | p99 ms | errors |')
  console.log('|---|---|---|---|---|')
  for (const [name, s] of Object.entries(summary)) console.log(`| ${name} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(3)} | ${s.p99.toFixed(3)} | ${s.errors} |`)
  console.log(`tether (log on) / hand-written without logging: ${(summary.tether.rps / summary.hand.rps).toFixed(3)} (target >= 0.95)`)
  console.log(`tether (log on) / hand-written writing the same line: ${(summary.tether.rps / summary['hand-log'].rps).toFixed(3)} (target >= 1.0)`)
  console.log(`cost of the log line itself (hand-log / hand): ${(summary['hand-log'].rps / summary.hand.rps).toFixed(3)}`)
  const text = await registry.metrics()
  const value = (name: string): string => new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? '?'
  console.log(`tether's lines counted by the latency metrics: ${value('tether_route_request_duration_seconds_count')}, dropped by the kernel (agent too slow): ${value('tether_proxy_metrics_log_dropped_lines_total')}`)
} finally {
  await bench.close()
}
