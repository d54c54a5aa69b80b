/**
 * ACME as operators see it, against a real ACME server (pebble) and a real proxy (HAProxy):
 * TETHER_ACME_EVERY_DOMAIN orders for every route's serviceDomain without per-route opt-in
 * (wildcards and names an uploaded certificate covers are left out, and /v1/status says why);
 * /v1/status shows each order's state (next renewal, failures, last error, next attempt) and
 * warns about the failing one; Prometheus shows certificate expiry, orders by result and
 * failures in a row; a failed name is not retried before its backoff.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { describe, it } from 'node:test'
import { startAcme, type Acme } from '../../src/control/acme.ts'
import { createSecretBox } from '../../src/control/secret-box.ts'
import { closeBackends, startBackends } from '../helpers/backends.ts'
import { httpsGet } from '../helpers/https.ts'
import { pebbleSkip, startPebble } from '../helpers/pebble.ts'
import { createCa, issue } from '../helpers/pki.ts'
import { freePort } from '../helpers/redis-server.ts'
import { reconfigureQuery, silentLog, startAgent, startControl } from './harness.ts'

describe('ACME for every domain, in /v1/status and /metrics', { skip: pebbleSkip }, () => {
  it('orders for every serviceDomain without opt-in, shows each order (valid, failing with its error and backoff, skipped names) and counts them in Prometheus', async (t) => {
    const httpPort = await freePort()
    const pebble = await startPebble({ httpPort })
    t.after(() => pebble.stop())
    // Nothing listens there: the CA's validation of this name fails (connection refused).
    await pebble.addA('broken.test', '127.0.0.9')
    const box = createSecretBox(Buffer.alloc(32, 5))
    let orderer: Acme | undefined
    const control = await startControl(t, { secretBox: box, acme: { directoryUrl: pebble.directoryUrl, everyDomain: true, isLeader: () => orderer?.isLeader() ?? false } })
    const backends = await startBackends(1)
    t.after(() => closeBackends(backends))
    const tlsPort = await freePort()
    await startAgent(t, { id: 'p1', controlUrls: [control.url], proxy: { listen: `127.0.0.1:${httpPort}`, tlsListen: `127.0.0.1:${tlsPort}` } })

    const ca = await createCa()
    const own = await issue(ca, ['covered.test'])
    assert.equal((await control.api('PUT', '/v1/certificates/covered', { certificate: own.chain, key: own.key })).status, 200)
    for (const [serviceName, domain] of [
      ['web', 'a.test'],
      ['broken', 'broken.test'],
      ['wild', '*.w.test'],
      ['covered', 'covered.test'],
    ] as const) {
      const res = await control.api('PUT', `/v1/reconfigure?${reconfigureQuery({ serviceName, path: '/', endpoints: [backends[0]!.address] })}&serviceDomain=${domain}&wait=converged&timeout=20`)
      assert.equal(res.status, 200, JSON.stringify(res.body))
      assert.equal(res.body.route.acmeDomains, undefined, 'no route asked for ACME')
    }

    orderer = startAcme({
      store: control.store,
      certificates: control.app!.certificates,
      box,
      directoryUrl: pebble.directoryUrl,
      caPem: pebble.caPem,
      holder: 'replica-a',
      everyDomain: true,
      onOrder: (result) => control.app!.metrics.acmeOrders.inc({ result }),
      log: silentLog,
      waitForProxies: async (v) => void (await control.app!.fleet.waitForConvergence(v, 20_000)),
      intervalMs: 3_600_000,
      backoffMs: 3_600_000,
    })
    t.after(() => orderer!.stop())
    // The first round starts on its own a second after start, not an interval (here an hour) later.
    let issued = null
    for (let i = 0; i < 120 && issued === null; i++) {
      await sleep(500)
      issued = await control.store.getCertificate('acme-web')
    }
    assert.ok(issued !== null, 'a.test was issued without the route asking, by the first round, without waiting an interval')
    await orderer.runOnce() // waits for that round to end (or runs one more, which changes nothing: broken.test backs off for an hour)
    assert.deepEqual(issued.info.domains, ['a.test'])
    assert.equal(issued.info.source, 'acme')
    await control.app!.fleet.waitForConvergence(await control.store.version(), 20_000)
    const served = await httpsGet({ port: tlsPort, host: 'a.test', ca: `${await pebble.root()}\n${pebble.caPem}` })
    assert.equal(served.status, 200)
    assert.equal(new X509Certificate(served.peer.raw).fingerprint256, issued.info.fingerprint)
    assert.equal(await control.store.getCertificate('acme-broken'), null)

    const status = (await control.api('GET', '/v1/status')).body
    const acme = status.tls.acme
    assert.equal(acme.directory, pebble.directoryUrl)
    assert.equal(acme.everyDomain, true)
    assert.equal(acme.leader, true)
    const byName = new Map(acme.certificates.map((c: { name: string }) => [c.name, c]))
    const web = byName.get('acme-web') as Record<string, unknown>
    assert.deepEqual({ ...web, notAfter: undefined, renewAt: undefined }, { name: 'acme-web', serviceName: 'web', domains: ['a.test'], reason: 'every-domain', state: 'valid', failures: 0, notAfter: undefined, renewAt: undefined })
    assert.equal(web.notAfter, issued.info.notAfter)
    const lifetime = Date.parse(issued.info.notAfter) - Date.parse(issued.info.notBefore)
    assert.equal(Date.parse(String(web.renewAt)), Date.parse(issued.info.notBefore) + Math.round((lifetime * 2) / 3))
    const broken = byName.get('acme-broken') as Record<string, string | number>
    assert.equal(broken.state, 'failing')
    assert.equal(broken.failures, 1)
    assert.equal(typeof broken.lastError, 'string')
    assert.ok(String(broken.lastError).length > 0)
    assert.ok(Date.parse(String(broken.nextAttemptAt)) > Date.now() + 20 * 60_000, 'backing off (half an hour to an hour)')
    assert.ok(Date.parse(String(broken.lastFailureAt)) <= Date.now())
    assert.deepEqual(acme.skipped, [
      { serviceName: 'covered', domain: 'covered.test', reason: "covered by certificate 'covered' (api)" },
      { serviceName: 'wild', domain: '*.w.test', reason: 'a wildcard name cannot be validated over HTTP-01; upload a certificate for it' },
    ])
    assert.ok(status.tls.warnings.some((w: string) => w.startsWith("ACME order for broken.test ('acme-broken') failing (1 in a row): ")), JSON.stringify(status.tls.warnings))
    assert.deepEqual(status.tls.uncoveredDomains, [{ serviceName: 'broken', domain: 'broken.test' }])

    // The failed name waits for its backoff: another round orders nothing.
    await orderer.runOnce()
    const metrics = (await control.api('GET', '/metrics')).body as string
    assert.match(metrics, /^tether_acme_orders_total\{result="issued"\} 1$/m)
    assert.match(metrics, /^tether_acme_orders_total\{result="failed"\} 1$/m)
    assert.match(metrics, /^tether_acme_failures\{name="acme-broken"\} 1$/m)
    assert.match(metrics, /^tether_acme_failures\{name="acme-web"\} 0$/m)
    const expiry = /^tether_certificate_expiry_seconds\{name="acme-web",source="acme"\} (-?\d+)$/m.exec(metrics)
    assert.ok(expiry !== null, metrics)
    const expected = (Date.parse(issued.info.notAfter) - Date.now()) / 1000
    assert.ok(Math.abs(Number(expiry[1]) - expected) < 60, `${expiry[1]} ≈ ${expected}`)
    assert.match(metrics, /^tether_certificate_expiry_seconds\{name="covered",source="api"\} \d+$/m)
  })
})
