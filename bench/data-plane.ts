/**
 * Data-plane benchmark, one run, three targets side by side (interleaved rounds):
 *   direct   — wrk straight to one backend;
 *   hand     — a hand-written HAProxy configuration doing the same sticky routing (path match
 *              on /app, cookie insert dynamic, 3 servers);
 *   tether   — the configuration Tether's engine renders for the same route.
 * Backends: a separate HAProxy answering `http-request return` on 3 ports, so they are not the
 * bottleneck. wrk sends the affinity cookie (a pinned browser). Both proxies run nbthread 1
 * with the same cookie key; the machine has 2 cores shared by wrk, the proxies and the backends.
 *
 *   npx tsx bench/data-plane.ts [--seconds 8] [--rounds 3] [--connections 32]
 */
import { join } from 'node:path'
import { normalizeRoute } from '../src/contracts/route.ts'
import { createHaproxyEngine } from '../src/proxy/haproxy/haproxy-engine.ts'
import { freePort } from '../test/helpers/redis-server.ts'
import { benchArgs, handConfig, KEY, roundLine, startHaproxyBench, startReturnBackends, summarize, waitOk, wrk, type WrkResult } from './lib/haproxy-bench.ts'

const { seconds, rounds, connections } = benchArgs({ seconds: 8, rounds: 3 })

const bench = await startHaproxyBench()
const { dir, haproxy } = bench

try {
  const endpoints = await startReturnBackends(bench, 3)

  const handPort = await freePort()
  await haproxy('hand', handConfig({ port: handPort, endpoints }))

  const tetherPort = await freePort()
  const stateDir = join(dir, 'tether')
  const engine = await createHaproxyEngine({
    stateDir,
    listen: `127.0.0.1:${tetherPort}`,
    adminListen: `127.0.0.1:${await freePort()}`,
    resolvers: ['127.0.0.1:1'],
    cookieKey: KEY,
    nbthread: 1,
    // The load generator is one address sending far more than TETHER_CLIENT_MAX_REQUEST_RATE
    // allows (1,000 a second): it would be answered 429. The per-address connection limit stays.
    clientMaxRequestRate: 0,
  })
  bench.onClose(() => engine.stop())
  await engine.apply({
    version: 1,
    routes: [normalizeRoute({ serviceName: 'app', destinations: [{ servicePath: ['/app'], port: 80 }], sticky: true, endpoints })],
  })

  const targets = {
    direct: { url: `http://${endpoints[0]}/app/x`, cookie: undefined as string | undefined },
    hand: { url: `http://127.0.0.1:${handPort}/app/x`, cookie: undefined as string | undefined },
    tether: { url: `http://127.0.0.1:${tetherPort}/app/x`, cookie: undefined as string | undefined },
  }
  await waitOk(targets.direct.url)
  for (const name of ['hand', 'tether'] as const) {
    const { setCookie } = await waitOk(targets[name].url)
    targets[name].cookie = setCookie?.split(';')[0]
  }
  if (targets.hand.cookie === undefined || targets.tether.cookie === undefined) throw new Error('no affinity cookie issued')
  process.stderr.write(`cookies: hand ${targets.hand.cookie}, tether ${targets.tether.cookie}\n`)

  const results: Record<keyof typeof targets, WrkResult[]> = { direct: [], hand: [], tether: [] }
  for (let r = 0; r < rounds; r++) {
    for (const name of ['direct', 'hand', 'tether'] as const) {
      const res = await wrk(targets[name].url, { connections, seconds, cookie: targets[name].cookie })
      results[name].push(res)
      process.stderr.write(roundLine(`round ${r + 1} ${name}`, res))
    }
  }
  const summary = Object.fromEntries(Object.entries(results).map(([name, rs]) => [name, summarize(rs)])) as Record<keyof typeof targets, WrkResult>
  console.log(`wrk -t1 -c${connections} -d${seconds}s --latency, ${rounds} interleaved rounds, medians`)
  console.log('| target | req/s | p50 ms | p99 ms | errors |')
  console.log('|---|---|---|---|---|')
  for (const [name, s] of Object.entries(summary)) console.log(`| ${name} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(3)} | ${s.p99.toFixed(3)} | ${s.errors} |`)
  console.log(`tether / hand-written req/s: ${(summary.tether.rps / summary.hand.rps).toFixed(3)}`)
  console.log(`tether / direct req/s: ${(summary.tether.rps / summary.direct.rps).toFixed(3)}`)
  console.log(`p50 added over direct: ${(summary.tether.p50 - summary.direct.p50).toFixed(3)} ms (hand-written: ${(summary.hand.p50 - summary.direct.p50).toFixed(3)} ms)`)
  console.log(`p99 added over direct: ${(summary.tether.p99 - summary.direct.p99).toFixed(3)} ms (hand-written: ${(summary.hand.p99 - summary.direct.p99).toFixed(3)} ms)`)
} finally {
  await bench.close()
}
