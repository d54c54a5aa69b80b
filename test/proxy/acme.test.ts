/**
 * ACME across the fleet against a real ACME server (pebble + pebble-challtestsrv): two control
 * replicas on one Redis, two proxies with real HAProxy on two loopback addresses. Exactly one
 * replica orders (the lease); the HTTP-01 answers reach every proxy (one name validates through
 * each proxy); both proxies serve the issued certificate by SNI (checked against pebble's root);
 * renewal at two thirds of the lifetime; the ordering replica killed mid-order and the other
 * one finishing the issuance.
 */
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { describe, it } from 'node:test'
import { startAcme, type Acme } from '../../src/control/acme.ts'
import { createSecretBox } from '../../src/control/secret-box.ts'
import { createRedisRouteStore } from '../../src/control/store/redis-route-store.ts'
import { closeBackends, startBackends } from '../helpers/backends.ts'
import { httpsGet } from '../helpers/https.ts'
import { pebbleSkip, startPebble } from '../helpers/pebble.ts'
import { freePort, startRedisServer } from '../helpers/redis-server.ts'
import { reconfigureQuery, silentLog, startAgent, startControl } from './harness.ts'

describe('ACME issuance and renewal across the fleet', { skip: pebbleSkip }, () => {
  it('issues through one replica, validates through both proxies, renews at 2/3 of the lifetime, and survives the ordering replica dying mid-order', async (t) => {
    const httpPort = await freePort()
    const pebble = await startPebble({ httpPort })
    t.after(() => pebble.stop())
    await pebble.addA('b.test', '127.0.0.2')
    const redis = await startRedisServer()
    t.after(() => redis.stop())
    const box = createSecretBox(Buffer.alloc(32, 9))
    const storeA = createRedisRouteStore({ url: redis.url, prefix: 'acme:' })
    const storeB = createRedisRouteStore({ url: redis.url, prefix: 'acme:' })
    t.after(async () => {
      await storeA.close()
      await storeB.close()
    })
    const controlA = await startControl(t, { store: storeA, secretBox: box })
    const controlB = await startControl(t, { store: storeB, secretBox: box })
    const backends = await startBackends(1)
    t.after(() => closeBackends(backends))
    const tls = [await freePort(), await freePort()]
    await startAgent(t, { id: 'p1', controlUrls: [controlA.url, controlB.url], proxy: { listen: `127.0.0.1:${httpPort}`, tlsListen: `127.0.0.1:${tls[0]}` } })
    await startAgent(t, { id: 'p2', controlUrls: [controlB.url, controlA.url], proxy: { listen: `127.0.0.2:${httpPort}`, tlsListen: `127.0.0.2:${tls[1]}` } })

    let clock = Date.now()
    const orderers: Acme[] = []
    const orderer = (name: string, control: typeof controlA, options: { waitForProxies?: (v: number) => Promise<void>; leaseTtlMs?: number } = {}): Acme => {
      const acme = startAcme({
        store: control.store,
        certificates: control.app!.certificates,
        box,
        directoryUrl: pebble.directoryUrl,
        caPem: pebble.caPem,
        email: 'ops@example.com',
        holder: name,
        log: silentLog,
        waitForProxies: options.waitForProxies ?? (async (v) => void (await control.app!.fleet.waitForConvergence(v, 20_000))),
        now: () => clock,
        intervalMs: 3_600_000,
        firstRoundDelayMs: 3_600_000, // rounds driven by the test
        leaseTtlMs: options.leaseTtlMs ?? 2_000,
        backoffMs: 1,
      })
      orderers.push(acme)
      return acme
    }
    t.after(async () => {
      for (const o of orderers) await o.stop()
    })

    const routed = await controlA.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName: 'web', path: '/', endpoints: [backends[0]!.address] })}&serviceDomain=a.test,b.test&acme=true&wait=converged&timeout=20`)
    assert.equal(routed.status, 200, JSON.stringify(routed.body))
    assert.deepEqual(routed.body.route.acmeDomains, ['a.test', 'b.test'])

    // Both replicas try at once: the lease lets exactly one order.
    const a = orderer('replica-a', controlA)
    const b = orderer('replica-b', controlB)
    await Promise.all([a.runOnce(), b.runOnce()])
    const statuses = [await a.status(), await b.status()]
    assert.deepEqual(statuses.map((s) => s.leader).sort(), [false, true])
    const issued = await storeA.getCertificate('acme-web')
    assert.ok(issued !== null, JSON.stringify(statuses))
    assert.equal(issued.info.source, 'acme')
    assert.deepEqual(issued.info.domains, ['a.test', 'b.test'])
    const changes = await storeB.certificateChanges(0, 10)
    assert.equal(changes.filter((c) => c.name === 'acme-web').length, 1, 'issued once')

    const root = await pebble.root()
    const served = async (port: number, host: string, address = '127.0.0.1'): Promise<string> => {
      // Every proxy serves it: wait for both to apply the version that holds it.
      const v = await storeA.version()
      await controlA.app!.fleet.waitForConvergence(v, 20_000)
      const reply = await httpsGet({ port, host, address, ca: `${root}\n${pebble.caPem}` })
      assert.equal(reply.status, 200)
      return new X509Certificate(reply.peer.raw).fingerprint256
    }
    assert.equal(await served(tls[0]!, 'a.test'), issued.info.fingerprint)
    assert.equal(await served(tls[1]!, 'b.test', '127.0.0.2'), issued.info.fingerprint)
    assert.equal((await storeA.snapshot()).challenges, undefined, 'challenges are withdrawn after the order')

    // Not due yet: nothing happens. Past two thirds of the lifetime: renewed.
    const leader = statuses[0]!.leader ? a : b
    await leader.runOnce()
    assert.equal((await storeA.getCertificate('acme-web'))?.info.fingerprint, issued.info.fingerprint)
    const lifetime = Date.parse(issued.info.notAfter) - Date.parse(issued.info.notBefore)
    clock = Date.parse(issued.info.notBefore) + (lifetime * 2) / 3 + 60_000
    await leader.runOnce()
    const renewed = await storeA.getCertificate('acme-web')
    assert.notEqual(renewed?.info.fingerprint, issued.info.fingerprint)
    assert.equal(await served(tls[0]!, 'a.test'), renewed?.info.fingerprint)

    // Kill the ordering replica mid-order: it published the challenge and dies before the CA
    // validated. The other replica takes the lease when it expires and finishes the issuance.
    await leader.stop()
    const other = leader === a ? controlB : controlA
    const dying = leader === a ? controlA : controlB
    const dyingStore = createRedisRouteStore({ url: redis.url, prefix: 'acme:' })
    let midOrder!: () => void
    let isMidOrder = false
    const reached = new Promise<void>((r) => (midOrder = () => ((isMidOrder = true), r())))
    const victim = orderer('replica-victim', { ...dying, store: dyingStore } as typeof dying, { waitForProxies: async () => (midOrder(), new Promise<void>(() => {})), leaseTtlMs: 1_000 })
    clock = Date.parse(renewed!.info.notBefore) + (lifetime * 2) / 3 + 60_000
    // A round that ends without ordering (the lease still held on a slow machine) is repeated,
    // a bounded number of times; a round that reaches the CA never ends (the process "dies").
    const rounds = (async () => {
      for (let i = 0; i < 40 && !isMidOrder; i++) {
        await victim.runOnce()
        if (!isMidOrder) await new Promise((r) => setTimeout(r, 250))
      }
      if (!isMidOrder) throw new Error(`the victim replica never reached the CA's validation in 40 rounds: ${JSON.stringify(await victim.status())}`)
    })()
    await Promise.race([reached, rounds])
    assert.ok(((await storeA.snapshot()).challenges?.length ?? 0) > 0, 'the victim published its challenge')
    await dyingStore.close() // the process is gone: its lease is no longer renewed
    const survivor = orderer('replica-survivor', other)
    const deadline = Date.now() + 10_000
    while ((await storeA.getCertificate('acme-web'))?.info.fingerprint === renewed?.info.fingerprint && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500))
      await survivor.runOnce()
    }
    const finished = await storeA.getCertificate('acme-web')
    assert.notEqual(finished?.info.fingerprint, renewed?.info.fingerprint, 'the surviving replica issued it')
    // (Only the survivor was running: the first leader is stopped and the victim hangs mid-order.
    // Whether it still holds the lease right now depends on timing, so that is not asserted.)
    assert.equal(await served(tls[1]!, 'b.test', '127.0.0.2'), finished?.info.fingerprint)
  })
})
