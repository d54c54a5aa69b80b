/**
 * A control replica that hangs, not one that refuses: two `tether control` processes on one
 * real redis-server, a proxy agent with real HAProxy given both URLs. The replica the proxy
 * long-polls is frozen with SIGSTOP (its sockets stay open and silent, as a hung task's do), a
 * route is written through the other, and the proxy must serve it and report to the live
 * replica. Four rounds, freezing each replica in turn (the replica frozen before is resumed
 * first). A second agent (recording engine, applying in no time) shows when the route reached
 * a proxy. Times from the write are printed, not asserted (target 3 s: the long poll's
 * heartbeats, a byte every 500 ms, and the agent's 1.5 s liveness timeout).
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, it, type TestContext } from 'node:test'
import { request } from 'undici'
import { freePort } from '../../src/shared/free-port.ts'
import { createClient, waitFor } from '../helpers/haproxy.ts'
import { startRedisFor } from '../helpers/redis-server.ts'
import type { ControlClientOptions } from '../../src/proxy/control-client.ts'
import { API_TOKEN, backends, PROXY_TOKEN, proxyUrl, reconfigureQuery, startAgent } from './harness.ts'

interface Replica {
  name: string
  url: string
  proc: ChildProcess
  freeze(): void
  resume(): void
}

/** `tether control` as a child process (SIGSTOP needs a process of its own), killed when the test ends or fails. */
async function startReplica(t: TestContext, name: string, redisUrl: string, host = '127.0.0.1', wantedPort?: number): Promise<Replica> {
  const port = wantedPort ?? (await freePort())
  const url = `http://${host}:${port}`
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'control'], {
    env: { PATH: process.env.PATH ?? '', HOST: host, PORT: String(port), REDIS_URL: redisUrl, TETHER_API_TOKENS: `ci=${API_TOKEN}`, TETHER_PROXY_TOKEN: PROXY_TOKEN, TETHER_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()))
  t.after(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return
    const exited = once(proc, 'exit')
    proc.kill('SIGCONT') // never leave a stopped process behind, whatever happens next
    proc.kill('SIGKILL')
    await exited
  })
  const deadline = Date.now() + 90_000 // tsx compiles on start: slow on a loaded machine
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`tether control ${name} exited: ${stderr}`)
    if (Date.now() > deadline) throw new Error(`tether control ${name} not ready in 90 s: ${stderr}`)
    const ready = await request(`${url}/readyz`).then(
      (r) => (r.body.dump(), r.statusCode === 200),
      () => false,
    )
    if (ready) break
    await sleep(100)
  }
  return { name, url, proc, freeze: () => void proc.kill('SIGSTOP'), resume: () => void proc.kill('SIGCONT') }
}

// biome-ignore lint/suspicious/noExplicitAny: a JSON answer, asserted field by field
async function api(replica: Replica, method: 'GET' | 'PUT', path: string): Promise<{ status: number; body: any }> {
  const res = await request(`${replica.url}${path}`, { method, headers: { authorization: `Bearer ${API_TOKEN}` }, headersTimeout: 10_000, bodyTimeout: 10_000 })
  const text = await res.body.text()
  return { status: res.statusCode, body: text === '' ? null : JSON.parse(text) }
}

/** Long polls waiting on a replica, from its /metrics. */
async function waiting(replica: Replica): Promise<number> {
  const res = await request(`${replica.url}/metrics`, { headersTimeout: 2000, bodyTimeout: 2000 })
  const match = /^tether_long_poll_waiters (\d+)/m.exec(await res.body.text())
  return Number(match?.[1] ?? Number.NaN)
}

/**
 * Two replicas; `how` says how the agents are given them. Rounds freeze the replica the
 * proxies wait on, alternately A and B.
 */
async function scenario(t: TestContext, how: 'list' | 'dns', rounds: number): Promise<void> {
  const redis = await startRedisFor(t)
  // By name: both replicas on one port of two loopback addresses, as `tasks.control` answers on Swarm.
  const port = how === 'dns' ? await freePort() : undefined
  const replicas = [await startReplica(t, 'A', redis.url, how === 'dns' ? '127.0.0.2' : '127.0.0.1', port), await startReplica(t, 'B', redis.url, how === 'dns' ? '127.0.0.3' : '127.0.0.1', port)] as const
  // The name is resolved by the injected lookup (Docker's DNS is not here); the client does the rest.
  const control: Partial<ControlClientOptions> =
    how === 'dns' ? { random: () => 0, resolve: async () => ['127.0.0.2', '127.0.0.3'] } : { random: () => 0 }
  const controlUrls = how === 'dns' ? [`http://tasks.control.test:${port}`] : replicas.map((r) => r.url)
  const [backend] = await backends(t, 1, 'app-')
  assert.ok(backend !== undefined)
  // The production heartbeat interval (5 s): fail-over must not depend on frequent heartbeats.
  const p = await startAgent(t, { id: 'proxy-a', controlUrls, client: control, agent: { heartbeatMs: 5000 } })
  // A second agent on the same replicas with the recording engine (applying takes no time):
  // its clock reads when the route reached a proxy, HAProxy's adds the apply.
  const received = new Map<number, number>()
  const r = await startAgent(t, {
    id: 'proxy-rec',
    engine: 'recording',
    controlUrls,
    client: control,
    agent: { heartbeatMs: 5000, onApplied: (snapshot) => void received.set(snapshot.version, performance.now()) },
  })
  const client = createClient({ reuse: false })
  t.after(() => client.close())
  const serves = async (path: string): Promise<true | undefined> => ((await client.get(`${proxyUrl(p)}${path}`, { cookies: false })).status === 200 ? true : undefined)

  const first = await api(replicas[0], 'PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'r0', path: '/r0', endpoints: [backend.address] })}&wait=converged&timeout=30`)
  assert.equal(first.status, 200, JSON.stringify(first.body))
  await waitFor('the proxy serving /r0', () => serves('/r0'))
  // The same change with nothing frozen, for comparison: what applying a new route costs here.
  await waitFor('the proxy\'s long poll waiting on A', async () => ((await waiting(replicas[0])) === 2 ? true : undefined), 20_000)
  const baselineStart = performance.now()
  assert.equal((await api(replicas[0], 'PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'base', path: '/base', endpoints: [backend.address] })}`)).status, 200)
  await waitFor('the proxy serving /base', () => serves('/base'), 10_000, 20)
  process.stdout.write(`MEASURED control failover (${how}): baseline, nothing frozen, route written and served by HAProxy after ${Math.round(performance.now() - baselineStart)} ms\n`)

  const measured: number[] = []
  let frozen: Replica | null = null
  try {
    for (let round = 1; round <= rounds; round += 1) {
      // The agent started on A (random 0); after each fail-over it waits on the other one.
      const victim = replicas[(round - 1) % 2]!
      const live = replicas[round % 2]!
      await waitFor(`both proxies' long polls waiting on ${victim.name} only`, async () => ((await waiting(victim)) === 2 && (await waiting(live)) === 0 ? true : undefined), 20_000)
      victim.freeze()
      frozen = victim
      const path = `/r${round}`
      const started = performance.now()
      const write = await api(live, 'PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: `r${round}`, path, endpoints: [backend.address] })}`)
      assert.equal(write.status, 200, JSON.stringify(write.body))
      await waitFor(`the proxy serving ${path} with ${victim.name} frozen`, () => serves(path), 10_000, 20)
      const ms = Math.round(performance.now() - started)
      const at = await waitFor(`the recording agent receiving version ${write.body.version}`, async () => received.get(write.body.version), 10_000, 20)
      const reached = Math.round(at - started)
      measured.push(reached)
      process.stdout.write(`MEASURED control failover (${how}): round ${round}, ${victim.name} frozen, route written through ${live.name}: reached a proxy after ${reached} ms, served by HAProxy after ${ms} ms\n`)
      // Its heartbeat reaches the live replica too (not stuck on the frozen one).
      await waitFor(`the proxy's heartbeat with version ${write.body.version} on ${live.name}`, async () => {
        const proxies = (await api(live, 'GET', '/v1/proxies')).body.proxies as Array<{ id: string; version: number }>
        return ['proxy-a', 'proxy-rec'].every((id) => proxies.find((x) => x.id === id)?.version === write.body.version) ? true : undefined
      })
      victim.resume()
      frozen = null
    }
  } finally {
    frozen?.resume()
  }
  assert.equal(measured.length, rounds)
  assert.equal(await serves('/r0'), true, 'the first route is still served')
  process.stdout.write(`MEASURED control failover (${how}): route reached a proxy, max ${Math.max(...measured)} ms over ${measured.length} rounds (${measured.join(', ')})\n`)
  assert.equal(r.agent.status().version, p.agent.status().version, 'both proxies hold the same version')
}

describe('control plane fail-over when a replica hangs (SIGSTOP)', () => {
  it('given both URLs: a route written through the live replica reaches the proxy, and its heartbeats go there, while the other is frozen', async (t) => {
    await scenario(t, 'list', 4)
  })

  it('given one name resolving to both (tasks.<control service>): the same', async (t) => {
    await scenario(t, 'dns', 2)
  })
})
