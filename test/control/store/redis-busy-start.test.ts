/**
 * A Redis store in a process that is busy just after the store opened its connection: the
 * control plane builds its app right after creating the store, and building compiles every
 * route in one stretch of the event loop (1 to 3 s on a loaded 2-core machine). The connect
 * and ready-check timeouts (1 s) are timers, so they fire at the end of that stretch though
 * Redis had answered long before: the first connection attempt "timed out". The requests that
 * come right after must wait for the client's retry and be served, not be refused with 503
 * STORE_UNAVAILABLE ("Nothing was changed; retry later") while Redis is fine; this failed
 * about one run in three of the Redis tests of test/control/tcp-sni-routes.test.ts under load.
 * The stall is made exact here: the process blocks its event loop for 1.5 s while the store's
 * ready check is in flight, and writes at once. Real redis-server.
 */
import assert from 'node:assert/strict'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import type { Socket } from 'node:net'
import { describe, it } from 'node:test'
import { redisFixtures } from '../../helpers/redis-fixtures.ts'
import { ci, route } from './route-store.contract.ts'

const { redisServer, store } = redisFixtures()

/**
 * Runs `then` right after the process blocked its event loop for `ms`, the block starting
 * when the first socket opened to `port` from now on (the store's command connection, which
 * it opens first) has sent its ready check (INFO, after connecting): a busy start-up with that
 * check in flight, then the first request, before any timer could run. Resolves with what
 * `then` gives; rejects if no ready check is seen within 10 s.
 */
function afterStallDuringReadyCheck<T>(port: number, ms: number, then: () => Promise<T>, command = 'info'): Promise<T> {
  return new Promise((resolve, reject) => {
    const created: Socket[] = []
    const bound = setTimeout(() => {
      unsubscribe('net.client.socket', onSocket)
      reject(new Error(`no ${command.toUpperCase()} was sent to Redis within 10 s`))
    }, 10_000)
    function onSocket(message: unknown): void {
      const socket = (message as { socket: Socket }).socket
      created.push(socket)
      // Wrapped once connected: connecting resets the socket's own write.
      socket.once('connect', () => {
        const write = socket.write.bind(socket) as (...args: unknown[]) => boolean
        socket.write = ((...args: unknown[]) => {
          const sent = write(...args)
          const first = created.find((s) => s.remotePort === port)
          if (first === socket && new RegExp(`\\r\\n${command}\\r\\n`, 'i').test(String(args[0]))) {
            unsubscribe('net.client.socket', onSocket)
            created.length = 0
            clearTimeout(bound)
            process.nextTick(() => {
              const until = Date.now() + ms
              while (Date.now() < until) {
                // busy, as during a long synchronous compile: no timer, no socket is served
              }
              then().then(resolve, reject)
            })
          }
          return sent
        }) as Socket['write']
      })
    }
    subscribe('net.client.socket', onSocket)
  })
}

describe('Redis store in a process busy right after it connected', () => {
  it('serves the first write once the client has retried, instead of refusing it (STORE_UNAVAILABLE) because an attempt timed out', async () => {
    const redis = await redisServer()
    let s: ReturnType<typeof store> | undefined
    const written = afterStallDuringReadyCheck(redis.port, 1500, () => s!.put(route('go-demo'), ci))
    s = store(redis.url)
    assert.deepEqual(await written, { route: route('go-demo'), version: 1, changed: true })
    assert.deepEqual((await s.snapshot()).routes, [route('go-demo')])
  })

  it('serves the first write when the stall falls on the ROLE asked after connecting (only a primary is written to), instead of refusing it because ROLE "timed out"', async () => {
    const redis = await redisServer()
    let s: ReturnType<typeof store> | undefined
    const written = afterStallDuringReadyCheck(redis.port, 1500, () => s!.put(route('go-demo'), ci), 'role')
    s = store(redis.url)
    assert.deepEqual(await written, { route: route('go-demo'), version: 1, changed: true })
    assert.deepEqual((await s.snapshot()).routes, [route('go-demo')])
  })
})
