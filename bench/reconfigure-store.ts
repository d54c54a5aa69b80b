/**
 * Raw route-store throughput against a real redis-server (no HTTP): how many route changes per
 * second the Redis store commits, and their latency, with several store instances (control-plane
 * replicas) writing at once. The HTTP benchmark (bench/reconfigure-http.*) measures the API on top.
 *
 *   npx tsx bench/reconfigure-store.ts [--seconds 5] [--replicas 2] [--concurrency 64] [--routes 1000]
 *
 * Starts its own redis-server on a free loopback port (like the tests) unless REDIS_URL is set.
 * Phases: changing puts (each put alternates a route's port, so every put is a new version),
 * no-op puts (the same route again: changed:false), and snapshots of the whole table.
 */
import { parseArgs } from 'node:util'
import { createRedisRouteStore } from '../src/control/store/redis-route-store.ts'
import type { RouteStore } from '../src/control/store/route-store.ts'
import { normalizeRoute, type Route } from '../src/contracts/route.ts'
import { startRedisServer, type RedisServer } from '../test/helpers/redis-server.ts'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    replicas: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '64' },
    routes: { type: 'string', default: '1000' },
  },
})
const seconds = Number(values.seconds)
const replicas = Number(values.replicas)
const concurrency = Number(values.concurrency)
const routeCount = Number(values.routes)

const routeOf = (i: number, port: number): Route =>
  normalizeRoute({ serviceName: `svc-${i}`, destinations: [{ servicePath: [`/svc-${i}`, `/api/svc-${i}`], port }], sticky: i % 2 === 0 })

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

interface PhaseResult {
  name: string
  ops: number
  perSecond: number
  p50: number
  p99: number
  max: number
  errors: number
}

/** Runs `op` from `concurrency` workers spread over the stores for `ms`; bounded by time. */
async function phase(name: string, stores: RouteStore[], ms: number, workers: number, op: (store: RouteStore, n: number) => Promise<unknown>): Promise<PhaseResult> {
  const latencies: number[] = []
  let errors = 0
  let n = 0
  const start = performance.now()
  const deadline = start + ms
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      const store = stores[w % stores.length] as RouteStore
      while (performance.now() < deadline) {
        const t = performance.now()
        try {
          await op(store, n++)
          latencies.push(performance.now() - t)
        } catch {
          errors++
        }
      }
    }),
  )
  const elapsed = (performance.now() - start) / 1000
  latencies.sort((a, b) => a - b)
  return { name, ops: latencies.length, perSecond: Math.round(latencies.length / elapsed), p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? NaN, errors }
}

let server: RedisServer | undefined
const url = process.env.REDIS_URL ?? (server = await startRedisServer()).url
const prefix = `bench-${process.pid}-${Date.now()}:`
const stores = Array.from({ length: replicas }, () => createRedisRouteStore({ url, prefix }))
try {
  await Promise.all(stores.map((s) => s.ping()))
  const first = stores[0] as RouteStore
  for (let i = 0; i < routeCount; i++) await first.put(routeOf(i, 8080), { actor: 'bench', source: 'api' })
  const ms = seconds * 1000
  const versionBefore = await first.version()
  const meta = { actor: 'bench', source: 'api' } as const
  // Each put flips one route's port: always a change, always a new version.
  const changing = await phase('put (changing)', stores, ms, concurrency, (s, n) => s.put(routeOf(n % routeCount, 8081 + (Math.floor(n / routeCount) % 2)), meta))
  const versionAfter = await first.version()
  // The routes exactly as stored: every put is a no-op (changed:false), like a CI rerun.
  const stored = (await first.list()).map((r) => r.route)
  const noop = await phase('put (no-op)', stores, ms, concurrency, (s, n) => s.put(stored[n % stored.length] as Route, meta))
  const snapshotWorkers = Math.min(concurrency, 8)
  const snapshots = await phase(`snapshot (${routeCount} routes, ${snapshotWorkers} callers)`, stores, Math.min(ms, 3000), snapshotWorkers, (s) => s.snapshot())
  const results = [changing, noop, snapshots]
  if ((await first.version()) !== versionAfter) throw new Error('the no-op phase changed the version')
  const redisVersion = server === undefined ? 'external (REDIS_URL)' : 'redis-server on loopback, started by the bench'
  console.log(`route store benchmark: ${replicas} store instance(s), ${concurrency} concurrent callers, ${seconds} s per phase, ${routeCount} routes, ${redisVersion}`)
  console.log('| phase | ops | ops/s | p50 ms | p99 ms | max ms | errors |')
  console.log('|---|---:|---:|---:|---:|---:|---:|')
  for (const r of results) console.log(`| ${r.name} | ${r.ops} | ${r.perSecond} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.max.toFixed(2)} | ${r.errors} |`)
  console.log(`versions committed by the changing phase: ${versionAfter - versionBefore} (= its ops when none failed)`)
} finally {
  await Promise.all(stores.map((s) => s.close()))
  await server?.stop()
}
