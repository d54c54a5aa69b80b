/**
 * The two stores are interchangeable: on random sequences of put, remove and rollback (with a
 * small change log, so rollbacks also hit its end), the Redis store answers exactly what the
 * memory store answers, and ends with the same table, records and change log.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import type { ChangeMeta } from '../../../src/contracts/change.ts'
import { createMemoryRouteStore } from '../../../src/control/store/memory-route-store.ts'
import { createRedisRouteStore } from '../../../src/control/store/redis-route-store.ts'
import type { RouteStore } from '../../../src/control/store/route-store.ts'
import { startRedisServer, type RedisServer } from '../../helpers/redis-server.ts'
import { fakeClock, route } from './route-store.contract.ts'

type Op =
  | { kind: 'put'; name: string; port: number; sticky: boolean; actor: string }
  | { kind: 'remove'; name: string }
  | { kind: 'rollback'; back: number }

const names = fc.constantFrom('a', 'b', 'c', 'd')
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('put' as const), name: names, port: fc.constantFrom(80, 8080), sticky: fc.boolean(), actor: fc.constantFrom('ci', 'ops') }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('remove' as const), name: names }) },
  // How far back from the current version; past the start gives negative (refused) targets.
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('rollback' as const), back: fc.integer({ min: -1, max: 8 }) }) },
)

/** What a store answered: a value, or the code of the error it threw. */
async function outcome(promise: Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await promise }
  } catch (err) {
    return { error: (err as { code?: string }).code ?? String(err) }
  }
}

async function step(store: RouteStore, o: Op, meta: ChangeMeta): Promise<unknown> {
  switch (o.kind) {
    case 'put':
      return outcome(store.put(route(o.name, o.port, { sticky: o.sticky }), { ...meta, actor: o.actor }))
    case 'remove':
      return outcome(store.remove(o.name, meta))
    case 'rollback':
      return outcome(store.rollback((await store.version()) - o.back, { actor: 'ops', source: 'rollback' }))
  }
}

describe('Redis and memory stores', () => {
  let redis: RedisServer
  before(async () => {
    redis = await startRedisServer()
  })
  after(async () => {
    await redis?.stop()
  })

  it('answer the same on any sequence of puts, removes and rollbacks, and end with the same state', async () => {
    let run = 0
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), async (ops) => {
        const clock = fakeClock()
        const options = { now: clock.now, changeLogLimit: 6 }
        const memory = createMemoryRouteStore(options)
        const stored = createRedisRouteStore({ url: redis.url, prefix: `equivalence-${++run}:`, ...options })
        try {
          for (const [i, o] of ops.entries()) {
            clock.advance(1000)
            const meta: ChangeMeta = { actor: 'ci', source: 'api' }
            assert.deepEqual(await step(stored, o, meta), await step(memory, o, meta), `step ${i}: ${JSON.stringify(o)}`)
          }
          assert.deepEqual(await stored.snapshot(), await memory.snapshot())
          assert.deepEqual(await stored.list(), await memory.list())
          assert.deepEqual(await stored.changes(0, 100), await memory.changes(0, 100))
        } finally {
          await Promise.all([memory.close(), stored.close()])
        }
      }),
      { numRuns: 40 },
    )
  })
})
