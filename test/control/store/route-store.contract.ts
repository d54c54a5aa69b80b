/**
 * The RouteStore contract (src/control/store/route-store.ts), as tests. Every store runs it:
 * memory-route-store.test.ts and redis-route-store.test.ts call describeRouteStoreContract
 * with a factory that opens a fresh, empty store.
 */
import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import type { ChangeMeta } from '../../../src/contracts/change.ts'
import type { ConfigSnapshot } from '../../../src/contracts/config-snapshot.ts'
import type { ProxyStatus } from '../../../src/contracts/proxy-status.ts'
import { normalizeRoute, type Route } from '../../../src/contracts/route.ts'
import type { RouteStore } from '../../../src/control/store/route-store.ts'

export interface ContractStoreOptions {
  now: () => number
  changeLogLimit?: number
}

export interface ContractStores {
  store: RouteStore
  /**
   * Another client of the same data: for Redis a second store instance on the same Redis and
   * prefix (another control-plane replica); for memory, the same instance.
   */
  peer: RouteStore
  /** Closes both and removes what the factory created. */
  close(): Promise<void>
}

export type ContractFactory = (options: ContractStoreOptions) => Promise<ContractStores>

export const ci: ChangeMeta = { actor: 'ci', source: 'api' }

export function route(serviceName: string, port = 8080, extra: { sticky?: boolean; servicePath?: string[]; serviceDomain?: string[] } = {}): Route {
  return normalizeRoute({
    serviceName,
    destinations: [{ servicePath: extra.servicePath ?? [`/${serviceName}`], port }],
    serviceDomain: extra.serviceDomain,
    sticky: extra.sticky,
  })
}

export function proxyStatus(id: string, version: number): ProxyStatus {
  return {
    id,
    version,
    status: 'ok',
    lastError: null,
    refusedRoutes: [],
    node: `node-${id}`,
    haproxyVersion: '2.6.12',
    startedAt: '2026-01-01T00:00:00.000Z',
    backends: [],
    receivedAt: '2026-01-01T00:00:00.000Z',
  }
}

/** A clock that only moves when told to. */
export function fakeClock(start = Date.parse('2026-01-01T00:00:00.000Z')): { now: () => number; advance(ms: number): void } {
  let t = start
  return {
    now: () => t,
    advance(ms: number) {
      t += ms
    },
  }
}

/** Resolves with the first version `accept`ed by a listener, or rejects after `ms` (a bound, not a measurement). */
export function nextVersion(store: RouteStore, accept: (v: number) => boolean = () => true, ms = 5000): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe()
      reject(new Error(`no version heard within ${ms} ms`))
    }, ms)
    const unsubscribe = store.subscribe((v) => {
      if (!accept(v)) return
      clearTimeout(timer)
      unsubscribe()
      resolve(v)
    })
  })
}

const table = (snapshot: ConfigSnapshot): Record<string, Route> => Object.fromEntries(snapshot.routes.map((r) => [r.serviceName, r]))

export function describeRouteStoreContract(name: string, factory: ContractFactory): void {
  describe(`${name} route store (contract)`, () => {
    let opened: ContractStores[] = []
    const clock = fakeClock()
    async function open(options: Partial<ContractStoreOptions> = {}): Promise<ContractStores> {
      const stores = await factory({ now: clock.now, ...options })
      opened.push(stores)
      return stores
    }
    afterEach(async () => {
      const closing = opened
      opened = []
      await Promise.all(closing.map((s) => s.close()))
    })

    describe('reading and writing routes', () => {
      it('starts empty at version 0', async () => {
        const { store } = await open()
        assert.deepEqual(await store.snapshot(), { version: 0, routes: [] })
        assert.equal(await store.version(), 0)
        assert.deepEqual(await store.list(), [])
        assert.equal(await store.get('go-demo'), null)
        assert.deepEqual(await store.changes(0, 100), [])
      })

      it('stores a route with a new version, and remembers who wrote it and when', async () => {
        const { store, peer } = await open()
        const r = route('go-demo', 8080, { sticky: true })
        assert.deepEqual(await store.put(r, ci), { route: r, version: 1, changed: true })
        assert.deepEqual(await peer.get('go-demo'), { route: r, version: 1, updatedAt: new Date(clock.now()).toISOString(), actor: 'ci', source: 'api' })
        assert.deepEqual(await peer.snapshot(), { version: 1, routes: [r] })
        assert.equal(await peer.version(), 1)
      })

      it('lists routes and snapshots them sorted by service name, whatever the order of writes', async () => {
        const { store, peer } = await open()
        for (const n of ['web', 'api', 'Zeta', 'db-2', 'db-10']) await store.put(route(n), ci)
        const expected = ['Zeta', 'api', 'db-10', 'db-2', 'web']
        assert.deepEqual((await peer.list()).map((r) => r.route.serviceName), expected)
        assert.deepEqual((await peer.snapshot()).routes.map((r) => r.serviceName), expected)
      })

      it('answers changed:false and keeps the version when the same route is stored again (CI reruns are free)', async () => {
        const { store, peer } = await open()
        const r = route('go-demo', 8080, { serviceDomain: ['a.example.com', 'b.example.com'] })
        await store.put(r, ci)
        // Same route, properties in another order: still the same route.
        const reordered: Route = { sticky: r.sticky, endpoints: r.endpoints, serviceDomain: r.serviceDomain, destinations: r.destinations, serviceName: r.serviceName }
        const again = await peer.put(reordered, { actor: 'someone-else', source: 'dfp' })
        assert.equal(again.changed, false)
        assert.equal(again.version, 1)
        assert.deepEqual(again.route, r)
        assert.equal(await store.version(), 1)
        assert.equal((await store.changes(0, 100)).length, 1)
        assert.equal((await store.get('go-demo'))?.actor, 'ci', 'a no-op does not take over the record')
      })

      it('replaces a route with a new version and logs before and after', async () => {
        const { store } = await open()
        const v1 = route('go-demo', 8080)
        const v2 = route('go-demo', 9090, { sticky: true })
        await store.put(v1, ci)
        clock.advance(1000)
        assert.deepEqual(await store.put(v2, { actor: 'ops', source: 'dfp' }), { route: v2, version: 2, changed: true })
        assert.deepEqual((await store.get('go-demo'))?.route, v2)
        assert.deepEqual(await store.changes(1, 100), [
          { version: 2, time: new Date(clock.now()).toISOString(), operation: 'put', serviceName: 'go-demo', before: v1, after: v2, actor: 'ops', source: 'dfp' },
        ])
      })

      it('removes a route with a new version and logs what was removed', async () => {
        const { store, peer } = await open()
        const r = route('go-demo')
        await store.put(r, ci)
        assert.deepEqual(await store.remove('go-demo', { actor: 'ops', source: 'api' }), { version: 2, removed: r })
        assert.equal(await peer.get('go-demo'), null)
        assert.deepEqual(await peer.snapshot(), { version: 2, routes: [] })
        const [entry] = await peer.changes(1, 100)
        assert.deepEqual(entry, { version: 2, time: new Date(clock.now()).toISOString(), operation: 'remove', serviceName: 'go-demo', before: r, after: null, actor: 'ops', source: 'api' })
      })

      it('answers null for removing an unknown service, and changes nothing', async () => {
        const { store } = await open()
        await store.put(route('go-demo'), ci)
        assert.equal(await store.remove('nope', ci), null)
        assert.equal(await store.version(), 1)
        assert.equal((await store.changes(0, 100)).length, 1)
        assert.equal(await store.remove('nope', ci), null)
      })

      it('bumps the version by exactly one per change', async () => {
        const { store, peer } = await open()
        const versions = [
          (await store.put(route('a'), ci)).version,
          (await peer.put(route('b'), ci)).version,
          (await store.put(route('a', 81), ci)).version,
          (await peer.remove('b', ci))?.version,
          (await store.put(route('b'), ci)).version,
        ]
        assert.deepEqual(versions, [1, 2, 3, 4, 5])
        assert.deepEqual((await store.changes(0, 100)).map((c) => c.version), [1, 2, 3, 4, 5])
      })

      it('never shows a reader a route without its version (each snapshot is one consistent instant)', async () => {
        const { store, peer } = await open()
        // Each put adds a new service, so at version v the table has exactly v routes.
        const writes = (async () => {
          for (let i = 0; i < 40; i++) await store.put(route(`svc-${i}`), ci)
        })()
        const seen: ConfigSnapshot[] = []
        let done = false
        void writes.finally(() => (done = true))
        for (let i = 0; i < 400 && !done; i++) seen.push(await peer.snapshot())
        await writes
        seen.push(await peer.snapshot())
        for (const s of seen) assert.equal(s.routes.length, s.version, `snapshot at version ${s.version} has ${s.routes.length} routes`)
        assert.equal(seen.at(-1)?.version, 40)
      })
    })

    describe('writes conditioned on the source (how discovery leaves API routes alone)', () => {
      const discovery: ChangeMeta = { actor: 'discovery', source: 'discovery' }
      const only = { onlyIfSource: 'discovery' } as const

      it('creates a route, and changes one whose last change came from that source', async () => {
        const { store } = await open()
        assert.equal((await store.put(route('a'), discovery, only)).changed, true)
        const moved = await store.put(route('a', 9090), discovery, only)
        assert.deepEqual([moved.changed, moved.version], [true, 2])
        assert.deepEqual((await store.remove('a', discovery, only))?.version, 3)
      })

      it('never overwrites nor removes a route written from another source, and bumps no version', async () => {
        const { store, peer } = await open()
        await peer.put(route('a', 8080), ci) // written through the API, e.g. between discovery's read and write
        const put = await store.put(route('a', 9090), discovery, only)
        assert.deepEqual([put.changed, put.version, put.route.destinations[0]?.port], [false, 1, 8080])
        assert.equal(await store.remove('a', discovery, only), null)
        assert.equal(await store.version(), 1)
        const record = await store.get('a')
        assert.deepEqual([record?.source, record?.route.destinations[0]?.port], ['api', 8080])
      })

      it("a batch write keeps each route's own source when given (a restore), so discovery still owns its routes", async () => {
        const { store, peer } = await open()
        const restore: ChangeMeta = { actor: 'ops', source: 'api', note: 'restore' }
        const result = await store.write(
          [
            { serviceName: 'a', after: route('a'), source: 'discovery' },
            { serviceName: 'b', after: route('b') },
          ],
          restore,
        )
        assert.equal(result.version, 1)
        const [a, b] = [await peer.get('a'), await peer.get('b')]
        assert.deepEqual([a?.source, a?.actor, b?.source, b?.actor], ['discovery', 'ops', 'api', 'ops'])
        const log = await peer.changes(0, 10)
        assert.deepEqual(
          log.map((c) => [c.version, c.serviceName, c.source, c.actor, c.note]),
          [
            [1, 'a', 'discovery', 'ops', 'restore'],
            [1, 'b', 'api', 'ops', 'restore'],
          ],
        )
        // Discovery changes its restored route, and still leaves the API's alone.
        assert.equal((await store.put(route('a', 9090), discovery, only)).changed, true)
        assert.equal((await store.put(route('b', 9090), discovery, only)).changed, false)
      })
    })

    describe('change log', () => {
      it('returns entries after a version, oldest first, at most `limit`', async () => {
        const { store } = await open()
        for (let i = 1; i <= 6; i++) await store.put(route(`s${i}`), ci)
        assert.deepEqual((await store.changes(2, 3)).map((c) => c.version), [3, 4, 5])
        assert.deepEqual((await store.changes(5, 100)).map((c) => c.serviceName), ['s6'])
        assert.deepEqual(await store.changes(6, 100), [])
        assert.deepEqual(await store.changes(0, 0), [])
      })

      it('keeps only the newest `changeLogLimit` entries', async () => {
        const { store, peer } = await open({ changeLogLimit: 3 })
        for (let i = 1; i <= 5; i++) await store.put(route(`s${i}`), ci)
        assert.deepEqual((await peer.changes(0, 100)).map((c) => c.version), [3, 4, 5])
        assert.equal((await peer.list()).length, 5, 'trimming the log never drops routes')
      })
    })

    describe('rollback', () => {
      it('restores the routing table of version V as a new version, with entries that say so', async () => {
        const { store, peer } = await open()
        await store.put(route('a'), ci) // 1
        await store.put(route('b'), ci) // 2
        const atTwo = await store.snapshot()
        await store.put(route('a', 9000), ci) // 3
        await store.remove('b', ci) // 4
        await store.put(route('c'), ci) // 5
        clock.advance(5000)
        const meta: ChangeMeta = { actor: 'ops', source: 'rollback' }
        assert.deepEqual(await peer.rollback(2, meta), { version: 6, changed: 3 })
        const now = await store.snapshot()
        assert.equal(now.version, 6)
        assert.deepEqual(table(now), table(atTwo))
        const entries = await store.changes(5, 100)
        assert.deepEqual(
          entries.map((c) => [c.version, c.serviceName, c.operation, c.rollbackTo, c.actor, c.source]),
          [
            [6, 'a', 'put', 2, 'ops', 'rollback'],
            [6, 'b', 'put', 2, 'ops', 'rollback'],
            [6, 'c', 'remove', 2, 'ops', 'rollback'],
          ],
        )
        assert.deepEqual(entries[0]?.before, route('a', 9000))
        assert.deepEqual(entries[0]?.after, route('a'))
        assert.equal(entries[0]?.time, new Date(clock.now()).toISOString())
        assert.equal((await store.get('a'))?.version, 6)
      })

      it('rolls back to version 0: the empty table', async () => {
        const { store } = await open()
        await store.put(route('a'), ci)
        await store.put(route('b'), ci)
        assert.deepEqual(await store.rollback(0, ci), { version: 3, changed: 2 })
        assert.deepEqual(await store.snapshot(), { version: 3, routes: [] })
      })

      it('changes nothing when the table already equals version V', async () => {
        const { store } = await open()
        await store.put(route('a'), ci) // 1
        assert.deepEqual(await store.rollback(1, ci), { version: 1, changed: 0 })
        await store.put(route('a', 81), ci) // 2
        await store.put(route('a'), ci) // 3: back to the table of 1
        assert.deepEqual(await store.rollback(1, ci), { version: 3, changed: 0 })
        assert.equal(await store.version(), 3)
        assert.equal((await store.changes(0, 100)).length, 3)
      })

      it('refuses a version that does not exist or that the change log no longer reaches, and changes nothing', async () => {
        const { store } = await open({ changeLogLimit: 2 })
        for (let i = 1; i <= 4; i++) await store.put(route(`s${i}`), ci)
        for (const to of [5, 99, -1, 1.5, 1]) {
          await assert.rejects(store.rollback(to, ci), (err: Error & { code?: string; statusCode?: number }) => {
            assert.equal(err.code, 'VERSION_NOT_FOUND', `to=${to}`)
            assert.equal(err.statusCode, 404)
            return true
          })
        }
        assert.equal(await store.version(), 4)
        // Version 2 is still reachable: the log holds 3 and 4.
        assert.deepEqual(await store.rollback(2, ci), { version: 5, changed: 2 })
        assert.deepEqual((await store.snapshot()).routes.map((r) => r.serviceName), ['s1', 's2'])
      })

      it('trims the change log by whole versions, so a rollback written as several entries is never half-kept (regression)', async () => {
        const { store } = await open({ changeLogLimit: 3 })
        for (let i = 1; i <= 3; i++) await store.put(route(`s${i}`), ci) // versions 1..3
        // Version 4 undoes all three: three entries under one version, the log holds exactly them.
        assert.deepEqual(await store.rollback(0, ci), { version: 4, changed: 3 })
        await store.put(route('t'), ci) // version 5: one more entry must not cut version 4 in half
        const kept = await store.changes(0, 100)
        assert.deepEqual([...new Set(kept.map((c) => c.version))], [5])
        // Rolling back to 3 would need all of version 4's entries: refused, not done wrongly.
        await assert.rejects(store.rollback(3, ci), { code: 'VERSION_NOT_FOUND' })
        assert.deepEqual((await store.snapshot()).routes.map((r) => r.serviceName), ['t'])
      })
    })

    describe('subscribe', () => {
      it('tells listeners about versions written by another client of the same store (another replica)', async () => {
        const { store, peer } = await open()
        await peer.version() // the peer has seen version 0
        const heard = nextVersion(peer, (v) => v >= 1)
        await store.put(route('a'), ci)
        assert.equal(await heard, 1)
        const heardRemove = nextVersion(peer, (v) => v >= 2)
        await store.remove('a', ci)
        assert.equal(await heardRemove, 2)
      })

      it('stops calling a listener once it unsubscribed', async () => {
        const { store, peer } = await open()
        await peer.version()
        const calls: number[] = []
        const unsubscribe = peer.subscribe((v) => calls.push(v))
        const first = nextVersion(peer, (v) => v >= 1)
        await store.put(route('a'), ci)
        await first
        unsubscribe()
        const second = nextVersion(peer, (v) => v >= 2)
        await store.put(route('b'), ci)
        await second
        assert.deepEqual(calls, [1])
      })

      it('does not announce a no-op put', async () => {
        const { store, peer } = await open()
        await store.put(route('a'), ci)
        await peer.version()
        const calls: number[] = []
        peer.subscribe((v) => calls.push(v))
        await store.put(route('a'), ci)
        const marker = nextVersion(peer, (v) => v >= 2)
        await store.put(route('b'), ci)
        await marker
        assert.deepEqual(calls, [2])
      })
    })

    describe('proxy heartbeats', () => {
      it('lists live proxies sorted by id and forgets one whose heartbeat expired', async () => {
        const { store, peer } = await open()
        await store.putProxy(proxyStatus('p-b', 3), 10_000)
        await peer.putProxy(proxyStatus('p-a', 2), 30_000)
        assert.deepEqual(await store.listProxies(), [proxyStatus('p-a', 2), proxyStatus('p-b', 3)])
        clock.advance(10_000)
        assert.deepEqual(await peer.listProxies(), [proxyStatus('p-a', 2)])
      })

      it('keeps a proxy that heartbeats again, with its latest status', async () => {
        const { store } = await open()
        await store.putProxy(proxyStatus('p-a', 1), 10_000)
        clock.advance(8000)
        await store.putProxy(proxyStatus('p-a', 2), 10_000)
        clock.advance(8000)
        assert.deepEqual(await store.listProxies(), [proxyStatus('p-a', 2)])
        clock.advance(2000)
        assert.deepEqual(await store.listProxies(), [])
      })
    })

    describe('leases', () => {
      it('gives a lease to one holder at a time until it expires', async () => {
        const { store, peer } = await open()
        assert.equal(await store.acquireLease('discovery', 'replica-1', 10_000), true)
        assert.equal(await peer.acquireLease('discovery', 'replica-2', 10_000), false)
        assert.equal(await peer.acquireLease('other-job', 'replica-2', 10_000), true, 'leases are independent')
        clock.advance(9000)
        assert.equal(await store.acquireLease('discovery', 'replica-1', 10_000), true, 'the holder renews')
        clock.advance(9000)
        assert.equal(await peer.acquireLease('discovery', 'replica-2', 10_000), false, 'renewed, so still held')
        clock.advance(1000)
        assert.equal(await peer.acquireLease('discovery', 'replica-2', 10_000), true, 'expired: taken over')
        assert.equal(await store.acquireLease('discovery', 'replica-1', 10_000), false)
      })

      it('frees a lease released by its holder, and ignores a release by anyone else', async () => {
        const { store, peer } = await open()
        assert.equal(await store.acquireLease('discovery', 'replica-1', 10_000), true)
        await peer.releaseLease('discovery', 'replica-2')
        assert.equal(await peer.acquireLease('discovery', 'replica-2', 10_000), false)
        await store.releaseLease('discovery', 'replica-1')
        assert.equal(await peer.acquireLease('discovery', 'replica-2', 10_000), true)
      })
    })

    describe('binding claims and batch writes', () => {
      const exclusive = { claim: 'exclusive' as const }

      it('refuses an exclusive put of a path another service holds with ROUTE_CONFLICT naming the holder, and stores nothing', async () => {
        const { store } = await open()
        await store.put(route('go-demo', 8080, { servicePath: ['/demo'] }), ci, exclusive)
        await assert.rejects(store.put(route('alpha', 80, { servicePath: ['/x', '/demo'] }), ci, exclusive), (err: Error & { code?: string; statusCode?: number }) => {
          assert.equal(err.code, 'ROUTE_CONFLICT')
          assert.equal(err.statusCode, 409)
          assert.match(err.message, /servicePath: "\/demo" is already served by service "go-demo"/)
          return true
        })
        const snapshot = await store.snapshot()
        assert.equal(snapshot.version, 1)
        assert.deepEqual(snapshot.routes.map((r) => r.serviceName), ['go-demo'])
        assert.equal((await store.changes(0, 10)).length, 1)
      })

      it('refuses an exclusive claim of the default backend or of a redirected host another service holds, naming it', async () => {
        const { store, peer } = await open()
        const withExtras = (name: string, extra: { isDefaultBackend?: boolean; redirectFromDomain?: string[] }) =>
          normalizeRoute({ serviceName: name, serviceDomain: [`${name}.example`], destinations: [{ servicePath: [`/${name}`], port: 80, ...(extra.redirectFromDomain === undefined ? {} : { redirectFromDomain: extra.redirectFromDomain }) }], ...(extra.isDefaultBackend === undefined ? {} : { isDefaultBackend: extra.isDefaultBackend }) })
        await store.put(withExtras('blue', { isDefaultBackend: true, redirectFromDomain: ['old.example'] }), ci, exclusive)
        await assert.rejects(peer.put(withExtras('green', { isDefaultBackend: true }), ci, exclusive), /^.*isDefaultBackend: service "blue" is already the default backend/)
        await assert.rejects(peer.put(withExtras('green', { redirectFromDomain: ['old.example'] }), ci, exclusive), /redirectFromDomain: "old\.example" is already redirected by service "blue"/)
        assert.deepEqual((await store.snapshot()).routes.map((r) => r.serviceName), ['blue'])
        // Freed by the holder: taken.
        await store.put(withExtras('blue', {}), ci, exclusive)
        assert.equal((await peer.put(withExtras('green', { isDefaultBackend: true, redirectFromDomain: ['old.example'] }), ci, exclusive)).changed, true)
      })

      it('lets the holder change its own route, and another service take a path once it is freed', async () => {
        const { store, peer } = await open()
        await store.put(route('go-demo', 8080, { servicePath: ['/demo'] }), ci, exclusive)
        const own = await store.put(route('go-demo', 8081, { servicePath: ['/demo', '/more'] }), ci, exclusive)
        assert.equal(own.changed, true)
        await store.put(route('go-demo', 8081, { servicePath: ['/more'] }), ci, exclusive)
        const taken = await peer.put(route('alpha', 80, { servicePath: ['/demo'] }), ci, exclusive)
        assert.equal(taken.changed, true)
        assert.deepEqual((await store.snapshot()).routes.map((r) => r.serviceName), ['alpha', 'go-demo'])
      })

      it('treats the same path on another host, or a host rule beside a host-less one, as different bindings', async () => {
        const { store } = await open()
        await store.put(route('a', 80, { servicePath: ['/demo'], serviceDomain: ['a.example.com'] }), ci, exclusive)
        await store.put(route('b', 80, { servicePath: ['/demo'], serviceDomain: ['b.example.com'] }), ci, exclusive)
        await store.put(route('c', 80, { servicePath: ['/demo'] }), ci, exclusive)
        assert.equal((await store.snapshot()).routes.length, 3)
        await assert.rejects(store.put(route('d', 80, { servicePath: ['/demo'], serviceDomain: ['B.example.com'] }), ci, exclusive), /served by service "b" \(for host b\.example\.com\)/)
      })

      it('stores a shared put beside the holder (Docker Flow Proxy semantics), and an exclusive put then conflicts with both', async () => {
        const { store } = await open()
        await store.put(route('blue', 80, { servicePath: ['/app'] }), ci, exclusive)
        const shared = await store.put(route('green', 80, { servicePath: ['/app'] }), { actor: 'ci', source: 'dfp' })
        assert.equal(shared.changed, true)
        await assert.rejects(store.put(route('red', 80, { servicePath: ['/app'] }), ci, exclusive), /already served by service "blue"/)
        await store.remove('blue', ci)
        await assert.rejects(store.put(route('red', 80, { servicePath: ['/app'] }), ci, exclusive), /already served by service "green"/)
      })

      it('writes a batch as one version with one change-log entry per route, and skips what is unchanged', async () => {
        const { store, peer } = await open()
        await store.put(route('same'), ci)
        const result = await peer.write(
          [
            { serviceName: 'same', after: route('same') },
            { serviceName: 'a', after: route('a') },
            { serviceName: 'b', after: route('b') },
            { serviceName: 'gone', after: null },
          ],
          { actor: 'discovery', source: 'discovery' },
        )
        assert.equal(result.version, 2)
        assert.deepEqual(result.changes.map((c) => c.serviceName), ['a', 'b'])
        assert.deepEqual(result.befores, [route('same'), null, null, null])
        const log = await store.changes(1, 10)
        assert.deepEqual(log.map((c) => [c.version, c.serviceName, c.operation]), [[2, 'a', 'put'], [2, 'b', 'put']])
        assert.deepEqual((await store.snapshot()).routes.map((r) => r.serviceName), ['a', 'b', 'same'])
      })

      it('moves a path between services in one version when the batch frees it (takeover), with a note in the change log', async () => {
        const { store } = await open()
        await store.put(route('blue', 80, { servicePath: ['/app', '/admin'] }), ci, exclusive)
        const blue = (await store.get('blue'))!.route
        const result = await store.write(
          [
            { serviceName: 'green', after: route('green', 80, { servicePath: ['/app'] }), claim: 'exclusive' },
            { serviceName: 'blue', after: route('blue', 80, { servicePath: ['/admin'] }), expect: blue },
          ],
          { ...ci, note: 'takeover: /app moved from blue to green' },
        )
        assert.equal(result.version, 2)
        const log = await store.changes(1, 10)
        assert.deepEqual(log.map((c) => [c.serviceName, c.note]), [['blue', 'takeover: /app moved from blue to green'], ['green', 'takeover: /app moved from blue to green']])
        // The index follows: blue can no longer claim /app, green can no longer lose it silently.
        await assert.rejects(store.put(route('blue', 80, { servicePath: ['/app'] }), ci, exclusive), /already served by service "green"/)
      })

      it('refuses a whole batch, writing nothing, when an expect guard fails or two exclusive writes of it claim one path', async () => {
        const { store } = await open()
        await store.put(route('blue', 80, { servicePath: ['/app'] }), ci)
        await assert.rejects(store.write([{ serviceName: 'x', after: route('x') }, { serviceName: 'blue', after: null, expect: route('blue', 81) }], ci), { name: 'ExpectationFailedError' })
        await assert.rejects(
          store.write(
            [
              { serviceName: 'p', after: route('p', 80, { servicePath: ['/same'] }), claim: 'exclusive' },
              { serviceName: 'q', after: route('q', 80, { servicePath: ['/same'] }), claim: 'exclusive' },
            ],
            ci,
          ),
          { code: 'ROUTE_CONFLICT' },
        )
        const snapshot = await store.snapshot()
        assert.equal(snapshot.version, 1)
        assert.deepEqual(snapshot.routes.map((r) => r.serviceName), ['blue'])
      })

      it('rolls back to a version whose table shared a path, even though an exclusive write could not make it now', async () => {
        const { store } = await open()
        await store.put(route('blue', 80, { servicePath: ['/app'] }), ci, exclusive)
        await store.put(route('green', 80, { servicePath: ['/app'] }), { actor: 'ci', source: 'dfp' })
        await store.remove('green', ci)
        const rolled = await store.rollback(2, ci)
        assert.equal(rolled.changed, 1)
        assert.deepEqual((await store.snapshot()).routes.map((r) => r.serviceName), ['blue', 'green'])
        await store.rollback(1, ci)
        await assert.rejects(store.put(route('red', 80, { servicePath: ['/app'] }), ci, exclusive), /already served by service "blue"/)
        await store.remove('blue', ci)
        assert.equal((await store.put(route('red', 80, { servicePath: ['/app'] }), ci, exclusive)).changed, true)
      })
    })

    describe('concurrency', () => {
      it('gives 50 concurrent puts of different services from two clients 50 distinct versions, and keeps all 50 routes', async () => {
        const { store, peer } = await open()
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? store : peer).put(route(`svc-${i}`, 1000 + i), ci)))
        assert.ok(results.every((r) => r.changed))
        assert.deepEqual(
          results.map((r) => r.version).sort((a, b) => a - b),
          Array.from({ length: 50 }, (_, i) => i + 1),
        )
        const snapshot = await peer.snapshot()
        assert.equal(snapshot.version, 50)
        assert.equal(snapshot.routes.length, 50)
        assert.equal((await store.changes(0, 100)).length, 50)
      })
    })
  })
}
