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
 */
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

    const lasts: number[] = []
    const all: number[] = []
    for (let round = 0; round < rounds + warmup; round++) {
      const since = version
      let t0 = 0
      const answers = Array.from({ length: waiterCount }, (_, w) => {
        const pool = pools[w % pools.length] as Pool
        return pool
          .request({ path: `/v1/config?since=${since}&wait=60`, method: 'GET', headers: { authorization: `Bearer ${BENCH_PROXY_TOKEN}` } })
          .then(async (res) => {
            // The whole body is received; the version is read from the ETag (no JSON parse in the client).
            await res.body.arrayBuffer()
            const elapsed = performance.now() - t0
            const got = Number(String(res.headers.etag).replaceAll('"', ''))
            if (res.statusCode !== 200 || !(got > since)) throw new Error(`waiter got ${res.statusCode} version ${got}`)
            return elapsed
          })
      })
      // Every waiter registered on every replica before the write (bounded: 30 s).
      const deadline = Date.now() + 30_000
      for (;;) {
        const counts = await Promise.all(controls.map((c) => waitersOn(c.url)))
        if (counts.reduce((a, b) => a + b, 0) >= waiterCount) break
        if (Date.now() > deadline) throw new Error(`only ${counts.join('+')} of ${waiterCount} waiters registered`)
        await new Promise((r) => setTimeout(r, 20))
      }
      t0 = performance.now()
      version = await put(round % routes, 9000 + round)
      const times = (await Promise.all(answers)).sort((a, b) => a - b)
      if (round < warmup) continue
      lasts.push(times[times.length - 1] as number)
      all.push(...times)
    }
    process.stdout.write(`last waiter per round (ms): ${lasts.map((x) => x.toFixed(1)).join(', ')}\n`)
    all.sort((a, b) => a - b)
    lasts.sort((a, b) => a - b)
    const ms = (x: number) => x.toFixed(1)
    process.stdout.write(`\nlong-poll wake-up: ${waiterCount} waiters over ${replicaCount} control process(es), ${routes} routes in the table, ${rounds} rounds (+${warmup} warm-up)\n\n`)
    process.stdout.write('| measure | p50 ms | p99 ms | max ms |\n|---|---|---|---|\n')
    process.stdout.write(`| write sent → each waiter answered (all rounds) | ${ms(percentile(all, 50))} | ${ms(percentile(all, 99))} | ${ms(all[all.length - 1] as number)} |\n`)
    process.stdout.write(`| write sent → LAST waiter answered (per round) | ${ms(percentile(lasts, 50))} | ${ms(percentile(lasts, 99))} | ${ms(lasts[lasts.length - 1] as number)} |\n`)
  } finally {
    await Promise.all(pools.map((p) => p.destroy()))
    for (const c of controls) await c.stop()
    await redis?.stop()
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) await main()
