/**
 * Propagation: from the reconfigure answer until every proxy reports the new version.
 *
 * Part 1 — 100 agents (default) in this process, each with its own control client (own
 * connections, own long poll, own heartbeats) and the recording engine, which only records the
 * version: the whole control-plane path (write, wake-up, 100 long-poll answers, 100 applies,
 * 100 heartbeats) without HAProxy. "Reported" = the control plane answered 204 to the
 * heartbeat carrying the new version (timed in the agent's control client).
 *
 * Part 2 — 10 real proxies (default): each agent drives its own HAProxy. "Served" = a request
 * through that proxy to the route just added reaches the backend (polled every 2 ms); the
 * heartbeat time is reported too.
 *
 * The control plane is a `tether control` process of its own (in-memory store), as in
 * production; `--control inline` runs it (buildApp) inside the bench process instead.
 *
 * `--change service` (default) adds a new service each round: a structural change, `haproxy -c`
 * and a reload on every proxy. `--change path` adds a path to one service every proxy already
 * routes: applied over HAProxy's runtime API (`add map`), no reload.
 *
 *   npx tsx bench/propagation.ts [--agents 100] [--rounds 100] [--real 10] [--real-rounds 20] [--control process|inline] [--change service|path]
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import { request, Agent as UndiciAgent } from 'undici'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { buildApp } from '../src/control/app.ts'
import { createMemoryRouteStore } from '../src/control/store/memory-route-store.ts'
import { createAgent, type Agent } from '../src/proxy/agent.ts'
import { createControlClient, type ControlClient } from '../src/proxy/control-client.ts'
import { createRecordingEngine } from '../src/proxy/recording-engine.ts'
import { createHaproxyEngine } from '../src/proxy/haproxy/haproxy-engine.ts'
import { startBackends } from '../test/helpers/backends.ts'
import { freePort } from '../test/helpers/redis-server.ts'

const { values: args } = parseArgs({
  options: {
    agents: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '100' },
    real: { type: 'string', default: '10' },
    'real-rounds': { type: 'string', default: '20' },
    control: { type: 'string', default: 'process' },
    change: { type: 'string', default: 'service' },
  },
})
const AGENTS = Number(args.agents)
const ROUNDS = Number(args.rounds)
const REAL = Number(args.real)
const REAL_ROUNDS = Number(args['real-rounds'])
const API_TOKEN = 'bench-api-token-0123456789'
const PROXY_TOKEN = 'bench-proxy-token-0123456789'
const log = pino({ level: 'silent' })

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN
}
const ms = (v: number): string => v.toFixed(1)

/** The control client, with the time each heartbeat was acknowledged, per version and proxy. */
function timedClient(url: string, id: string, reported: Map<number, Map<string, number>>): ControlClient {
  const client = createControlClient({ urls: [url], token: PROXY_TOKEN })
  return {
    get lastTarget() {
      return client.lastTarget
    },
    fetchConfig: (options) => client.fetchConfig(options),
    async heartbeat(proxyId, heartbeat, signal) {
      await client.heartbeat(proxyId, heartbeat, signal)
      let byProxy = reported.get(heartbeat.version)
      if (byProxy === undefined) reported.set(heartbeat.version, (byProxy = new Map()))
      if (!byProxy.has(id)) byProxy.set(id, performance.now())
    },
    close: () => client.close(),
  }
}

/** A control plane: its own `tether control` process (default), or buildApp in this process. */
async function startControl() {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  let close: () => Promise<void>
  if (args.control === 'inline') {
    const app = await buildApp({ store: createMemoryRouteStore(), auth: { apiTokens: new Map([[API_TOKEN, 'bench']]), proxyToken: PROXY_TOKEN }, proxyTtlMs: 60_000 })
    await app.listen({ host: '127.0.0.1', port })
    close = () => app.close()
  } else {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'control'], {
      env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), TETHER_API_TOKENS: `bench=${API_TOKEN}`, TETHER_PROXY_TOKEN: PROXY_TOKEN, TETHER_PROXY_TTL_SECONDS: '60', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'inherit'],
    })
    close = async () => {
      if (child.exitCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      await exited
    }
    await until('the control plane to answer', () => child.exitCode !== null || healthy, 30_000, async () => {
      healthy = await request(`${url}/healthz`).then((r) => (r.body.dump(), r.statusCode === 200), () => false)
    })
    if (child.exitCode !== null) throw new Error('tether control exited')
  }
  const dispatcher = new UndiciAgent({ connections: 4 })
  async function reconfigure(query: string): Promise<number> {
    const res = await request(`${url}/v1/reconfigure?${query}`, { method: 'PUT', headers: { authorization: `Bearer ${API_TOKEN}` }, dispatcher })
    const body = (await res.body.json()) as { version: number }
    if (res.statusCode !== 200) throw new Error(`reconfigure: HTTP ${res.statusCode} ${JSON.stringify(body)}`)
    return body.version
  }
  return { url, reconfigure, close: async () => (await close(), await dispatcher.close()) }
}
let healthy = false

/** Waits, bounded, until `check()` is true (running `probe` between checks). */
async function until(what: string, check: () => boolean, limitMs = 30_000, probe?: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + limitMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
    if (probe !== undefined) await probe()
    await sleep(probe === undefined ? 1 : 50)
  }
}

async function recordingFleet(): Promise<void> {
  const reported = new Map<number, Map<string, number>>() // version → proxy → time
  const applied = new Map<number, number[]>()
  const control = await startControl()
  const agents: Agent[] = []
  try {
    for (let i = 0; i < AGENTS; i++) {
      const engine = createRecordingEngine({
        onApplied: (snap) => {
          const list = applied.get(snap.version) ?? []
          list.push(performance.now())
          applied.set(snap.version, list)
        },
      })
      const agent = createAgent({ id: `bench-${i}`, node: 'bench', engine, client: timedClient(control.url, `bench-${i}`, reported), state: null, log })
      agents.push(agent)
      await agent.start()
    }
    // A starting agent reports version 0 before it applied anything: wait for the applies.
    await until('every agent to apply version 0', () => agents.every((a) => a.ready))

    const untilReported: number[] = []
    const untilApplied: number[] = []
    for (let round = 1; round <= ROUNDS + 5; round++) {
      const version = await control.reconfigure(`serviceName=svc&servicePath=/r${round}&port=80`)
      const answeredAt = performance.now()
      await until(`every agent to report version ${version}`, () => (reported.get(version)?.size ?? 0) === AGENTS)
      if (round <= 5) continue // warm-up
      untilReported.push(Math.max(...reported.get(version)!.values()) - answeredAt)
      untilApplied.push(Math.max(...(applied.get(version) ?? [])) - answeredAt)
      reported.delete(version - 1)
    }
    console.log(`\n## ${AGENTS} agents in one process, recording engine (no HAProxy), ${ROUNDS} reconfigures, control plane ${args.control === 'inline' ? 'inside the bench process' : 'in its own process'}`)
    console.log('| from the reconfigure answer until | p50 ms | p99 ms | max ms |')
    console.log('|---|---|---|---|')
    console.log(`| the last agent applied | ${ms(percentile(untilApplied, 50))} | ${ms(percentile(untilApplied, 99))} | ${ms(Math.max(...untilApplied))} |`)
    console.log(`| the last agent's report reached the control plane | ${ms(percentile(untilReported, 50))} | ${ms(percentile(untilReported, 99))} | ${ms(Math.max(...untilReported))} |`)
  } finally {
    await Promise.all(agents.map((a) => a.stop()))
    await control.close()
  }
}

async function haproxyFleet(): Promise<void> {
  const reported = new Map<number, Map<string, number>>()
  const control = await startControl()
  const [backend] = await startBackends(1, { prefix: 'bench-' })
  const dirs: string[] = []
  const agents: Agent[] = []
  const proxies: string[] = []
  const client = new UndiciAgent({ connections: REAL * 2, keepAliveTimeout: 1000 })
  try {
    for (let i = 0; i < REAL; i++) {
      const dir = await mkdtemp(join(tmpdir(), 'tether-bench-'))
      dirs.push(dir)
      const port = await freePort()
      const engine = await createHaproxyEngine({ stateDir: dir, listen: `127.0.0.1:${port}`, adminListen: `127.0.0.1:${await freePort()}`, resolvers: ['127.0.0.1:1'], cookieKey: 'bench-cookie-key', hardStopAfterMs: 2000 })
      const agent = createAgent({ id: `haproxy-${i}`, node: 'bench', engine, client: timedClient(control.url, `haproxy-${i}`, reported), state: null, log })
      agents.push(agent)
      proxies.push(`http://127.0.0.1:${port}`)
      await agent.start()
    }
    await until('every proxy to serve version 0', () => agents.every((a) => a.ready))

    const untilServed: number[] = []
    const untilReported: number[] = []
    const requestErrors: string[] = []
    for (let round = 1; round <= REAL_ROUNDS + 2; round++) {
      const path = `/r${round}`
      const version =
        args.change === 'path'
          ? await control.reconfigure(`serviceName=svc&servicePath=${Array.from({ length: round }, (_, i) => `/r${i + 1}`).join(',')}&port=80&endpoints=${backend!.address}`)
          : await control.reconfigure(`serviceName=svc${round}&servicePath=${path}&port=80&endpoints=${backend!.address}`)
      const answeredAt = performance.now()
      const served = await Promise.all(
        proxies.map(async (url) => {
          const deadline = Date.now() + 30_000
          for (;;) {
            try {
              const res = await request(`${url}${path}`, { dispatcher: client })
              await res.body.dump()
              if (res.statusCode === 200) return performance.now()
            } catch (error) {
              // Counted and reported: a reload must never refuse a connection.
              requestErrors.push(`round ${round} ${url}: ${(error as Error).message}`)
            }
            if (Date.now() > deadline) throw new Error(`${url}${path} never served`)
            await sleep(2)
          }
        }),
      )
      await until(`every proxy to report version ${version}`, () => (reported.get(version)?.size ?? 0) === REAL)
      if (round <= 2) continue
      untilServed.push(Math.max(...served) - answeredAt)
      untilReported.push(Math.max(...reported.get(version)!.values()) - answeredAt)
    }
    console.log(`\n## ${REAL} real proxies (agent + HAProxy each), ${REAL_ROUNDS} reconfigures, each adding ${args.change === 'path' ? 'a path to an existing service (runtime API, no reload)' : 'a service (reload)'}`)
    console.log('| from the reconfigure answer until | p50 ms | p99 ms | max ms |')
    console.log('|---|---|---|---|')
    console.log(`| a request through every proxy reaches the new route | ${ms(percentile(untilServed, 50))} | ${ms(percentile(untilServed, 99))} | ${ms(Math.max(...untilServed))} |`)
    console.log(`| the last proxy's report reached the control plane | ${ms(percentile(untilReported, 50))} | ${ms(percentile(untilReported, 99))} | ${ms(Math.max(...untilReported))} |`)
    console.log(`\nRequests that failed while polling the proxies: ${requestErrors.length}${requestErrors.length > 0 ? ` (first: ${requestErrors.slice(0, 3).join('; ')})` : ''}`)
  } finally {
    await Promise.all(agents.map((a) => a.stop()))
    await control.close()
    await client.close()
    await backend?.close()
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
  }
}

if (AGENTS > 0) await recordingFleet()
if (REAL > 0) await haproxyFleet()
