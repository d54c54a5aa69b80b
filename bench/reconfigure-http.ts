/**
 * Reconfigure throughput and latency over HTTP: autocannon against control-plane processes
 * (`tether control`, as in production) on a real redis-server.
 *
 *   npx tsx bench/reconfigure-http.ts [--seconds 10] [--connections 64] [--replicas 1] [--routes 1000]
 *
 * Starts its own redis-server on a free loopback port unless REDIS_URL is set. Phases:
 *   changing  PUT /v1/reconfigure where every request moves a route to another port (a new version each)
 *   no-op     the same PUT again and again (changed:false, no write: the CI-rerun case)
 * With --replicas N the requests are spread over N control-plane processes sharing the Redis.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { freePort, startRedisServer, type RedisServer } from '../test/helpers/redis-server.ts'

export const BENCH_TOKEN = 'bench-api-token-0123456789'
export const BENCH_PROXY_TOKEN = 'bench-proxy-token-0123456789'

export interface ControlProcess {
  url: string
  stop(): Promise<void>
}

/** Starts `tether control` in its own process on a free loopback port, and waits until it is ready. */
export async function startControlProcess(redisUrl: string, prefix: string): Promise<ControlProcess> {
  const port = await freePort()
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../src/cli.ts', import.meta.url)), 'control'], {
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: String(port),
      REDIS_URL: redisUrl,
      TETHER_REDIS_PREFIX: prefix,
      TETHER_API_TOKENS: `bench=${BENCH_TOKEN}`,
      TETHER_PROXY_TOKEN: BENCH_PROXY_TOKEN,
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 20_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`control plane exited with ${child.exitCode}`)
    if (Date.now() > deadline) throw new Error('control plane did not become ready in 20 s')
    try {
      if ((await fetch(`${url}/readyz`)).ok) break
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    url,
    async stop() {
      if (child.exitCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    },
  }
}

interface PhaseResult {
  phase: string
  requests: number
  perSecond: number
  p50: number
  p99: number
  errors: number
}

async function phase(name: string, urls: string[], seconds: number, connections: number, pathOf: (n: number) => string): Promise<PhaseResult> {
  const perTarget = Math.max(1, Math.floor(connections / urls.length))
  const results = await Promise.all(
    urls.map((url, target) => {
      let n = target
      return autocannon({
        url,
        connections: perTarget,
        duration: seconds,
        headers: { authorization: `Bearer ${BENCH_TOKEN}` },
        requests: [
          {
            method: 'PUT',
            setupRequest: (req) => {
              n += urls.length
              return { ...req, path: pathOf(n) }
            },
          },
        ],
      })
    }),
  )
  const requests = results.reduce((s, r) => s + r.requests.total, 0)
  const errors = results.reduce((s, r) => s + r.non2xx + r.errors + r.timeouts, 0)
  return {
    phase: name,
    requests,
    perSecond: Math.round(results.reduce((s, r) => s + r.requests.average, 0)),
    // autocannon reports percentiles per instance; the worst one is reported.
    p50: Math.max(...results.map((r) => r.latency.p50)),
    p99: Math.max(...results.map((r) => r.latency.p99)),
    errors,
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '10' },
      connections: { type: 'string', default: '64' },
      replicas: { type: 'string', default: '1' },
      routes: { type: 'string', default: '1000' },
    },
  })
  const seconds = Number(values.seconds)
  const connections = Number(values.connections)
  const replicaCount = Number(values.replicas)
  const routes = Number(values.routes)

  let redis: RedisServer | undefined
  const redisUrl = process.env.REDIS_URL ?? (redis = await startRedisServer()).url
  const prefix = `bench-http-${Date.now()}:`
  const controls: ControlProcess[] = []
  try {
    for (let i = 0; i < replicaCount; i++) controls.push(await startControlProcess(redisUrl, prefix))
    const urls = controls.map((c) => c.url)
    // Warm up (JIT, connections, scripts loaded) and create the routes.
    await phase('warm-up', urls, 2, connections, (n) => `/v1/reconfigure?serviceName=svc-${n % routes}&servicePath=/svc-${n % routes}&port=8080`)
    const changing = await phase('changing', urls, seconds, connections, (n) => `/v1/reconfigure?serviceName=svc-${n % routes}&servicePath=/svc-${n % routes}&port=${8000 + (Math.floor(n / routes) % 1000)}&sticky=true`)
    const noop = await phase('no-op', urls, seconds, connections, () => '/v1/reconfigure?serviceName=svc-0&servicePath=/svc-0&port=8080&sticky=true')
    const version = ((await (await fetch(`${urls[0]}/v1/routes`)).json()) as { version: number }).version
    process.stdout.write(`\nreconfigure over HTTP: ${replicaCount} control process(es), ${connections} connections, ${seconds} s per phase, ${routes} routes, Redis ${redis === undefined ? 'from REDIS_URL' : 'started by the bench'}; final version ${version}\n\n`)
    process.stdout.write('| phase | requests | reconfigures/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|\n')
    for (const r of [changing, noop]) process.stdout.write(`| ${r.phase} | ${r.requests} | ${r.perSecond} | ${r.p50} | ${r.p99} | ${r.errors} |\n`)
  } finally {
    for (const c of controls) await c.stop()
    await redis?.stop()
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) await main()
