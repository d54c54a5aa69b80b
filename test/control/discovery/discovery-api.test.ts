import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import { buildApp } from '../../../src/control/app.ts'
import { startSwarmDiscovery, type SwarmDiscovery } from '../../../src/control/discovery/swarm-discovery.ts'
import { createMemoryRouteStore } from '../../../src/control/store/memory-route-store.ts'
import { FakeSwarm, labelled, manualClock, memoryLogger, task } from './fakes.ts'

const stops: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop()
})

async function setup() {
  const clock = manualClock()
  const store = createMemoryRouteStore({ now: () => clock.now() })
  const swarm = new FakeSwarm()
  swarm.services = [labelled('web', '/web'), labelled('broken', '/b', 8080, { 'com.df.port': 'http' })]
  swarm.tasks.set('web', [task('web', 1, '10.0.1.5'), task('web', 2, '10.0.1.6'), task('web', 3, '10.0.1.7')])
  const discovery: SwarmDiscovery = startSwarmDiscovery({ store, client: swarm, logger: memoryLogger(), clock, holder: 'replica-1' })
  stops.push(() => store.close(), () => discovery.stop())
  const app = await buildApp({ store, auth: { apiTokens: 'off' }, discovery })
  stops.push(() => app.close())
  await clock.advance(3_000)
  return { app, swarm }
}

describe('Swarm discovery in the API', () => {
  it('GET /v1/routes/{serviceName} shows the running tasks and their addresses', async () => {
    const { app } = await setup()
    const res = await app.inject({ method: 'GET', url: '/v1/routes/web' })
    assert.equal(res.statusCode, 200)
    const body = res.json() as { source: string; tasks: { running: number; addresses: string[]; tasks: Array<{ slot: number }> } }
    assert.equal(body.source, 'discovery')
    assert.equal(body.tasks.running, 3)
    assert.deepEqual(body.tasks.addresses, ['10.0.1.5', '10.0.1.6', '10.0.1.7'])
    assert.deepEqual(
      body.tasks.tasks.map((t) => t.slot),
      [1, 2, 3],
    )
  })

  it('GET /v1/status shows leadership, every service\'s tasks, and the problems', async () => {
    const { app } = await setup()
    const res = await app.inject({ method: 'GET', url: '/v1/status' })
    assert.equal(res.statusCode, 200)
    const body = res.json() as { discovery: { leader: boolean; services: Array<{ serviceName: string; running: number }>; problems: Array<{ serviceName: string; message: string }> } }
    assert.equal(body.discovery.leader, true)
    assert.deepEqual(
      body.discovery.services.map((s) => [s.serviceName, s.running]),
      [['web', 3]],
    )
    assert.deepEqual(body.discovery.problems, [
      { serviceName: 'broken', message: `com.df.port: "http" must be an integer from 1 to 65535` },
    ])
  })

  it('warns when a route is written for a service nobody can serve: unknown name, or no running task; not for a running one', async () => {
    const { app, swarm } = await setup()
    swarm.services.push({ id: 'idle-id', name: 'idle', labels: {}, mode: 'replicated', replicas: 0 })
    const put = (name: string, extra = '') => app.inject({ method: 'PUT', url: `/v1/reconfigure?serviceName=${name}&servicePath=/${name}&port=80${extra}` })
    const ghost = await put('ghost')
    assert.equal(ghost.statusCode, 200, ghost.body)
    assert.equal(ghost.json().changed, true)
    assert.deepEqual(ghost.json().warnings, ['no Swarm service is named "ghost": the proxies find no task at tasks.ghost, so its requests get 503 until such a service runs'])
    const idle = await put('idle')
    assert.deepEqual(idle.json().warnings, ['service "idle" has no running task: its requests get 503 until one runs'])
    const dfp = await app.inject({ method: 'PUT', url: '/v1/docker-flow-proxy/reconfigure?serviceName=idle&servicePath=/idle&port=80' })
    assert.ok((dfp.json().warnings as string[]).includes('service "idle" has no running task: its requests get 503 until one runs'), dfp.body)
    const web = await app.inject({ method: 'PUT', url: '/v1/reconfigure?serviceName=web&servicePath=/web&port=8080' })
    assert.equal(web.statusCode, 200, web.body)
    assert.equal(web.json().warnings, undefined, 'web has three running tasks')
    const fixed = await put('static', '&endpoints=127.0.0.1:9000')
    assert.equal(fixed.statusCode, 200, fixed.body)
    assert.equal(fixed.json().warnings, undefined, 'fixed endpoints do not need Swarm tasks')
  })

  it('without discovery, the answers carry no discovery fields', async () => {
    const store = createMemoryRouteStore()
    const app = await buildApp({ store, auth: { apiTokens: 'off' } })
    stops.push(() => store.close(), () => app.close())
    const res = await app.inject({ method: 'GET', url: '/v1/status' })
    assert.equal(res.statusCode, 200)
    const status = res.json() as Record<string, unknown>
    assert.equal(status.version, 0, 'the status itself is there')
    assert.equal('discovery' in status, false)
  })
})
