/**
 * Endpoint change → served, through one real proxy (HAProxy engine, real backends on loopback).
 *
 *   npx tsx bench/endpoint-change.ts [--rounds 50] [--routes 1000]
 *
 * Three ways a new backend reaches traffic, measured in the same run:
 *   - runtime: an endpoint added to an existing route (apply → `add server`, no reload), from
 *     the apply call to the first request answered by the new backend;
 *   - dns: a task added to `tasks.<service>` in DNS (the test DNS server), from the DNS change
 *     to the first request answered by it: adds the discovery interval (TETHER_DNS_INTERVAL_MS,
 *     1000 ms by default; measured at 1000 and 200);
 *   - reload (baseline): a new service with that backend (structural: `haproxy -c` + reload).
 * With `--routes` other routes in the table (each 1 endpoint), so render and reload carry a real table.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { request } from 'undici'
import { normalizeRoute, type Route } from '../src/contracts/route.ts'
import { createHaproxyEngine, type HaproxyEngine } from '../src/proxy/haproxy/haproxy-engine.ts'
import { freePort } from '../src/shared/free-port.ts'
import { closeBackends, startBackends, type BackendReply } from '../test/helpers/backends.ts'
import { startDnsServer } from '../test/helpers/dns-server.ts'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '50' }, routes: { type: 'string', default: '1000' } } })
const rounds = Number(values.rounds)
const others = Number(values.routes)

const quiet = (): void => {}
// Warnings are printed: a route HAProxy refused, or a runtime change that fell back to a reload, means the run does not measure what it says.
const logger = { debug: quiet, info: quiet, warn: (obj: unknown, msg?: string) => { if (msg !== 'haproxy') process.stderr.write(`warning: ${msg ?? ''} ${JSON.stringify(obj).slice(0, 300)}\n`) }, error: quiet }

async function engineWith(stateDir: string, dns: string[], dnsIntervalMs: number): Promise<{ engine: HaproxyEngine; url: string }> {
  const port = await freePort()
  const engine = await createHaproxyEngine({ stateDir, listen: `127.0.0.1:${port}`, adminListen: `127.0.0.1:${await freePort()}`, resolvers: dns, dnsIntervalMs, cookieKey: 'bench-cookie-key', logger })
  return { engine, url: `http://127.0.0.1:${port}` }
}

/** Polls `path` until `instance` answers; ms from `start`. Bounded: 10 s. */
async function servedAfter(url: string, instance: string, start: number): Promise<number> {
  const deadline = start + 10_000
  while (performance.now() < deadline) {
    const res = await request(url, { headers: { connection: 'close' } })
    const text = await res.body.text()
    if (res.statusCode === 200 && (JSON.parse(text) as BackendReply).instance === instance) return performance.now() - start
  }
  throw new Error(`${instance} never served`)
}

const filler: Route[] = Array.from({ length: others }, (_, i) =>
  normalizeRoute({ serviceName: `other-${i}`, destinations: [{ servicePath: [`/other/${i}`], port: 80 }], endpoints: [`127.3.${i >> 7}.${(i & 127) + 1}:9`] }), // valid addresses up to 32,768 routes
)

function percentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN
}

const results: Record<string, number[]> = { runtime: [], 'dns (interval 1000 ms)': [], 'dns (interval 200 ms)': [], 'reload (baseline)': [] }
const port = await freePort()
const hosts = Array.from({ length: rounds + 1 }, (_, i) => `127.2.${i >> 7}.${(i & 127) + 1}`)
const backends = await startBackends(hosts.length, { hosts, port, prefix: 'b-' })
const dns = await startDnsServer()
try {
  // runtime and reload, one engine
  {
    const stateDir = await mkdtemp(join(tmpdir(), 'tether-endpoint-bench-'))
    const { engine, url } = await engineWith(stateDir, ['127.0.0.1:1'], 1000)
    try {
      let endpoints = [`${hosts[0]}:${port}`]
      let version = 1
      const table = (extra: Route[] = []) => ({ version: version++, routes: [normalizeRoute({ serviceName: 'app', destinations: [{ servicePath: ['/app'], port }], endpoints }), ...filler, ...extra] })
      await engine.apply(table())
      for (let i = 1; i <= rounds; i++) {
        endpoints = [`${hosts[i]}:${port}`] // replace: the new one must be served
        const t = performance.now()
        await engine.apply(table())
        results.runtime!.push(await servedAfter(`${url}/app`, `b-${i + 1}`, t))
      }
      for (let i = 1; i <= Math.min(rounds, 20); i++) {
        const t = performance.now()
        await engine.apply(table([normalizeRoute({ serviceName: `new-${i}`, destinations: [{ servicePath: [`/new/${i}`], port }], endpoints: [`${hosts[i]}:${port}`] })]))
        results['reload (baseline)']!.push(await servedAfter(`${url}/new/${i}`, `b-${i + 1}`, t))
      }
      process.stderr.write(`reloads: ${engine.counters.reloads}, runtime changes: ${engine.counters.runtimeChanges}\n`)
    } finally {
      await engine.stop()
      await rm(stateDir, { recursive: true, force: true })
    }
  }
  // dns, at two intervals
  for (const interval of [1000, 200]) {
    const stateDir = await mkdtemp(join(tmpdir(), 'tether-endpoint-bench-'))
    const { engine, url } = await engineWith(stateDir, [dns.address], interval)
    try {
      dns.set('tasks.app', [hosts[0]!])
      await engine.apply({ version: 1, routes: [normalizeRoute({ serviceName: 'app', destinations: [{ servicePath: ['/app'], port }] }), ...filler] })
      for (let i = 1; i <= Math.min(rounds, 20); i++) {
        const t = performance.now()
        dns.set('tasks.app', [hosts[i]!])
        results[`dns (interval ${interval} ms)`]!.push(await servedAfter(`${url}/app`, `b-${i + 1}`, t))
      }
    } finally {
      await engine.stop()
      await rm(stateDir, { recursive: true, force: true })
    }
  }
} finally {
  await dns.close()
  await closeBackends(backends)
}

const base = percentile(results['reload (baseline)']!, 50)
console.log(`| change (table: ${others + 1} routes) | samples | p50 ms | p99 ms | p50 vs reload baseline |`)
console.log('|---|---|---|---|---|')
for (const [name, xs] of Object.entries(results)) {
  console.log(`| ${name} | ${xs.length} | ${percentile(xs, 50).toFixed(1)} | ${percentile(xs, 99).toFixed(1)} | ${(percentile(xs, 50) / base).toFixed(2)}× |`)
}
