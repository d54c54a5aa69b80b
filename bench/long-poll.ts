/**
 * Long-poll wake-up latency: N proxies wait on GET /v1/config?since=V&wait=60; one reconfigure
 * lands; how long until the last waiter has its answer.
 *
 *   npx tsx bench/long-poll.ts [--waiters 1000] [--rounds 10] [--warmup 3] [--replicas 1] [--routes 100]
 *
 * Control planes run as their own processes (`tether control`) on a real redis-server started
 * by the bench (or REDIS_URL). With --replicas N the waiters are spread over N processes and
 * the write goes to the first one, so the others are woken through Redis pub/sub.
 * Time is measured in the bench process from sending the write to each waiter's complete
 * answer (the body read), so it includes the write itself and the client's own work.
 * The same rounds then run against a bare node:http server that holds and releases the same
 * number of requests with a body of the same size (bench/long-poll-baseline-server.mjs): the
 * floor this machine, Node and this client set, measured in the same run.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { startRedisServer, type RedisServer } from '../test/helpers/redis-server.ts'
import { BENCH_PROXY_TOKEN, BENCH_TOKEN, startControlProcess, type ControlProcess } from './reconfigure-http.ts'

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN

async function waitersOn(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return Number(/^tether_long_poll_waiters (\d+)/m.exec(text)?.[1] ?? 0)
}

interface Rounds {
  /** Per round: time from the trigger to the last waiter's whole answer. */
  lasts: number[]
  /** Per round: every waiter's time. */
  all: number[][]
}

/**
 * Rounds of: `waiterCount` requests held by the server, then one trigger; the time from
 * sending the trigger to each waiter's complete answer (bodies read, never parsed).
 */
async function measure(target: {
  pools: Pool[]
  path: (since: number) => string
  headers: Record<string, string>
  registered: () => Promise<number>
  trigger: (round: number) => Promise<void>
  since: () => number
  waiterCount: number
  rounds: number
}): Promise<Rounds> {
  const result: Rounds = { lasts: [], all: [] }
  for (let round = 0; round < target.rounds; round++) {
    const since = target.since()
    let t0 = 0
    const answers = Array.from({ length: target.waiterCount }, (_, w) =>
      (target.pools[w % target.pools.length] as Pool).request({ path: target.path(since), method: 'GET', headers: target.headers }).then(async (res) => {
        await res.body.arrayBuffer()
        const elapsed = performance.now() - t0
        if (res.statusCode !== 200) throw new Error(`waiter got ${res.statusCode}`)
        return elapsed
      }),
    )
    // Every waiter registered before the trigger (bounded: 30 s).
    const deadline = Date.now() + 30_000
    for (;;) {
      const count = await target.registered()
      if (count >= target.waiterCount) break
      if (Date.now() > deadline) throw new Error(`only ${count} of ${target.waiterCount} waiters registered`)
      await new Promise((r) => setTimeout(r, 20))
    }
    t0 = performance.now()
    await target.trigger(round)
    const times = (await Promise.all(answers)).sort((a, b) => a - b)
    result.lasts.push(times[times.length - 1] as number)
    result.all.push(times)
  }
  return result
}

/** Runs `fn` with the baseline server (bench/long-poll-baseline-server.mjs) in its own process. */
async function withBaselineServer<T>(fn: (url: string) => Promise<T>): Promise<T> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./long-poll-baseline-server.mjs', import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const [line] = (await once(child.stdout, 'data')) as [Buffer]
    return await fn(`http://127.0.0.1:${line.toString().trim()}`)
  } finally {
    child.kill('SIGTERM')
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      waiters: { type: 'string', default: '1000' },
      rounds: { type: 'string', default: '10' },
      replicas: { type: 'string', default: '1' },
      routes: { type: 'string', default: '100' },
      // Rounds not counted: the first ones run while V8 is still compiling the hot paths.
      warmup: { type: 'string', default: '3' },
    },
  })
  const waiterCount = Number(values.waiters)
  const rounds = Number(values.rounds)
  const replicaCount = Number(values.replicas)
  const routes = Number(values.routes)
  const warmup = Number(values.warmup)

  let redis: RedisServer | undefined
  const redisUrl = process.env.REDIS_URL ?? (redis = await startRedisServer()).url
  const controls: ControlProcess[] = []
  const pools: Pool[] = []
  try {
    for (let i = 0; i < replicaCount; i++) controls.push(await startControlProcess(redisUrl, `bench-lp-${Date.now()}:`.replace(/\d+:$/, `${process.pid}:`)))
    for (const c of controls) pools.push(new Pool(c.url, { connections: Math.ceil(waiterCount / replicaCount) + 10, pipelining: 1, headersTimeout: 0, bodyTimeout: 0 }))
    const writer = controls[0] as ControlProcess
    const put = (i: number, port: number) =>
      fetch(`${writer.url}/v1/reconfigure?serviceName=svc-${i}&servicePath=/svc-${i}&port=${port}`, { method: 'PUT', headers: { authorization: `Bearer ${BENCH_TOKEN}` } }).then(async (r) => {
        if (!r.ok) throw new Error(`reconfigure answered ${r.status}`)
        return ((await r.json()) as { version: number }).version
      })
    let version = 0
    for (let i = 0; i < routes; i++) version = await put(i, 8080)

    // How big one answer is: the baseline sends the same number of bytes.
    const snapshotBytes = Number((await fetch(`${writer.url}/v1/config`, { headers: { authorization: `Bearer ${BENCH_PROXY_TOKEN}` } })).headers.get('content-length'))
    const tether = await measure({
      pools,
      path: (since) => `/v1/config?since=${since}&wait=60`,
      headers: { authorization: `Bearer ${BENCH_PROXY_TOKEN}` },
      registered: async () => (await Promise.all(controls.map((c) => waitersOn(c.url)))).reduce((a, b) => a + b, 0),
      trigger: async (round) => {
        version = await put(round % routes, 9000 + round)
      },
      since: () => version,
      waiterCount,
      rounds: rounds + warmup,
    })
    const baseline = await withBaselineServer(async (url) => {
      const pool = new Pool(url, { connections: waiterCount + 10, pipelining: 1, headersTimeout: 0, bodyTimeout: 0 })
      try {
        return await measure({
          pools: [pool],
          path: () => '/',
          headers: {},
          registered: async () => Number(await (await fetch(`${url}/waiters`)).text()),
          trigger: async () => {
            await (await fetch(`${url}/release?bytes=${snapshotBytes}`, { method: 'PUT' })).text()
          },
          since: () => 0,
          waiterCount,
          rounds: rounds + warmup,
        })
      } finally {
        await pool.destroy()
      }
    })

    const ms = (x: number) => x.toFixed(1)
    const summary = (r: Rounds) => {
      const lasts = r.lasts.slice(warmup).sort((a, b) => a - b)
      const all = r.all.slice(warmup).flat().sort((a, b) => a - b)
      return { lasts, all, lastP50: percentile(lasts, 50), lastP99: percentile(lasts, 99), allP50: percentile(all, 50), allP99: percentile(all, 99) }
    }
    const t = summary(tether)
    const b = summary(baseline)
    process.stdout.write(`last waiter per round, control plane (ms): ${t.lasts.map(ms).join(', ')}\n`)
    process.stdout.write(`last waiter per round, baseline (ms):      ${b.lasts.map(ms).join(', ')}\n`)
    process.stdout.write(`\nlong-poll wake-up: ${waiterCount} waiters over ${replicaCount} control process(es), ${routes} routes in the table (${snapshotBytes} bytes), ${rounds} rounds (+${warmup} warm-up) each\n\n`)
    process.stdout.write('| measure | control plane p50 ms | p99 ms | bare node:http baseline p50 ms | p99 ms | ratio p50 | ratio p99 |\n|---|---|---|---|---|---|---|\n')
    process.stdout.write(`| write sent → each waiter answered (all rounds) | ${ms(t.allP50)} | ${ms(t.allP99)} | ${ms(b.allP50)} | ${ms(b.allP99)} | ${(t.allP50 / b.allP50).toFixed(2)} | ${(t.allP99 / b.allP99).toFixed(2)} |\n`)
    process.stdout.write(`| write sent → LAST waiter answered (per round) | ${ms(t.lastP50)} | ${ms(t.lastP99)} | ${ms(b.lastP50)} | ${ms(b.lastP99)} | ${(t.lastP50 / b.lastP50).toFixed(2)} | ${(t.lastP99 / b.lastP99).toFixed(2)} |\n`)
  } finally {
    await Promise.all(pools.map((p) => p.destroy()))
    for (const c of controls) await c.stop()
    await redis?.stop()
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) await main()
