import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import { normalizeRoute } from '../../../src/contracts/route.ts'
import { startSwarmDiscovery, type SwarmDiscovery } from '../../../src/control/discovery/swarm-discovery.ts'
import { createMemoryRouteStore } from '../../../src/control/store/memory-route-store.ts'
import type { RouteStore } from '../../../src/control/store/route-store.ts'
import { FakeSwarm, labelled, manualClock, type ManualClock, memoryLogger, settle, task } from './fakes.ts'

const running: SwarmDiscovery[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((d) => d.stop()))
})

function setup(options: { store?: RouteStore; clock?: ManualClock; swarm?: FakeSwarm; holder?: string; backoff?: { initialMs: number; maxMs: number } } = {}) {
  const clock = options.clock ?? manualClock()
  const store = options.store ?? createMemoryRouteStore({ now: () => clock.now() })
  const swarm = options.swarm ?? new FakeSwarm()
  const logger = memoryLogger()
  const start = (): SwarmDiscovery => {
    const d = startSwarmDiscovery({
      store,
      client: swarm,
      logger,
      clock,
      intervalMs: 30_000,
      taskIntervalMs: 3_000,
      leaseTtlMs: 6_000,
      holder: options.holder ?? 'replica-1',
      backoff: options.backoff ?? { initialMs: 500, maxMs: 4_000 },
      // The top of the jitter range, so the delays are the plain doubling: 0.5, 1, 2, 4, 4 s.
      random: () => 0.9999999,
    })
    running.push(d)
    return d
  }
  return { clock, store, swarm, logger, start }
}

const names = async (store: RouteStore): Promise<string[]> => (await store.list()).map((r) => r.route.serviceName)

describe('Swarm discovery (watcher against the memory store)', () => {
  it('registers labelled services at start, as discovery, with no API call', async () => {
    const { clock, store, swarm, start } = setup()
    swarm.services = [labelled('web', '/web'), labelled('shop', '/shop', 3000, { 'com.df.sessionType': 'sticky-server' }), { ...labelled('db', '/db'), labels: {} }]
    start()
    await clock.advance(0)
    assert.deepEqual(await names(store), ['shop', 'web'])
    const shop = await store.get('shop')
    assert.equal(shop?.source, 'discovery')
    assert.equal(shop?.actor, 'discovery')
    assert.deepEqual(shop?.route, normalizeRoute({ serviceName: 'shop', destinations: [{ servicePath: ['/shop'], port: 3000 }], sticky: true }))
  })

  it('writes one reconcile pass over 50 labelled services as ONE version (one reload per proxy), and removals of a pass as one more', async () => {
    const { clock, store, swarm, start } = setup()
    swarm.services = Array.from({ length: 50 }, (_, i) => labelled(`svc-${String(i).padStart(2, '0')}`, `/p${i}`))
    start()
    await clock.advance(0)
    assert.equal((await store.list()).length, 50)
    assert.equal(await store.version(), 1)
    const log = await store.changes(0, 100)
    assert.equal(log.length, 50)
    assert.ok(log.every((c) => c.version === 1 && c.source === 'discovery'))

    swarm.services = swarm.services.slice(0, 20)
    swarm.emit('remove', 'svc-20')
    await clock.advance(0)
    await settle()
    assert.equal((await store.list()).length, 20)
    assert.equal(await store.version(), 2)
  })

  it('shares a path between two labelled services the way DFP does: both stored, the shadowed one reported by the planner', async () => {
    const { clock, store, swarm, start } = setup()
    swarm.services = [labelled('zeta', '/shop'), labelled('alpha', '/shop', 8080, { 'com.df.aclName': 'zz-last' })]
    start()
    await clock.advance(0)
    const routes = (await store.snapshot()).routes
    assert.deepEqual(routes.map((r) => r.serviceName), ['alpha', 'zeta'])
    const { planRoutes } = await import('../../../src/contracts/route-planner.ts')
    assert.deepEqual(
      planRoutes(routes).shadowed.map((s) => [s.serviceName, s.path, s.shadowedBy]),
      [['alpha', '/shop', 'zeta']],
    )
  })

  it('follows service events at once: create, label change, notify removed, service removed', async () => {
    const { clock, store, swarm, start } = setup()
    start()
    await clock.advance(0)
    assert.deepEqual(await names(store), [])

    swarm.services = [labelled('web', '/web')]
    swarm.emit('create', 'web')
    await settle()
    assert.deepEqual(await names(store), ['web'], 'created service routed without waiting for the interval')

    swarm.services = [labelled('web', '/web2')]
    swarm.emit('update', 'web')
    await settle()
    assert.deepEqual((await store.get('web'))?.route.destinations, [{ servicePath: ['/web2'], port: 8080 }])

    swarm.services = [{ ...labelled('web', '/web2'), labels: { 'com.df.servicePath': '/web2', 'com.df.port': '8080' } }]
    swarm.emit('update', 'web')
    await settle()
    assert.deepEqual(await names(store), [], 'notify label removed → route removed')

    swarm.services = [labelled('api', '/api')]
    swarm.emit('create', 'api')
    await settle()
    swarm.services = []
    swarm.emit('remove', 'api')
    await settle()
    assert.deepEqual(await names(store), [], 'service removed → route removed')
  })

  it('writes nothing when nothing changed: repeated reconciles keep the version', async () => {
    const { clock, store, swarm, start } = setup()
    swarm.services = [labelled('web', '/web')]
    const d = start()
    await clock.advance(0)
    const version = await store.version()
    assert.equal(version, 1)
    swarm.emit('update', 'web')
    await d.reconcileNow()
    await clock.advance(90_000)
    assert.equal(await store.version(), version)
  })

  it('never touches a route written through the API, and reports the clash', async () => {
    const { clock, store, swarm, start } = setup()
    const apiRoute = normalizeRoute({ serviceName: 'web', destinations: [{ servicePath: ['/from-api'], port: 9000 }] })
    const apiOnly = normalizeRoute({ serviceName: 'legacy', destinations: [{ servicePath: ['/legacy'], port: 80 }] })
    await store.put(apiRoute, { actor: 'ci', source: 'api' })
    await store.put(apiOnly, { actor: 'ci', source: 'dfp' })
    swarm.services = [labelled('web', '/from-labels')]
    const d = start()
    await clock.advance(0)
    assert.deepEqual((await store.get('web'))?.route, apiRoute)
    assert.deepEqual((await store.get('legacy'))?.route, apiOnly, 'an API route of an unlabelled service is not removed')
    assert.equal(await store.version(), 2)
    assert.match(d.problems().find((p) => p.serviceName === 'web')?.message ?? '', /last written by 'ci' \(source api\)/)

    await store.remove('web', { actor: 'ci', source: 'api' })
    swarm.emit('update', 'web')
    await settle()
    assert.equal((await store.get('web'))?.source, 'discovery', 'once the API route is gone, the labels take over')
    assert.equal(d.problems().length, 0)
  })

  it('reports labels that cannot become a route, keeps the last good route, and keeps watching', async () => {
    const { clock, store, swarm, logger, start } = setup()
    swarm.services = [labelled('web', '/web')]
    const d = start()
    await clock.advance(0)
    swarm.services = [labelled('web', '/web with space'), labelled('ok', '/ok')]
    swarm.emit('update', 'web')
    await settle()
    assert.deepEqual((await store.get('web'))?.route.destinations, [{ servicePath: ['/web'], port: 8080 }])
    assert.deepEqual(await names(store), ['ok', 'web'])
    assert.deepEqual(
      d.problems().map((p) => [p.serviceName, p.message.slice(0, 46)]),
      [['web', 'com.df.servicePath: "/web with space" must sta']],
    )
    assert.ok(logger.lines.some((l) => l.level === 'warn' && (l.obj as { serviceName?: string }).serviceName === 'web'), 'the problem is logged')

    swarm.services = [labelled('ok', '/ok')]
    swarm.emit('remove', 'web')
    await settle()
    assert.deepEqual(await names(store), ['ok'], 'removing the broken service removes its route')
    assert.deepEqual(d.problems(), [])
  })

  it('logs a label problem, a clash and a failing Docker once per change, not once per reconcile pass', async () => {
    const { clock, store, swarm, logger, start } = setup()
    await store.put(normalizeRoute({ serviceName: 'manual', destinations: [{ servicePath: ['/m'], port: 80 }] }), { actor: 'ci', source: 'api' })
    swarm.services = [labelled('web', '/web with space'), labelled('manual', '/m2'), labelled('ok', '/ok')]
    swarm.listServicesFailures = 3
    start()
    await clock.advance(0)
    for (let i = 0; i < 5; i++) await clock.advance(30_000)
    const warns = (what: (l: { obj: object; msg?: string }) => boolean) => logger.lines.filter((l) => l.level === 'warn' && what(l)).length
    assert.equal(warns((l) => (l.msg ?? '').startsWith('discovery: reconcile failed')), 1, 'Docker unreachable for 3 passes: one warning')
    assert.equal(logger.lines.filter((l) => l.level === 'info' && l.msg === 'discovery: reconcile works again').length, 1)
    assert.equal(warns((l) => (l.obj as { serviceName?: string }).serviceName === 'web'), 1, 'the label problem: one warning over 3 good passes')
    assert.equal(warns((l) => (l.obj as { serviceName?: string }).serviceName === 'manual'), 1, 'the clash with an API route: one warning')
    assert.deepEqual(await names(store), ['manual', 'ok'])
  })

  it('survives Docker being unreachable and catches up at the next interval', async () => {
    const { clock, store, swarm, start } = setup()
    swarm.services = [labelled('web', '/web')]
    swarm.listServicesFailures = 2
    start()
    await clock.advance(0)
    assert.deepEqual(await names(store), [])
    await clock.advance(30_000)
    assert.deepEqual(await names(store), ['web'])
  })

  it('reconnects the event stream with capped backoff and re-lists after reconnecting', async () => {
    const { clock, store, swarm, start } = setup({ backoff: { initialMs: 500, maxMs: 4_000 } })
    swarm.eventConnectFailures = 1_000
    start()
    await clock.advance(0)
    // Attempts at 0, 0.5, 1.5, 3.5 s, then every 4 s (the cap): 7.5, 11.5, ... 59.5 → 18 in the first 60 s.
    await clock.advance(59_999)
    assert.equal(swarm.eventConnects, 18)

    // Docker comes back; a service created while the stream was down is found by the re-list.
    swarm.eventConnectFailures = 0
    swarm.services = [labelled('web', '/web')]
    await clock.advance(4_000)
    assert.equal(swarm.connected, 1)
    assert.deepEqual(await names(store), ['web'])

    // A stream that breaks after working a while reconnects after the initial delay again.
    await clock.advance(10_000)
    swarm.services = []
    swarm.dropEvents()
    await clock.advance(500)
    assert.equal(swarm.connected, 1)
    assert.deepEqual(await names(store), [])
  })

  it('lets one replica lead; when the leader stops renewing, another takes over within the lease time', async () => {
    const clock = manualClock()
    const store = createMemoryRouteStore({ now: () => clock.now() })
    const swarm = new FakeSwarm()
    swarm.services = [labelled('web', '/web')]
    const a = setup({ clock, store, swarm, holder: 'replica-a' }).start()
    await clock.advance(0)
    const b = setup({ clock, store, swarm, holder: 'replica-b' }).start()
    await clock.advance(0)
    assert.equal(a.isLeader(), true)
    assert.equal(b.isLeader(), false)

    // The leader dies without releasing its lease (a killed task): simulate by stopping its
    // loops and taking the lease back as it was.
    await a.stop()
    await store.acquireLease('discovery', 'replica-a', 6_000)
    swarm.services = [labelled('web', '/web'), labelled('shop', '/shop')]
    swarm.emit('create', 'shop')
    await clock.advance(2_000)
    assert.deepEqual(await names(store), ['web'], 'a follower does not write')
    await clock.advance(6_000)
    assert.equal(b.isLeader(), true)
    assert.deepEqual(await names(store), ['shop', 'web'], 'the new leader reconciles at once')
  })

  it('a stopped leader releases its lease, so the next replica leads at its next renewal', async () => {
    const clock = manualClock()
    const store = createMemoryRouteStore({ now: () => clock.now() })
    const swarm = new FakeSwarm()
    const a = setup({ clock, store, swarm, holder: 'replica-a' }).start()
    await clock.advance(0)
    const b = setup({ clock, store, swarm, holder: 'replica-b' }).start()
    await clock.advance(0)
    await a.stop()
    await clock.advance(2_000)
    assert.equal(b.isLeader(), true)
  })

  it('keeps a task inventory of every routed service, any number of tasks', async () => {
    const { clock, store, swarm, start } = setup()
    swarm.services = [labelled('web', '/web')]
    swarm.tasks.set('web', [task('web', 1, '10.0.1.5'), task('web', 2, '10.0.1.6'), { ...task('web', 3, '10.0.1.9'), state: 'shutdown' }])
    swarm.tasks.set('legacy', [task('legacy', 1, '10.0.1.7')])
    await store.put(normalizeRoute({ serviceName: 'legacy', destinations: [{ servicePath: ['/l'], port: 80 }] }), { actor: 'ci', source: 'api' })
    const d = start()
    await clock.advance(3_000)
    assert.deepEqual(
      d.inventory.all().map((s) => [s.serviceName, s.running, s.addresses]),
      [
        ['legacy', 1, ['10.0.1.7']],
        ['web', 2, ['10.0.1.5', '10.0.1.6']],
      ],
    )

    // Scaled up: seen at the next task listing (Docker sends no task events).
    swarm.tasks.set('web', [1, 2, 3].map((slot) => task('web', slot, `10.0.1.${20 + slot}`)))
    await clock.advance(3_000)
    assert.equal(d.inventory.tasksOf('web')?.running, 3)
    assert.deepEqual(d.problems(), [], 'no slot limit: three tasks are no problem')

    // Route removed → forgotten.
    await store.remove('legacy', { actor: 'ci', source: 'api' })
    await clock.advance(3_000)
    assert.equal(d.inventory.tasksOf('legacy'), null)
  })
})
