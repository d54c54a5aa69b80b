/**
 * The agent's loop on an injected clock: coalescing, backoff, resync, last known good,
 * engine failures, heartbeats. The engine only records versions, the control plane is a
 * route store in this process (the HTTP path and HAProxy are covered by agent-haproxy.test.ts).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import type { ConfigSnapshot } from '../../src/contracts/config-snapshot.ts'
import { normalizeRoute } from '../../src/contracts/route.ts'
import { createMemoryRouteStore } from '../../src/control/store/memory-route-store.ts'
import { createAgent, type AgentOptions } from '../../src/proxy/agent.ts'
import { backoffDelay } from '../../src/shared/clock.ts'
import { createRecordingEngine, type RecordingEngineOptions } from '../../src/proxy/recording-engine.ts'
import { createStateStore } from '../../src/proxy/state-store.ts'
import { createFakeClock, until } from '../helpers/fake-clock.ts'
import { createMemoryControlClient } from './memory-control-client.ts'

const log = pino({ level: 'silent' })
const meta = { actor: 'test', source: 'api' } as const
const route = (serviceName: string, path = `/${serviceName}`) => normalizeRoute({ serviceName, destinations: [{ servicePath: [path], port: 8080 }] })
const HEARTBEAT_MS = 3_600_000

async function setup(t: TestContext, opts: { engine?: RecordingEngineOptions; stateDir?: string; agent?: Partial<AgentOptions>; answerBackwardsAtOnce?: boolean } = {}) {
  const clock = createFakeClock()
  const store = createMemoryRouteStore()
  const client = createMemoryControlClient({ store, clock, ...(opts.answerBackwardsAtOnce === undefined ? {} : { answerBackwardsAtOnce: opts.answerBackwardsAtOnce }) })
  const engine = createRecordingEngine(opts.engine)
  const stateDir = opts.stateDir ?? (await mkdtemp(join(tmpdir(), 'tether-agent-')))
  const state = await createStateStore({ dir: stateDir })
  const agent = createAgent({ id: 'proxy-1', node: 'node-1', engine, client, state, log, clock, random: () => 0.5, heartbeatMs: HEARTBEAT_MS, ...opts.agent })
  t.after(async () => {
    await agent.stop()
    if (opts.stateDir === undefined) await rm(stateDir, { recursive: true, force: true })
  })
  return { clock, store, client, engine, agent, state, stateDir }
}

/**
 * Waits (bounded) until the engine has applied as many versions as expected, then checks which:
 * an apply ends with a real fsync'd write of the last known good, which a fixed number of
 * event-loop turns does not always cover on a loaded machine.
 */
async function appliedBecomes(engine: { readonly applied: readonly number[] }, expected: number[]): Promise<void> {
  await until(() => engine.applied.length >= expected.length, `versions ${expected.join(', ')} are applied`)
  assert.deepEqual(engine.applied, expected)
}

describe('proxy agent loop', () => {
  it('applies the current table at start and each new version as it is published', async (t) => {
    const { store, engine, agent } = await setup(t)
    await store.put(route('a'), meta)
    await agent.start()
    await appliedBecomes(engine, [1])
    assert.equal(agent.ready, true)
    await store.put(route('b'), meta)
    await appliedBecomes(engine, [1, 2])
    assert.deepEqual(engine.current?.routes.map((r) => r.serviceName), ['a', 'b'])
  })

  it('is not ready before any configuration is applied', async (t) => {
    const { clock, client, agent } = await setup(t)
    client.down = true
    await agent.start()
    await clock.settle()
    assert.equal(agent.ready, false)
    assert.equal(agent.status().status, 'starting')
  })

  it('coalesces the versions that arrive during an apply: only the newest is applied next', async (t) => {
    let release: () => void = () => {}
    let gate: Promise<void> | null = null
    let applying = false
    const { clock, store, engine, agent } = await setup(t, {
      engine: {
        decide: async () => {
          applying = true
          await gate
          applying = false
          return []
        },
      },
    })
    await agent.start()
    await until(() => engine.applied.length === 1 && !applying, 'version 0 is applied')
    assert.deepEqual(engine.applied, [0])
    gate = new Promise((resolve) => (release = resolve))
    await store.put(route('a'), meta) // v1: the apply starts and blocks
    await until(() => applying, 'the apply of version 1 started')
    for (const name of ['b', 'c', 'd', 'e']) {
      await store.put(route(name), meta) // v2..v5 arrive while v1 is being applied
      await clock.settle()
    }
    gate = null
    release()
    await until(() => engine.applied.length >= 3, 'two more versions are applied')
    await appliedBecomes(engine, [0, 1, 5])
    assert.deepEqual(engine.current?.routes.map((r) => r.serviceName), ['a', 'b', 'c', 'd', 'e'])
  })

  it('backs off exponentially with jitter, capped, while the control plane is unreachable, and catches up when it is back', async (t) => {
    const { clock, client, store, engine, agent } = await setup(t, { agent: { backoff: { baseMs: 100, maxMs: 1000 }, random: () => 0 } })
    client.down = true
    await agent.start()
    for (let i = 0; i < 8; i++) await clock.advance(1000)
    const backoffs = clock.sleeps.filter((ms) => ms !== HEARTBEAT_MS)
    // random() = 0: half of the ceiling, which doubles from 100 ms and stops at 1000 ms.
    assert.deepEqual(backoffs.slice(0, 7), [50, 100, 200, 400, 500, 500, 500])
    assert.equal(agent.status().controlReachable, false)

    await store.put(route('a'), meta)
    client.down = false
    await clock.advance(1000)
    assert.deepEqual(engine.applied, [1])
    assert.equal(agent.status().controlReachable, true)
  })

  it('jitter spreads retries between half the ceiling and the ceiling', () => {
    const policy = { baseMs: 250, maxMs: 30_000 }
    assert.equal(backoffDelay(1, policy, () => 0), 125)
    assert.equal(backoffDelay(1, policy, () => 0.999999), 250)
    assert.equal(backoffDelay(3, policy, () => 0.5), 750)
    assert.equal(backoffDelay(50, policy, () => 0), 15_000)
    assert.equal(backoffDelay(50, policy, () => 0.999999), 30_000)
  })

  it('resyncs when the version goes backwards (store restored) while it waits, once the long poll ends', async (t) => {
    const { clock, client, store, engine, agent } = await setup(t)
    for (const name of ['a', 'b', 'c']) await store.put(route(name), meta)
    await agent.start()
    await appliedBecomes(engine, [3])

    const restored = createMemoryRouteStore()
    await restored.put(route('x'), meta)
    client.store = restored // version 1 < 3; a long poll only answers newer versions
    await clock.advance(30_000) // the long poll ends unchanged; the If-None-Match check sees version 1
    await appliedBecomes(engine, [3, 1])
    assert.deepEqual(client.requests.slice(0, 3), ['full', 'poll:3', 'check:3'])
    assert.deepEqual(engine.current?.routes.map((r) => r.serviceName), ['x'])

    await restored.put(route('y'), meta) // and follows the restored store from there
    await appliedBecomes(engine, [3, 1, 2])
  })

  it('resyncs at once when a control plane answers a lower version', async (t) => {
    const { clock, client, store, engine, agent } = await setup(t, { answerBackwardsAtOnce: true })
    for (const name of ['a', 'b', 'c']) await store.put(route(name), meta)
    await agent.start()
    await clock.settle()
    const restored = createMemoryRouteStore()
    await restored.put(route('x'), meta)
    client.store = restored
    await store.put(route('d'), meta) // wakes the waiting long poll, which now reads the restored store
    await appliedBecomes(engine, [3, 1])
  })

  it('applies a restored table that reuses the version number it serves, once it reconnects', async (t) => {
    const { clock, client, store, engine, agent } = await setup(t, { agent: { backoff: { baseMs: 100, maxMs: 1000 } } })
    for (const name of ['a', 'b', 'c']) await store.put(route(name), meta)
    await agent.start()
    await appliedBecomes(engine, [3])

    client.down = true // the control plane restarts on a store restored from another backup...
    await clock.advance(30_000)
    const restored = createMemoryRouteStore()
    for (const name of ['x', 'y', 'z']) await restored.put(route(name), meta) // ...also at version 3
    client.store = restored
    client.down = false
    await clock.advance(1000)
    assert.deepEqual(engine.applied, [3, 3])
    assert.deepEqual(engine.current?.routes.map((r) => r.serviceName), ['x', 'y', 'z'])
  })

  it('applies the last known good snapshot from disk at start while the control plane is down', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'tether-agent-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const first = await setup(t, { stateDir: dir })
    await first.store.put(route('a'), meta)
    await first.store.put(route('b'), meta)
    await first.agent.start()
    await until(() => first.client.heartbeats.some((h) => h.version === 2), 'version 2 is applied and saved')
    await first.agent.stop()

    const second = await setup(t, { stateDir: dir })
    second.client.down = true
    await second.agent.start()
    assert.equal(second.agent.ready, true)
    assert.deepEqual(second.engine.applied, [2])
    assert.deepEqual(second.engine.current?.routes.map((r) => r.serviceName), ['a', 'b'])
  })

  it('ignores a corrupt last known good file and waits for the control plane', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'tether-agent-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    await writeFile(join(dir, 'last-known-good.json'), '{"version": 3, "rou')
    const { client, clock, agent, engine } = await setup(t, { stateDir: dir })
    client.down = true
    await agent.start()
    await clock.settle()
    assert.equal(agent.ready, false)
    assert.deepEqual(engine.applied, [])
  })

  it('does not re-apply a snapshot from disk that the control plane still serves', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'tether-agent-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const snapshot: ConfigSnapshot = { version: 1, routes: [route('a')] }
    await (await createStateStore({ dir })).save(snapshot)
    const { store, engine, agent } = await setup(t, { stateDir: dir })
    await store.put(route('a'), meta)
    await agent.start()
    await appliedBecomes(engine, [1])
  })

  it('retries with backoff when the engine fails, keeps the old version meanwhile, and reports the error', async (t) => {
    let failing = false
    const { clock, store, client, engine, agent } = await setup(t, {
      engine: {
        decide: () => {
          if (failing) throw new Error('haproxy did not start')
          return []
        },
      },
      agent: { backoff: { baseMs: 100, maxMs: 1000 } },
    })
    await store.put(route('a'), meta)
    await agent.start()
    await until(() => client.heartbeats.some((h) => h.version === 1), 'version 1 is applied and saved')
    failing = true
    await store.put(route('b'), meta)
    await until(() => agent.status().status === 'error', 'the failed apply of version 2 is reported')
    assert.deepEqual(engine.applied, [1])
    assert.match(agent.status().lastError ?? '', /version 2 not applied: haproxy did not start/)
    assert.equal(client.heartbeats.at(-1)?.status, 'error')
    assert.equal(client.heartbeats.at(-1)?.version, 1)

    failing = false
    await clock.advance(1000)
    await until(() => client.heartbeats.at(-1)?.version === 2, 'version 2 is reported')
    assert.deepEqual(engine.applied, [1, 2])
    assert.equal(agent.status().status, 'ok')
    assert.equal(client.heartbeats.at(-1)?.version, 2)
  })

  it("carries the engine's old workers (count, connections, age) in its heartbeat, and still beats without them when the engine cannot tell", async (t) => {
    const report = { count: 1, connections: 3, oldestAgeSeconds: 12, maxCount: 10, drainTimeoutSeconds: 3600, workers: [{ pid: 4242, reloads: 1, ageSeconds: 12, connections: 3 }] }
    const { store, client, engine, agent } = await setup(t)
    Object.assign(engine, { oldWorkers: async () => report })
    await store.put(route('a'), meta)
    await agent.start()
    await until(() => client.heartbeats.at(-1)?.version === 1, 'version 1 is reported')
    assert.deepEqual(client.heartbeats.at(-1)?.oldWorkers, report)

    const other = await setup(t)
    Object.assign(other.engine, { oldWorkers: async () => Promise.reject(new Error('master CLI did not answer')) })
    await other.store.put(route('a'), meta)
    await other.agent.start()
    await until(() => other.client.heartbeats.at(-1)?.version === 1, 'version 1 is reported')
    assert.equal(other.client.heartbeats.at(-1)?.status, 'ok')
    assert.equal(other.client.heartbeats.at(-1)?.oldWorkers, undefined, 'nothing invented when the engine cannot tell')
  })

  it('reports refused routes in the heartbeat, degraded, while serving the rest', async (t) => {
    const { store, client, engine, agent } = await setup(t, {
      engine: { decide: (s) => s.routes.filter((r) => r.serviceName === 'bad').map((r) => ({ serviceName: r.serviceName, error: 'unknown keyword' })) },
    })
    await store.put(route('good'), meta)
    await store.put(route('bad'), meta)
    await agent.start()
    await until(() => client.heartbeats.at(-1)?.version === 2, 'version 2 is reported')
    assert.deepEqual(engine.current?.routes.map((r) => r.serviceName), ['good'])
    const last = client.heartbeats.at(-1)
    assert.equal(last?.status, 'degraded')
    assert.equal(last?.version, 2)
    assert.deepEqual(last?.refusedRoutes, [{ serviceName: 'bad', error: 'unknown keyword' }])
    assert.match(last?.lastError ?? '', /bad: unknown keyword/)
  })

  it('heartbeats on its interval, with node, start time and engine version', async (t) => {
    const { clock, client, agent } = await setup(t, { agent: { heartbeatMs: 5000 } })
    await agent.start()
    await until(() => client.heartbeats.at(-1)?.status === 'ok', 'the first apply is reported')
    await clock.settle()
    const before = client.heartbeats.length
    await clock.advance(15_000)
    assert.equal(client.heartbeats.length - before, 3)
    const last = client.heartbeats.at(-1)
    assert.equal(last?.node, 'node-1')
    assert.equal(last?.haproxyVersion, 'recording engine (no data plane)')
    assert.equal(last?.startedAt, new Date(1_700_000_000_000).toISOString())
  })

  it('stop() ends the loops and stops the engine', async (t) => {
    const { clock, engine, agent } = await setup(t)
    await agent.start()
    await clock.settle()
    await agent.stop()
    assert.equal(engine.stopped, true)
  })
})
