/**
 * ACME against a CA that stops answering, as a failing network does it: the directory URL
 * points at a TCP front on loopback that either accepts connections and never answers, resets
 * them, or passes them to a real ACME server (pebble) once "the CA recovered". Two orderers on
 * one Redis (two control replicas), a real proxy (HAProxy) answering the HTTP-01 challenges.
 * Shown: each request has a deadline and fails with a readable error (no more "Cannot read
 * properties of undefined (reading 'config')"); a stuck attempt is abandoned at its deadline,
 * shown as under way in /v1/status meanwhile, and its lease released: the other replica takes
 * over and issues once the CA answers again.
 */
import assert from 'node:assert/strict'
import { createServer, connect, type Socket } from 'node:net'
import { describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { startAcme, type Acme } from '../../src/control/acme.ts'
import { createSecretBox } from '../../src/control/secret-box.ts'
import { createRedisRouteStore } from '../../src/control/store/redis-route-store.ts'
import { closeBackends, startBackends } from '../helpers/backends.ts'
import { pebbleSkip, startPebble } from '../helpers/pebble.ts'
import { freePort, startRedisServer } from '../helpers/redis-server.ts'
import { reconfigureQuery, silentLog, startAgent, startControl } from './harness.ts'

type Mode = 'silent' | 'reset' | 'pass'

/** A real TCP peer in front of the CA: silent (accepts, never answers), reset (RST), or pass (pipes to the CA). */
async function startCaFront(target: { host: string; port: number }): Promise<{ port: number; mode: Mode; accepted: number; open(): number; close(): Promise<void> }> {
  const sockets = new Set<Socket>()
  const front = {
    port: await freePort(),
    mode: 'silent' as Mode,
    accepted: 0,
    open: () => sockets.size,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
  const server = createServer((socket) => {
    front.accepted += 1
    sockets.add(socket)
    socket.on('error', () => undefined)
    socket.on('close', () => sockets.delete(socket))
    if (front.mode === 'reset') return void socket.resetAndDestroy()
    if (front.mode === 'silent') {
      // Reads what comes (the TLS hello: unread, the client's close would go unseen) and never answers.
      socket.resume()
      return
    }
    const upstream = connect(target.port, target.host)
    upstream.on('error', () => socket.destroy())
    socket.on('close', () => upstream.destroy())
    socket.pipe(upstream).pipe(socket)
  })
  await new Promise<void>((r) => server.listen(front.port, '127.0.0.1', r))
  return front
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (let i = 0; ; i++) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline || i > 2_000) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

describe('ACME with a CA that does not answer', { skip: pebbleSkip }, () => {
  it('gives each request a deadline with a readable error, abandons a stuck order and releases the lease, and the other replica issues once the CA answers again', async (t) => {
    const httpPort = await freePort()
    const pebble = await startPebble({ httpPort })
    t.after(() => pebble.stop())
    const pebbleUrl = new URL(pebble.directoryUrl)
    const front = await startCaFront({ host: pebbleUrl.hostname, port: Number(pebbleUrl.port) })
    t.after(() => front.close())
    const directoryUrl = `https://127.0.0.1:${front.port}/dir`

    const redis = await startRedisServer()
    t.after(() => redis.stop())
    const box = createSecretBox(Buffer.alloc(32, 3))
    const storeA = createRedisRouteStore({ url: redis.url, prefix: 'deadline:' })
    const storeB = createRedisRouteStore({ url: redis.url, prefix: 'deadline:' })
    t.after(async () => {
      await storeA.close()
      await storeB.close()
    })
    let leaderA: Acme | undefined
    const controlA = await startControl(t, { store: storeA, secretBox: box, acme: { directoryUrl, everyDomain: false, isLeader: () => leaderA?.isLeader() ?? false } })
    const controlB = await startControl(t, { store: storeB, secretBox: box })
    const backends = await startBackends(1)
    t.after(() => closeBackends(backends))
    await startAgent(t, { id: 'p1', controlUrls: [controlA.url, controlB.url], proxy: { listen: `127.0.0.1:${httpPort}`, tlsListen: `127.0.0.1:${await freePort()}` } })
    const routed = await controlA.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'web', path: '/', endpoints: [backends[0]!.address] })}&serviceDomain=a.test&acme=true&wait=converged&timeout=20`)
    assert.equal(routed.status, 200, JSON.stringify(routed.body))

    const orderers: Acme[] = []
    t.after(async () => {
      for (const o of orderers) await o.stop()
    })
    const orderer = (holder: string, control: typeof controlA, timeouts: { requestTimeoutMs: number; orderTimeoutMs: number }): Acme => {
      const acme = startAcme({
        store: control.store,
        certificates: control.app!.certificates,
        box,
        directoryUrl,
        caPem: pebble.caPem,
        holder,
        log: silentLog,
        waitForProxies: async (v) => void (await control.app!.fleet.waitForConvergence(v, 20_000)),
        intervalMs: 3_600_000,
        firstRoundDelayMs: 3_600_000, // rounds driven by the test
        leaseTtlMs: 1_500,
        backoffMs: 1, // due again at once: the test decides when the next round runs
        ...timeouts,
      })
      orderers.push(acme)
      return acme
    }
    const statusOf = async () => {
      const res = await controlA.api('GET', '/v1/status')
      assert.equal(res.status, 200, JSON.stringify(res.body))
      // biome-ignore lint/suspicious/noExplicitAny: the status's certificate entries, read field by field
      return res.body.tls as { warnings: string[]; acme: { certificates: Array<Record<string, any>>; lastRound?: { by: string } } }
    }

    // 1. Silent CA: the request gives up at its deadline (1 s), the socket is closed, the error says so.
    const a = orderer('replica-a', controlA, { requestTimeoutMs: 1_000, orderTimeoutMs: 30_000 })
    leaderA = a
    front.mode = 'silent'
    let started = Date.now()
    await a.runOnce()
    console.log(`MEASURED silent CA: round ended after ${Date.now() - started} ms (request deadline 1 s)`)
    let status = await statusOf()
    let web = status.acme.certificates.find((c) => c.name === 'acme-web')!
    assert.equal(web.state, 'failing', JSON.stringify(web))
    assert.equal(web.failures, 1)
    assert.equal(web.lastError, `CA at ${directoryUrl} did not answer within 1 s`)
    assert.ok(front.accepted >= 1, 'the CA front was reached')
    await until('the timed-out connection closed by the orderer', async () => (front.open() === 0 ? true : undefined))
    assert.ok(status.warnings.some((w) => w.startsWith(`ACME order for a.test ('acme-web') failing (1 in a row): CA at ${directoryUrl} did not answer within 1 s; next attempt at `)), JSON.stringify(status.warnings))
    assert.equal(status.acme.lastRound?.by, 'replica-a')
    assert.ok(web.nextAttemptAt !== undefined && Date.parse(web.nextAttemptAt) >= Date.parse(web.lastFailureAt), 'the next attempt is after the failure, not a time already past')

    // 2. A CA that resets the connection: said as such.
    front.mode = 'reset'
    await a.runOnce()
    status = await statusOf()
    web = status.acme.certificates.find((c) => c.name === 'acme-web')!
    assert.equal(web.failures, 2)
    assert.equal(web.lastError, `connection reset by ${directoryUrl}`)
    assert.equal(await storeA.getCertificate('acme-web'), null)

    // 3. An order stuck past its deadline (requests may take 60 s, the order 3 s): shown as under
    // way meanwhile, the other replica held off by the lease; then abandoned and the lease released.
    await a.stop()
    const stuck = orderer('replica-stuck', controlA, { requestTimeoutMs: 60_000, orderTimeoutMs: 3_000 })
    leaderA = stuck
    const b = orderer('replica-b', controlB, { requestTimeoutMs: 5_000, orderTimeoutMs: 60_000 })
    front.mode = 'silent'
    const acceptedBefore = front.accepted
    started = Date.now()
    const stuckRound = stuck.runOnce()
    await until('the stuck order reaching the CA', async () => (front.accepted > acceptedBefore ? true : undefined))
    status = await statusOf()
    web = status.acme.certificates.find((c) => c.name === 'acme-web')!
    assert.equal(web.state, 'ordering', JSON.stringify(web))
    assert.equal(web.ordering.by, 'replica-stuck')
    assert.equal(web.ordering.overdue, false)
    assert.equal(Date.parse(web.ordering.deadline) - Date.parse(web.ordering.since), 3_000)
    assert.equal(web.nextAttemptAt, undefined, 'no next attempt claimed while one is under way')
    await b.runOnce()
    assert.equal(b.isLeader(), false, 'the other replica is held off while the order is within its deadline')
    assert.ok(stuck.isLeader())
    await stuckRound
    console.log(`MEASURED stuck order abandoned after ${Date.now() - started} ms (order deadline 3 s)`)
    assert.equal(stuck.isLeader(), false, 'the lease is released with the abandoned order')
    status = await statusOf()
    web = status.acme.certificates.find((c) => c.name === 'acme-web')!
    assert.equal(web.state, 'failing')
    assert.equal(web.failures, 3)
    assert.equal(web.lastError, 'order abandoned: not done within 3 s (TETHER_ACME_ORDER_TIMEOUT_SECONDS)')
    assert.equal(web.ordering, undefined)
    await until('the abandoned connection closed', async () => (front.open() === 0 ? true : undefined))

    // 4. The CA answers again: the other replica takes the released lease at its next round and issues.
    front.mode = 'pass'
    await b.runOnce()
    assert.equal(b.isLeader(), true, 'the other replica took over at once (the lease was released, not left to expire)')
    const issued = await storeA.getCertificate('acme-web')
    assert.ok(issued !== null, JSON.stringify(await b.status()))
    assert.deepEqual(issued.info.domains, ['a.test'])
    assert.equal(issued.info.source, 'acme')
    status = await statusOf()
    web = status.acme.certificates.find((c) => c.name === 'acme-web')!
    assert.equal(web.state, 'valid', JSON.stringify(web))
    assert.equal(web.failures, 0)
    assert.equal(status.acme.lastRound?.by, 'replica-b')
    assert.ok(!status.warnings.some((w) => w.startsWith('ACME')), JSON.stringify(status.warnings))
  })
})
